"""Infer few: refine each sample until it stops on its own.

Every sample stops by its own rule (ACT confidence, quality, patience, the step limit;
refiner.infer.halting), and stopped samples leave the active batch, so later steps run on
fewer rows. On the fast path (compiled step) the active rows are padded up to a
power-of-two bucket, so the shrinking batch reuses a few compiled shapes. `UnifiedRefinerOrchestrator.inference` is the public entry point; this module
holds the loop so that training (refiner.train.orchestrator) and inference read separately.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from refiner.data.tokenizers import MASK
from refiner.infer.halting import STOP_REASONS, StoppingRule, stopping_in_use
from refiner.model.edits import canvas_score
from refiner.model.network import RefinerModel
from refiner.model.step_values import StepOutput
from refiner.train.interface import Orchestrator


@torch.no_grad()
def infer_few(
    orchestrator: Orchestrator,
    input_ids: torch.Tensor | np.ndarray | list,
    max_steps: int | None,
    early_stopping: bool | None,
    task_type: str,
    return_traces: bool = False,
    puzzle_ids: torch.Tensor | np.ndarray | list | None = None,
) -> dict[str, Any]:
    """Refine each sample until it stops (`UnifiedRefinerOrchestrator.inference`).

    `max_steps`: the caller's step limit; None: the config's max_steps_infer, which a
    calibration's own limit caps. Edits go through `orchestrator.edit_policy` (never
    exploring). `early_stopping` None: the config's. Changes no state except memory-bank
    read counters.

    Returns final_canvas_ids [B][L], final_canvas (decoded by the tokenizer, or None
    without one), steps_taken [B], mean_steps, sample_steps (sum of steps_taken),
    stopping_reason [B] (refiner.infer.halting.STOP_REASONS), stopping_reason_counts,
    final_canvas_scores [B], quality_per_step / halt_prob_per_step (means over the
    samples active at each step), active_per_step, edit_strategy_use, memory (bank
    stats or None), stopping (the settings that ran and their origin: "config",
    "calibrated at update N on M rows" or "early stopping off") and, with
    return_traces, traces: per step its active rows, their canvases, scores, halting
    probabilities, strategy, the rows that stopped, and each active cell's logit_margin
    (top-1 minus top-2 logit of the step's proposal: near 0, a near tie that rounding
    can flip)."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps_override must be >= 1, got {max_steps}")
    o = orchestrator
    if early_stopping is None:
        early_stopping = o.config.stopping.early_stopping
    puzzles = None if puzzle_ids is None else torch.as_tensor(puzzle_ids, dtype=torch.long)
    # Calibrated settings (refiner.infer.calibration) replace the config's.
    stopping, max_steps, stopping_report = stopping_in_use(
        o.calibration,
        o.config.stopping,
        o.config.max_steps_infer if max_steps is None else max_steps,
        early_stopping,
        limit_given=max_steps is not None,
    )
    device = o.device
    inputs = as_ids(input_ids, device)  # [B, L]
    core = o.core
    was_training = core.training
    core.eval()
    B = inputs.shape[0]
    final_canvas = torch.full_like(inputs, MASK)  # [B, L]
    final_score = torch.zeros(B, device=device)
    steps_taken = torch.zeros(B, dtype=torch.long, device=device)
    reasons = torch.full((B,), -1, dtype=torch.long, device=device)  # STOP_REASONS index
    rule = StoppingRule(stopping, B, device, enabled=early_stopping)
    rows = torch.arange(B, device=device)  # [active] original index of each active row
    strategy_use: Counter[str] = Counter()
    per_step: list[dict[str, Any]] = []
    memory = o.memory_snapshot()
    bank = o.memory_bank
    try:
        with o.autocast_context(), o.exploring(False):
            x = core.embed_input(  # [active, L, D]
                inputs, None if puzzles is None else puzzles.to(device)
            )
            state = core.initial_state(inputs)
            canvas, quality, latent = state.canvas, state.canvas_quality, state.latent
            for t in range(max_steps):
                # a few fixed shapes on the fast path, not one compile per active size
                out, strategy, canvas, quality, changed = refine_step(
                    o, t, x, canvas, quality, latent, memory, task_type, bucket_of=B
                )
                latent = out.latent
                strategy_use[strategy] += 1
                score = canvas_score(quality)  # [active]
                halt_prob = torch.sigmoid(out.halt_logit.float())  # [active]
                if bank is not None and bank.size and out.memory_similarity is not None:
                    bank.record_reads(out.memory_similarity)
                codes = rule.update(halt_prob, score, t == max_steps - 1, changed)
                done = codes >= 0
                record: dict[str, Any] = {
                    "step": t + 1,
                    "active": rows.numel(),
                    "mean_score": score.mean().item(),
                    "mean_halt_prob": halt_prob.mean().item(),
                    "strategy": strategy,
                }
                if return_traces:
                    top2 = out.logits.float().topk(2, dim=-1).values  # [active, L, 2]
                    record.update(
                        logit_margin=(top2[..., 0] - top2[..., 1]).tolist(),
                        rows=rows.tolist(),
                        canvas=canvas.tolist(),
                        score=score.tolist(),
                        halt_prob=halt_prob.tolist(),
                        stopped=rows[done].tolist(),
                    )
                per_step.append(record)
                if done.any():
                    stopped = rows[done]
                    final_canvas[stopped] = canvas[done]
                    final_score[stopped] = score[done]
                    steps_taken[stopped] = t + 1
                    reasons[stopped] = codes[done]
                    keep = (~done).nonzero().squeeze(1)  # batch compaction
                    rows, x, canvas, quality, latent = (
                        v[keep] for v in (rows, x, canvas, quality, latent)
                    )
                    rule.keep(keep)
                if rows.numel() == 0:
                    break
    finally:
        core.train(was_training)

    ids = final_canvas.tolist()
    reason_names = [STOP_REASONS[r] for r in reasons.tolist()]
    taken = steps_taken.tolist()
    result = {
        "final_canvas_ids": ids,
        "final_canvas": [o.decode(row) for row in ids],
        "steps_taken": taken,
        "mean_steps": sum(taken) / B if B else 0.0,
        "sample_steps": sum(taken),
        "stopping_reason": reason_names,
        "stopping_reason_counts": dict(Counter(reason_names)),
        "final_canvas_scores": final_score.tolist(),
        "quality_per_step": [r["mean_score"] for r in per_step],
        "halt_prob_per_step": [r["mean_halt_prob"] for r in per_step],
        "active_per_step": [r["active"] for r in per_step],
        "edit_strategy_use": dict(strategy_use),
        "memory": bank.get_stats() if bank is not None else None,
        "stopping": stopping_report,  # the settings used and where they came from
    }
    if return_traces:
        result["traces"] = per_step
    return result


