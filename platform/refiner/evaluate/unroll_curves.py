"""The refinement curve of a labelled batch: the full unroll (no early stopping) and,
per step, exact-match and token accuracy, halting probability and the type-weighted
loss (`UnifiedRefinerOrchestrator.evaluate`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from refiner.data.batches import labelled_pair
from refiner.model.losses import LossOptions
from refiner.model.puzzles import batch_puzzle_ids
from refiner.train.interface import Orchestrator
from refiner.train.update_metrics import curves, step_losses

CURVE_KEYS = ("acc_at", "token_acc_at", "halt_prob_at", "step_losses")


@torch.no_grad()
def unroll_curves(
    orchestrator: Orchestrator,
    batch: Mapping[str, torch.Tensor],
    task_type: str,
    steps: int,
    loss_options: LossOptions,
) -> dict[str, list[float]]:
    """The curves (CURVE_KEYS, [steps] each) of `steps` unrolled steps in eval mode, edits
    chosen from `task_type`'s history without exploring. Changes no state (no
    edit-history updates, no memory writes)."""
    o, core = orchestrator, orchestrator.core
    inputs, target = labelled_pair(batch, o.device)
    puzzle_ids = batch_puzzle_ids(batch, core.config.puzzle_embedding, o.device)
    was_training = core.training
    core.eval()
    try:
        with o.autocast_context(), o.exploring(False):
            unroll = core(
                inputs,
                steps=steps,
                target=target,
                edit_fn=o.edit_policy.edit_fn(task_type),
                memory=o.memory_snapshot(),
                puzzle_ids=puzzle_ids,
                loss_options=loss_options,
            )
    finally:
        core.train(was_training)
    _, per_step = step_losses(unroll.steps, o.config)
    per_step_curves = curves(unroll.steps, per_step)
    return {key: per_step_curves[key] for key in CURVE_KEYS}
