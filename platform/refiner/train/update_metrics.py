"""Reading one update's numbers off the device: the loss terms of a supervised unroll,
the gradient norm, the per-step curves and the edit gains, in one host transfer, and
the `StepMetrics` built from them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refiner.config.sections import OrchestrationConfig
from refiner.model.edits import EditGains
from refiner.model.losses import LOSS_TYPES, StepLosses
from refiner.model.step_values import StepRecord
from refiner.train.step_metrics import StepMetrics

CURVES = ("step_losses", "acc_at", "token_acc_at", "halt_prob_at")  # per-step, [T] each


def supervised(records: list[StepRecord]) -> list[StepLosses]:
    """The loss terms of each step of an unroll that had a target."""
    losses = [r.losses for r in records if r.losses is not None]
    if len(losses) != len(records):
        raise ValueError("step losses need an unroll with a target")
    return losses


def step_losses(
    records: list[StepRecord], config: OrchestrationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The supervised records' loss terms: (per type [len(LOSS_TYPES), T], and the
    type-weighted loss of each step [T]), both still attached to the graph."""
    losses = supervised(records)
    per_type = torch.stack(
        [torch.stack([step.of_type(name) for step in losses]) for name in LOSS_TYPES]
    )
    w = config.step_loss_weights
    weighted = w.token * per_type[0] + w.halting * per_type[1] + w.quality * per_type[2]
    return per_type, weighted


def grad_norm_tensor(params: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The global gradient norm as a 0-d fp32 tensor (no host sync) of parameters that
    have gradients."""
    grads = [p.grad.float() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def grad_norm(params: Sequence[torch.Tensor]) -> float:
    if not params:
        return 0.0
    return grad_norm_tensor(params, params[0].device).item()


def curves_tensor(records: list[StepRecord], per_step: torch.Tensor) -> torch.Tensor:
    """Per-step metrics of a supervised unroll, [4, T] on the device: step_losses
    (type-weighted), acc_at (exact match), token_acc_at, halt_prob_at (CURVES order)."""
    return torch.stack(
        [
            per_step.detach().float(),
            torch.stack([step.exact.float().mean() for step in supervised(records)]),
            torch.stack([step.token_acc for step in supervised(records)]).float(),
            torch.stack([r.halt_prob.mean() for r in records]).float(),
        ]
    )


def curves(records: list[StepRecord], per_step: torch.Tensor) -> dict[str, list[float]]:
    """`curves_tensor` as lists, in one host transfer."""
    return dict(zip(CURVES, curves_tensor(records, per_step).tolist(), strict=True))


@dataclass
class UpdateReadout:
    """An update's numbers on the host (before the optimizer step)."""

    loss: float  # weighted training loss
    grad_norm: float  # before clipping (and before Grokfast)
    totals: list[float]  # step-weighted loss per type, LOSS_TYPES order
    curves: dict[str, list[float]]  # CURVES, [T] each
    gains: list[float]  # one per recorded edit gain, in order


def read_update(
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    device: torch.device,
    weights: torch.Tensor,
    per_type: torch.Tensor,
    records: list[StepRecord],
    per_step: torch.Tensor,
    gains: EditGains,
) -> UpdateReadout:
    """Every metric of the update leaves the device in this one transfer (no host syncs
    inside the unroll): loss, gradient norm, per-type totals [3], the per-step curves
    [4, T] and the edit gains. `weights` [T] are the step weights of the loss."""
    T = len(records)
    totals = (weights[None] * per_type.detach()).sum(1)  # [3]
    packed = torch.cat(
        [
            loss.detach().float().reshape(1),
            grad_norm_tensor(params, device).reshape(1),
            totals.float(),
            curves_tensor(records, per_step).flatten(),
            torch.stack([g for _, g in gains]).float() if gains else totals.new_zeros(0),
        ]
    ).tolist()
    rows = [packed[5 + i * T : 5 + (i + 1) * T] for i in range(len(CURVES))]
    return UpdateReadout(
        loss=packed[0],
        grad_norm=packed[1],
        totals=packed[2:5],
        curves=dict(zip(CURVES, rows, strict=True)),
        gains=packed[5 + len(CURVES) * T :],
    )


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def step_metrics(
    readout: UpdateReadout,
    records: list[StepRecord],
    *,
    step: int,
    grad_norm: float,
    clipped: bool,
    skipped: bool,
    skipped_total: int,
    smoothed_loss: float | None,
    lr: float,
    gradient_steps: int,
    window_end: int | None,
) -> StepMetrics:
    """The update's `StepMetrics` (`grad_norm`: after Grokfast, as clipping saw it)."""
    token, halting, quality = (finite_or_none(v) for v in readout.totals)  # LOSS_TYPES order
    return StepMetrics(
        step=step,
        loss=finite_or_none(readout.loss),
        loss_token=token,
        loss_halting=halting,
        loss_quality=quality,
        step_losses=[finite_or_none(v) for v in readout.curves["step_losses"]],
        acc_at=readout.curves["acc_at"],
        token_acc_at=readout.curves["token_acc_at"],
        halt_prob_at=readout.curves["halt_prob_at"],
        grad_norm=finite_or_none(grad_norm),
        clipped=bool(clipped),
        skipped=skipped,
        skipped_total=skipped_total,
        edit_strategies=[r.strategy for r in records],
        smoothed_loss=smoothed_loss,
        lr=None if skipped else lr,
        gradient_steps=gradient_steps,
        gradient_window_end=window_end,
    )