MIN_BUCKET_FRACTION = 16  # the smallest bucket is 1/16 of the full batch


def bucket_size(active: int, full: int) -> int:
    """The batch size a step on `active` rows runs at on the fast path: the next power of
    two, at least full // 16 and at most the full batch, so a batch of B compiles at
    most 6 shapes (each compile costs seconds; a few padded rows cost far less)."""
    floor = max(1, full // MIN_BUCKET_FRACTION)
    return min(max(1 << max(active - 1, 0).bit_length(), floor), full)


def refine_step(
    orchestrator: Orchestrator,
    t: int,
    x: torch.Tensor,
    canvas: torch.Tensor,
    quality: torch.Tensor,
    latent: torch.Tensor,
    memory: tuple[torch.Tensor, torch.Tensor] | None,
    task_type: str,
    bucket_of: int | None = None,
) -> tuple[StepOutput, str, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One infer-few step: the model's step, then the orchestrator's edit policy.

    Returns the step's outputs, the strategy, the new canvas [B, L] and quality [B, L],
    and whether each row's canvas changed [B] (patience on the canvas). With `bucket_of`
    (the full batch size) and the fast path on, the step runs on a bucketed shape.
    Shared by inference and calibration's recorded pass, so both step the same way."""
    core = orchestrator.core
    if bucket_of is not None and core.fast_path:
        out = bucketed_step(core, x, canvas, latent, memory, full=bucket_of)
    else:
        out = core.step(x, canvas, latent, memory)
    proposal = out.logits.argmax(-1)
    proposal_quality = torch.sigmoid(out.quality_logits.float())
    new_canvas, new_quality, strategy = orchestrator.edit_policy.edit(
        t, canvas, quality, proposal, proposal_quality, task_type
    )
    changed = (new_canvas != canvas).any(-1)
    return out, strategy, new_canvas, new_quality, changed


def bucketed_step(
    core: RefinerModel,
    x: torch.Tensor,
    canvas: torch.Tensor,
    latent: torch.Tensor,
    memory: tuple[torch.Tensor, torch.Tensor] | None,
    full: int,
) -> StepOutput:
    """`core.step` on the active rows padded up to `bucket_size` rows (zero input and
    latent, MASK canvas), outputs cut back to the active rows. Rows never interact in a
    step (attention and pooling are per row), so the pad changes no active row."""
    n = x.shape[0]
    pad = bucket_size(n, full) - n
    if pad == 0:
        return core.step(x, canvas, latent, memory)
    out = core.step(
        torch.cat([x, x.new_zeros(pad, *x.shape[1:])]),
        torch.cat([canvas, canvas.new_full((pad, canvas.shape[1]), MASK)]),
        torch.cat([latent, latent.new_zeros(pad, *latent.shape[1:])]),
        memory,
    )
    return StepOutput(
        latent=out.latent[:n],
        logits=out.logits[:n],
        quality_logits=out.quality_logits[:n],
        halt_logit=out.halt_logit[:n],
        summary=out.summary[:n],
        memory_similarity=None if out.memory_similarity is None else out.memory_similarity[:n],
    )


def as_ids(input_ids: torch.Tensor | np.ndarray | list, device: torch.device) -> torch.Tensor:
    """Token ids as a [B, L] long tensor on `device` (one sequence becomes B=1)."""
    ids = torch.as_tensor(np.asarray(input_ids) if isinstance(input_ids, list) else input_ids)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(ids.shape)}")
    return ids.to(device, torch.long)
