"""What an update does with its gradients once they are computed: finite ones go through
Grokfast's filter, clipping, the optimizer step (and the puzzle table's own sparse
step), the LR schedule and the EMA of the weights, in that order; non-finite ones are
dropped, so that no weight changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from refiner.model.network import RefinerModel
from refiner.model.puzzles import SparsePuzzleOptimizer
from refiner.train.grokfast import GrokfastFilter
from refiner.train.update_metrics import grad_norm
from refiner.train.weight_average import WeightAverage


def step_on_gradients(
    core: RefinerModel,
    params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    *,
    norm: float,
    grokfast: GrokfastFilter,
    clip_threshold: float | None,
    puzzle_optimizer: SparsePuzzleOptimizer | None,
    weight_average: WeightAverage | None,
) -> tuple[float, bool]:
    """Step on finite gradients (`params`: the parameters that have one; `norm`: their
    norm). Returns the norm clipping saw (after Grokfast) and whether it clipped."""
    clipped = False
    if grokfast.enabled:
        grokfast.apply(core.named_parameters())
        norm = grad_norm(params)
    if clip_threshold is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_threshold)
        clipped = norm > clip_threshold
    optimizer.step()
    if puzzle_optimizer is not None:
        puzzle_optimizer.step(lr_fraction(optimizer))
    if lr_scheduler is not None:
        lr_scheduler.step()
    if weight_average is not None:
        weight_average.update(core)
    return norm, clipped


def drop_gradients(
    optimizer: torch.optim.Optimizer, puzzle_optimizer: SparsePuzzleOptimizer | None
) -> None:
    """Forget non-finite gradients: no weight changes this update."""
    optimizer.zero_grad(set_to_none=True)
    if puzzle_optimizer is not None:
        puzzle_optimizer.zero_grad()


def lr_fraction(optimizer: torch.optim.Optimizer) -> float:
    """The dense LR's current fraction of its base (an LR scheduler records the base)."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("initial_lr", group["lr"])
