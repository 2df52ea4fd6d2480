"""What one optimizer update reports: `UnifiedRefinerOrchestrator.train_step`'s result.

A typed record instead of a string-keyed dict, so that a misspelt field fails where it
is written (mypy, or at once) rather than at run time far from the typo. Per-step
curves have one entry per unrolled step t = 1..T. Values are this process's; under DDP
only the gradients are averaged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepMetrics:
    step: int  # the orchestrator's update count after this update
    loss: float | None  # weighted training loss (None: non-finite)
    loss_token: float | None  # step-weighted loss of each type, before type weights
    loss_halting: float | None
    loss_quality: float | None
    step_losses: list[float | None]  # [T] type-weighted loss per step
    acc_at: list[float]  # [T] exact match after step t
    token_acc_at: list[float]  # [T]
    halt_prob_at: list[float]  # [T] mean halting probability
    grad_norm: float | None  # before clipping; None if non-finite
    clipped: bool
    skipped: bool  # refused by the NaN/Inf guard (no weights changed)
    skipped_total: int
    edit_strategies: list[str]  # [T] the edit each step applied
    smoothed_loss: float | None  # mean of the recent losses (loss_smoothing_window)
    lr: float | None  # the dense LR this update used (None if skipped)
    gradient_steps: int  # K: the steps inside the gradient window
    gradient_window_end: int | None  # the step that window ended at

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: for printing or files, not for reading fields back."""
        return dataclasses.asdict(self)
