"""Puzzle conditioning: a learned embedding per puzzle identity (as HRM/TRM do for ARC).

A row's puzzle is its ``group_id`` (the pairs of one ARC puzzle share it). Without it a
model cannot know which puzzle's rule to apply to an input grid; with it, the identity's
learned vector is added to every position of the input embedding (``RefinerModel``).

Identities (``PuzzleIndex``): the table is sized from the training rows of the task file.
Row 0 is reserved for "unknown" (a group that had no training rows): it stays zero and is
never updated, so such a row runs unconditioned instead of crashing.

- ``per_puzzle``: one identity per group: ``1 + g``.
- ``per_augmentation``: one per (group, augmentation index) as in HRM/TRM, ``1 + g * A + i``
  with ``A = augmentation_count`` and ``i = aug_index``. Index 0 is the unaugmented
  original, which is also the identity held-out rows (never augmented) are looked up with.
  Copy ``i`` of a puzzle is one fixed transform of all its pairs (the augmentation's
  ``seed_by_group``); the index keeps the seed and strategies that drew them
  (``copy_spec``), so that voting can show a test input in copy ``i``'s frame under
  identity ``i`` (``refiner.evaluate.voting.copy_views``), from a checkpoint alone.

Training the table (``SparsePuzzleOptimizer``): each forward copies only the batch's rows
out of the table into a leaf tensor (``PuzzleEmbedding``); after backward, sign-SGD with
decoupled weight decay updates just those rows of the table (a buffer, not a parameter).
So there is no optimizer state per row (a GPU run may hold 10^5-10^6 identities), the
dense optimizer never sees the table, and DDP neither buckets its gradient nor broadcasts
it (the buffer is on DDP's ignore list). Under ``torch.distributed`` the touched rows'
gradients are all-gathered and averaged by hand, so every rank applies the same update
(NCCL has no sparse all-reduce; this works on gloo and NCCL alike).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
import torch.nn as nn

from refiner.augment.spec import AugmentationSpec
from refiner.config.sections import PUZZLE_MODES

UNKNOWN = 0  # the reserved row: groups without training rows
BATCH_KEY = "puzzle_ids"  # the batch column holding each row's identity


@dataclass(frozen=True)
class PuzzleIndex:
    """group_id (and augmentation index) -> row of the puzzle table."""

    mode: str
    groups: tuple[str, ...]  # sorted; group g owns rows 1 + g*A .. g*A + A
    augmentations: int = 1  # A: identities per group (1 unless per_augmentation)
    # per_augmentation: the training seed, strategies and intensities that drew each copy's
    # transform (None: unknown, e.g. a checkpoint from before they were kept)
    copy_seed: int | None = None
    copy_strategies: tuple[str, ...] = ()
    copy_intensity: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in PUZZLE_MODES or self.mode == "off":
            raise ValueError(
                f"puzzle index: mode must be per_puzzle or per_augmentation, got {self.mode!r}"
            )
        if self.augmentations < 1 or (self.mode == "per_puzzle" and self.augmentations != 1):
            raise ValueError(
                f"puzzle index: {self.augmentations} augmentations per group with mode {self.mode!r}"
            )
        object.__setattr__(self, "_rows", {g: i for i, g in enumerate(self.groups)})

    @classmethod
    def from_tasks(
        cls,
        tasks: pa.Table,
        mode: str,
        augmentation_count: int = 1,
        augmentation: AugmentationSpec | None = None,
        seed: int | None = None,
    ) -> PuzzleIndex:
        """The identities of a task table's rows (pass the training rows: held-out groups
        that never train map to the unknown row); ``augmentation`` and ``seed``: what
        draws the copies (kept with per_augmentation, see ``copy_spec``)."""
        groups = tuple(sorted(set(tasks.column("group_id").to_pylist())))
        if mode != "per_augmentation":
            return cls(mode, groups, 1)
        if augmentation is None or seed is None:
            return cls(mode, groups, augmentation_count)
        return cls(
            mode,
            groups,
            augmentation_count,
            copy_seed=seed,
            copy_strategies=tuple(augmentation.strategies),
            copy_intensity=tuple(sorted(augmentation.intensity.items())),
        )

    def copy_spec(self) -> AugmentationSpec | None:
        """How copy ``i`` of each puzzle was drawn (with ``copy_seed``), or None when the
        identities are not per copy or that was not recorded."""
        if self.mode != "per_augmentation" or self.copy_seed is None:
            return None
        return AugmentationSpec(
            strategies=self.copy_strategies,
            count=self.augmentations,
            intensity=dict(self.copy_intensity),
            seed_by_group=True,
        )

    @property
    def size(self) -> int:
        """Rows of the table: the reserved unknown row plus one per identity."""
        return 1 + len(self.groups) * self.augmentations

    def ids(
        self,
        group_ids: Sequence[str] | np.ndarray,
        aug_index: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """int64 table rows of rows with these groups (and augmentation indices; None:
        the original, index 0). Unknown groups get ``UNKNOWN``."""
        rows: dict[str, int] = self._rows  # type: ignore[attr-defined]
        g = np.fromiter((rows.get(str(x), -1) for x in group_ids), np.int64, len(group_ids))
        index = np.zeros(len(g), np.int64) if aug_index is None else np.asarray(aug_index, np.int64)
        if index.shape != g.shape:
            raise ValueError(f"puzzle ids: {len(g)} groups but {index.shape} augmentation indices")
        if self.mode == "per_puzzle":
            index = np.zeros_like(index)
        elif len(index) and (index.min() < 0 or index.max() >= self.augmentations):
            raise ValueError(
                f"puzzle ids: augmentation index {int(index.max())} outside "
                f"[0, {self.augmentations}) (orchestration.augmentation_count)"
            )
        return np.where(g >= 0, 1 + g * self.augmentations + index, UNKNOWN)

    def ids_of_table(self, tasks: pa.Table) -> np.ndarray:
        """The (unaugmented) identities of a task table's rows."""
        return self.ids(tasks.column("group_id").to_pylist())

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (checkpoints load with weights_only)."""
        return {
            "mode": self.mode,
            "groups": list(self.groups),
            "augmentations": self.augmentations,
            "copy_seed": self.copy_seed,
            "copy_strategies": list(self.copy_strategies),
            "copy_intensity": [[name, value] for name, value in self.copy_intensity],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PuzzleIndex:
        seed = data.get("copy_seed")  # absent in checkpoints from before it was kept
        return cls(
            data["mode"],
            tuple(data["groups"]),
            int(data["augmentations"]),
            copy_seed=None if seed is None else int(seed),
            copy_strategies=tuple(data.get("copy_strategies", ())),
            copy_intensity=tuple(
                (str(name), float(value)) for name, value in data.get("copy_intensity", ())
            ),
        )


def batch_puzzle_ids(
    batch: Mapping[str, torch.Tensor],
    mode: str,
    device: torch.device,
    required: bool = False,
) -> torch.Tensor | None:
    """The batch's puzzle identities [B] on `device` for a model whose
    `model.puzzle_embedding` is `mode` (None when "off"; with `required`, a batch
    without them is an error, else None)."""
    if mode == "off":
        return None
    ids = batch.get(BATCH_KEY)
    if ids is None:
        if required:
            raise ValueError(
                f"the model has a puzzle embedding (model.puzzle_embedding="
                f"{mode!r}) but the batch has no {BATCH_KEY!r}"
            )
        return None
    ids = ids.to(device, torch.long).reshape(-1)
    if ids.shape[0] != batch["input"].shape[0]:
        raise ValueError(
            f"batch {BATCH_KEY!r} has {ids.shape[0]} ids for {batch['input'].shape[0]} rows"
        )
    return ids


class PuzzleEmbedding(nn.Module):
    """The table (a buffer, zero-initialised, as in HRM) and the batch's rows as a leaf.

    In training, ``forward`` keeps the ids and a leaf copy of their rows (``batch_rows``)
    whose ``.grad`` the sparse optimizer reads after backward."""

    def __init__(self, identities: int, dim: int) -> None:
        super().__init__()
        if identities < 1:
            raise ValueError(
                "model.puzzle_identities must be >= 1 with a puzzle embedding: it is sized "
                "from the task file (refiner.model.puzzles.PuzzleIndex.size)"
            )
        self.weight: torch.Tensor  # [identities, dim], a buffer: no dense optimizer state
        self.register_buffer("weight", torch.zeros(identities, dim))
        self.batch_ids: torch.Tensor | None = None
        self.batch_rows: torch.Tensor | None = None

    def forward(self, puzzle_ids: torch.Tensor) -> torch.Tensor:
        ids = puzzle_ids.long()
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.weight.shape[0]):
            raise ValueError(
                f"puzzle id {int(ids.max())} outside the table of {self.weight.shape[0]} rows"
            )
        rows = self.weight[ids]
        if self.training and torch.is_grad_enabled():
            rows = rows.detach().requires_grad_(True)
            self.batch_ids, self.batch_rows = ids, rows
        return rows


class SparsePuzzleOptimizer:
    """Sign-SGD with decoupled weight decay on the rows the last forward used; no state.

    The learning rate follows the dense optimizer's schedule: ``step(scale)`` multiplies
    ``lr`` by the dense LR's current fraction of its base value."""

    def __init__(self, embedding: PuzzleEmbedding, lr: float, weight_decay: float = 0.0) -> None:
        self.embedding, self.lr, self.weight_decay = embedding, lr, weight_decay

    def zero_grad(self) -> None:
        self.embedding.batch_ids = self.embedding.batch_rows = None

    @torch.no_grad()
    def step(self, scale: float = 1.0) -> int:
        """Update the touched rows (all ranks alike); returns how many rows changed."""
        emb = self.embedding
        ids, rows = emb.batch_ids, emb.batch_rows
        self.zero_grad()
        if ids is None or rows is None or rows.grad is None:
            return 0
        ids, grads = ids.reshape(-1), rows.grad.reshape(-1, rows.shape[-1]).float()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids, grads = _gather_rows(ids, grads)
        if not torch.isfinite(grads).all():  # every rank sees the same gathered gradients
            return 0
        unique, slot = torch.unique(ids, return_inverse=True)
        total = torch.zeros(len(unique), grads.shape[1], device=grads.device)
        total.index_add_(0, slot, grads)
        keep = unique != UNKNOWN  # the unknown row stays zero
        unique, total = unique[keep], total[keep]
        lr = self.lr * scale
        table: torch.Tensor = emb.weight
        updated = table[unique] * (1 - lr * self.weight_decay) - lr * torch.sign(total).to(
            table.dtype
        )
        table[unique] = updated
        return int(unique.numel())


def _gather_rows(ids: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's (ids, grads), concatenated in rank order (ranks may differ in size)."""
    world = dist.get_world_size()
    count = torch.tensor([ids.numel()], device=ids.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    pad = longest - ids.numel()
    ids_p = torch.cat([ids, ids.new_full((pad,), UNKNOWN)])
    grads_p = torch.cat([grads, grads.new_zeros(pad, grads.shape[1])])
    all_ids = [torch.empty_like(ids_p) for _ in range(world)]
    all_grads = [torch.empty_like(grads_p) for _ in range(world)]
    dist.all_gather(all_ids, ids_p)
    dist.all_gather(all_grads, grads_p)
    keep = [slice(0, int(c.item())) for c in counts]
    return (
        torch.cat([t[k] for t, k in zip(all_ids, keep, strict=True)]),
        torch.cat([t[k] for t, k in zip(all_grads, keep, strict=True)]),
    )
