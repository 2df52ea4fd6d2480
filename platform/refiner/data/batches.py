"""Task rows -> padded torch batches: {"input": LongTensor [B, L], "target": LongTensor [B, L]}
(and "puzzle_ids": LongTensor [B] for puzzle-conditioned models, refiner.model.puzzles).

Input and target are padded with PAD to the same length L (the model's seq_len). PAD
is a legitimate prediction ("empty cell / past the end"), so loss and exact match run
over all L positions. Shared by the plain training loop and the Ray workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from refiner.data.tokenizers import PAD, pad_to_length
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex

Batch = dict[str, torch.Tensor]


def batch_from_arrays(
    inputs: Sequence[Sequence[int]] | np.ndarray,
    targets: Sequence[Sequence[int]] | np.ndarray,
    seq_len: int,
    device: torch.device | str | None = None,
) -> Batch:
    """Pad id sequences (a 2-D array, or a list/object array of 1-D ones) into a batch."""
    if len(inputs) != len(targets):
        raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
    try:
        x, y = _padded(inputs, seq_len), _padded(targets, seq_len)
    except ValueError as err:  # name which side overflowed
        raise ValueError(f"batch does not fit seq_len={seq_len}: {err}") from None
    return {
        "input": torch.from_numpy(x).long().to(device),
        "target": torch.from_numpy(y).long().to(device),
    }


def batch_from_table(
    table: pa.Table,
    seq_len: int,
    device: torch.device | str | None = None,
    puzzles: PuzzleIndex | None = None,
) -> Batch:
    """A task table (refiner.tasks.schema) -> a padded batch of all its rows; with
    ``puzzles`` also each row's puzzle identity (``puzzle_ids`` [B], from group_id)."""
    batch = batch_from_arrays(
        table.column("input").to_pylist(), table.column("target").to_pylist(), seq_len, device
    )
    if puzzles is not None:
        batch[BATCH_KEY] = torch.from_numpy(puzzles.ids_of_table(table)).to(device)
    return batch


def iterate_batches(
    batch: Batch, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = True
) -> Iterator[Batch]:
    """Yield minibatches of a (large) padded batch: one epoch, shuffled by `seed`."""
    n = batch["input"].shape[0]
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(n)
    )
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        rows = order[start : start + batch_size].to(batch["input"].device)
        yield {key: value[rows] for key, value in batch.items()}


def labelled_pair(
    batch: Mapping[str, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's input and target, both [B, L] long tensors on `device`."""
    inputs, target = batch["input"], batch["target"]
    if inputs.shape != target.shape or inputs.dim() != 2:
        raise ValueError(
            f"batch input and target must both be [B, L]; got {tuple(inputs.shape)} and {tuple(target.shape)}"
        )
    return inputs.to(device, torch.long), target.to(device, torch.long)


def _padded(seqs: Sequence[Sequence[int]] | np.ndarray, seq_len: int) -> np.ndarray:
    if isinstance(seqs, np.ndarray) and seqs.ndim == 2 and seqs.dtype != object:
        if seqs.shape[1] > seq_len:
            raise ValueError(f"rows have {seqs.shape[1]} tokens, longer than {seq_len}")
        out = np.full((seqs.shape[0], seq_len), PAD, dtype=np.int64)
        out[:, : seqs.shape[1]] = seqs
        return out
    return pad_to_length(list(seqs), seq_len)
