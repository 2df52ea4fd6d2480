"""UnifiedRefinerOrchestrator: train many steps, infer few.

Training unrolls `max_steps_train` refinement steps in one model forward (see
refiner.model), supervises every step, and backpropagates through the last
`backprop_truncate_steps` only. Inference runs at most `max_steps_infer` steps and lets
every sample stop on its own (ACT confidence, quality, patience, max steps); stopped
samples leave the batch, so later steps run on fewer rows.

`self.model` may be a DDP wrapper: training calls it (one forward per backward);
everything else uses the unwrapped module (`self.core`).
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from refiner.calibration import CalibrationResult, stopping_in_use
from refiner.config import OrchestrationConfig
from refiner.edits import EditSelector, apply_edit, canvas_score, token_accuracy
from refiner.grokfast import GrokfastFilter
from refiner.halting import STOP_REASONS, StoppingRule
from refiner.losses import LOSS_TYPES, step_weights
from refiner.memory import MemoryBank
from refiner.model import EditFn, RefinerModel
from refiner.tokenizers import MASK

HISTORY_LENGTH = 100  # recent losses and gradient norms kept (and checkpointed)


def unwrap(model: nn.Module) -> RefinerModel:
    """The RefinerModel inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


class UnifiedRefinerOrchestrator:
    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        memory_bank: MemoryBank | None = None,
        config: OrchestrationConfig | None = None,
        device: torch.device | str | None = None,
        autocast: bool | None = None,
    ) -> None:
        """`autocast`: bf16 autocast for forwards; default on for CUDA, off for CPU."""
        core = unwrap(model)
        if device is None:
            device = next(core.parameters()).device
        device = torch.device(device)
        if model is core:
            model.to(device)  # a wrapper is already placed; moving it would break DDP
        if memory_bank is not None and not core.use_memory:
            raise ValueError("a memory bank was given but the model has memory_capacity=0")
        self.model = model
        self.tokenizer = tokenizer
        self.memory_bank = memory_bank.to(device) if memory_bank is not None else None
        self.config = config if config is not None else OrchestrationConfig()
        self.device = device
        self.autocast = device.type == "cuda" if autocast is None else autocast
        c = self.config
        self.edit_selector = EditSelector(
            c.canvas_edit_strategies,
            c.adaptive_edit_selection,
            c.edit_selection,
            c.edit_exploration,
            c.seed,
        )
        self.grokfast = GrokfastFilter(c.grokfast)
        self.step_count = 0  # train_step calls, skipped ones included
        self.skipped_steps = 0  # updates refused by the NaN/Inf guard
        self.loss_history: deque[float] = deque(maxlen=HISTORY_LENGTH)
        self.grad_norm_history: deque[float] = deque(maxlen=HISTORY_LENGTH)
        # Stopping settings chosen on held-out rows (refiner.calibration); None: config's
        self.calibration: CalibrationResult | None = None
        self.training = True
        self.train()

    @property
    def core(self) -> RefinerModel:
        return unwrap(self.model)

    def train(self) -> UnifiedRefinerOrchestrator:
        self.training = True
        self.model.train()
        return self

    def eval(self) -> UnifiedRefinerOrchestrator:
        self.training = False
        self.model.eval()
        return self

    # ------------------------------------------------------------------ training

    def train_step(
        self,
        batch: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        task_type: str = "sequence",
        lr_scheduler: Any = None,
    ) -> dict[str, Any]:
        """One optimizer update from one batch: unroll, weighted loss, backward, NaN/Inf
        guard, Grokfast, clip, optimizer (and LR scheduler) step.

        Returns JSON-serialisable metrics: step, loss, loss_token, loss_halting,
        loss_quality (step-weighted, before type weights), step_losses [T] (type-weighted
        loss per step), acc_at [T] (exact match after step t), token_acc_at [T],
        halt_prob_at [T], grad_norm (before clipping; None if non-finite), clipped,
        skipped, skipped_total, edit_strategies [T], smoothed_loss, lr (None if skipped),
        gradient_steps (K). Metrics are this process's; under DDP only the gradients
        are averaged."""
        if not self.training:
            self.train()
        inputs, target = self._batch(batch)
        c = self.config
        T = c.max_steps_train
        K = c.gradient_window(T)
        learn_edits = c.adaptive_edit_selection and len(c.canvas_edit_strategies) > 1
        gains: list[tuple[str, torch.Tensor]] = []
        edit_fn = self._edit_fn(
            task_type, explore=True, target=target if learn_edits else None, gains=gains
        )
        with self._autocast():
            out = self.model(
                inputs, steps=T, grad_steps=K, target=target, edit_fn=edit_fn, memory=self._memory()
            )
        steps = self.apply_truncated_backprop(out["steps"], c)

        w = c.step_loss_weights
        weights = step_weights(w, T).to(self.device, torch.float32)
        per_type = {name: torch.stack([s[name] for s in steps]) for name in LOSS_TYPES}  # [T] each
        step_losses = (
            w.token * per_type["token"]
            + w.halting * per_type["halting"]
            + w.quality * per_type["quality"]
        )
        loss = (weights * step_losses).sum()

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.core.parameters() if p.grad is not None]
        # The decision uses the gradients only: under DDP they are all-reduced, so every
        # rank sees the same norm and all ranks skip (or step) together. A non-finite
        # loss that leaves the gradients finite (e.g. inf times a zero weight) cannot
        # corrupt the weights, so it only stays out of the loss history.
        grad_norm = _grad_norm(params)
        skipped = not math.isfinite(grad_norm)
        clipped = False
        lr = optimizer.param_groups[0]["lr"]
        if skipped:
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
        else:
            if self.grokfast.enabled:
                self.grokfast.apply(self.core.named_parameters())
                grad_norm = _grad_norm(params)
            if c.gradient_clip_threshold is not None:
                torch.nn.utils.clip_grad_norm_(params, c.gradient_clip_threshold)
                clipped = grad_norm > c.gradient_clip_threshold
            optimizer.step()
            if lr_scheduler is not None:
                lr_scheduler.step()
            if math.isfinite(loss.item()):
                self.loss_history.append(loss.item())
            self.grad_norm_history.append(grad_norm)
            self._write_memory(out, steps[-1]["exact"])
        self.step_count += 1
        if gains:  # one host transfer for all steps' edit gains
            for (strategy, _), gain in zip(
                gains, torch.stack([g for _, g in gains]).tolist(), strict=True
            ):
                self.edit_selector.record(task_type, strategy, gain)
        self._record_memory_reads(steps)

        per_step = torch.stack(
            [
                step_losses.detach(),
                torch.stack([s["exact"].float().mean() for s in steps]),
                torch.stack([s["token_acc"] for s in steps]),
                torch.stack([s["halt_prob"].mean() for s in steps]),
            ]
        ).tolist()
        totals = (
            (weights[None] * torch.stack([per_type[n].detach() for n in LOSS_TYPES]))
            .sum(1)
            .tolist()
        )
        return {
            "step": self.step_count,
            "loss": _finite_or_none(loss.item()),
            **{
                f"loss_{name}": _finite_or_none(v)
                for name, v in zip(LOSS_TYPES, totals, strict=True)
            },
            "step_losses": [_finite_or_none(v) for v in per_step[0]],
            "acc_at": per_step[1],
            "token_acc_at": per_step[2],
            "halt_prob_at": per_step[3],
            "grad_norm": _finite_or_none(grad_norm),
            "clipped": bool(clipped),
            "skipped": skipped,
            "skipped_total": self.skipped_steps,
            "edit_strategies": [s["strategy"] for s in steps],
            "smoothed_loss": self._smoothed_loss(),
            "lr": None if skipped else lr,
            "gradient_steps": K,
        }

    def apply_truncated_backprop(
        self, step_outputs: list[dict[str, Any]], config: OrchestrationConfig | None = None
    ) -> list[dict[str, Any]]:
        """Cut the gradient of every step before the last K: their tensors are detached.

        The model's unroll already runs those steps without autograd and detaches the
        latent before the window (which is what saves memory); this states the rule
        on the step outputs themselves, so a loss built from them cannot reach back."""
        config = config or self.config
        first = len(step_outputs) - config.gradient_window(len(step_outputs))
        return [
            s if t >= first else {k: v.detach() if torch.is_tensor(v) else v for k, v in s.items()}
            for t, s in enumerate(step_outputs)
        ]

    def select_edit_strategy(
        self, step: int, canvas_scores: torch.Tensor | None, task_type: str
    ) -> str:
        """The edit strategy for `step` (explores only in train mode)."""
        return self.edit_selector.select(step, canvas_scores, task_type, explore=self.training)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(
        self,
        batch: Mapping[str, torch.Tensor],
        task_type: str = "sequence",
        steps: int | None = None,
    ) -> dict[str, Any]:
        """Full unroll (no early stopping) on a labelled batch: acc@t, token acc@t, loss.

        Changes no state (no edit-history updates, no memory writes)."""
        inputs, target = self._batch(batch)
        steps = steps or self.config.max_steps_train
        was_training = self.core.training
        self.core.eval()
        try:
            with self._autocast():
                out = self.core(
                    inputs,
                    steps=steps,
                    target=target,
                    edit_fn=self._edit_fn(task_type, explore=False),
                    memory=self._memory(),
                )
        finally:
            self.core.train(was_training)
        s = out["steps"]
        w = self.config.step_loss_weights
        rows = torch.stack(
            [
                torch.stack([x["exact"].float().mean() for x in s]),
                torch.stack([x["token_acc"] for x in s]),
                torch.stack([x["halt_prob"].mean() for x in s]),
                torch.stack(
                    [
                        w.token * x["token"] + w.halting * x["halting"] + w.quality * x["quality"]
                        for x in s
                    ]
                ),
            ]
        ).tolist()
        return {
            "acc_at": rows[0],
            "token_acc_at": rows[1],
            "halt_prob_at": rows[2],
            "step_losses": rows[3],
        }

    @torch.no_grad()
    def inference(
        self,
        input_ids: torch.Tensor | np.ndarray | list,
        return_traces: bool = False,
        max_steps_override: int | None = None,
        early_stopping: bool | None = None,
        task_type: str = "sequence",
    ) -> dict[str, Any]:
        """Refine each sample until it stops; stopped samples leave the active batch.

        `early_stopping=False` (or config.stopping.early_stopping=False) runs every
        sample to the step limit. Changes no state except memory-bank read counters.
        Returns final_canvas_ids [B][L], final_canvas (decoded by the tokenizer, or None
        without one), steps_taken [B], mean_steps, sample_steps (sum of steps_taken),
        stopping_reason [B] (refiner.halting.STOP_REASONS), stopping_reason_counts,
        final_canvas_scores [B], quality_per_step / halt_prob_per_step (means over the
        samples active at each step), active_per_step, edit_strategy_use, memory (bank
        stats or None), stopping (the settings that ran and their origin: "config",
        "calibrated at update N on M rows" or "early stopping off") and, with
        return_traces, traces: per step its active rows, their
        canvases, scores, halting probabilities, strategy and the rows that stopped.
        """
        c = self.config
        max_steps = max_steps_override if max_steps_override is not None else c.max_steps_infer
        if max_steps < 1:
            raise ValueError(f"max_steps_override must be >= 1, got {max_steps}")
        stop_early = c.stopping.early_stopping if early_stopping is None else early_stopping
        stopping, max_steps, stopping_report = stopping_in_use(
            self.calibration, c.stopping, max_steps, stop_early
        )
        inputs = _as_ids(input_ids, self.device)
        core = self.core
        was_training = core.training
        core.eval()
        B = inputs.shape[0]
        final_canvas = torch.full_like(inputs, MASK)
        final_score = torch.zeros(B, device=self.device)
        steps_taken = torch.zeros(B, dtype=torch.long, device=self.device)
        reasons = torch.full((B,), -1, dtype=torch.long, device=self.device)
        rule = StoppingRule(stopping, B, self.device, enabled=stop_early)
        rows = torch.arange(B, device=self.device)  # original index of each active row
        strategy_use: Counter[str] = Counter()
        per_step: list[dict[str, Any]] = []
        memory = self._memory()
        try:
            with self._autocast():
                x = core.embed_input(inputs)
                state = core.initial_state(inputs)
                canvas, quality, latent = state["canvas"], state["canvas_quality"], state["latent"]
                for t in range(max_steps):
                    out = core.step(x, canvas, latent, memory)
                    latent = out["latent"]
                    proposal = out["logits"].argmax(-1)
                    proposal_quality = torch.sigmoid(out["quality_logits"].float())
                    strategy = self.edit_selector.select(
                        t, canvas_score(quality), task_type, explore=False
                    )
                    previous = canvas
                    canvas, quality = apply_edit(
                        strategy,
                        canvas,
                        quality,
                        proposal,
                        proposal_quality,
                        self._budget(strategy),
                    )
                    strategy_use[strategy] += 1
                    changed = (canvas != previous).any(-1)
                    score = canvas_score(quality)
                    halt_prob = torch.sigmoid(out["halt_logit"].float())
                    if self.memory_bank is not None and self.memory_bank.size:
                        self.memory_bank.record_reads(out["memory_similarity"])
                    codes = rule.update(halt_prob, score, t == max_steps - 1, changed)
                    done = codes >= 0
                    record = {
                        "step": t + 1,
                        "active": rows.numel(),
                        "mean_score": score.mean().item(),
                        "mean_halt_prob": halt_prob.mean().item(),
                        "strategy": strategy,
                    }
                    if return_traces:
                        record.update(
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
                        keep = (~done).nonzero().squeeze(1)
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
            "final_canvas": [self._decode(row) for row in ids],
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
            "memory": self.memory_bank.get_stats() if self.memory_bank is not None else None,
            "stopping": stopping_report,
        }
        if return_traces:
            result["traces"] = per_step
        return result

    # ------------------------------------------------------------------ stats and state

    def get_training_stats(self) -> dict[str, Any]:
        grads, losses = list(self.grad_norm_history), list(self.loss_history)
        return {
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "mode": "train" if self.training else "eval",
            "gradient_norm": {
                "recent": grads[-1] if grads else None,
                "average": sum(grads) / len(grads) if grads else None,
                "history_length": len(grads),
            },
            "loss": {
                "recent": losses[-1] if losses else None,
                "average": sum(losses) / len(losses) if losses else None,
                "smoothed": self._smoothed_loss(),
                "history_length": len(losses),
            },
            "edit_performance": self.edit_selector.performance(),
            "memory": self.memory_bank.get_stats() if self.memory_bank is not None else None,
            "config": self.config.to_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything the orchestrator owns, as tensors and plain containers."""
        return {
            "model": self.core.state_dict(),
            "model_config": self.core.config.to_dict(),
            "config": self.config.to_dict(),
            "step_count": self.step_count,
            "skipped_steps": self.skipped_steps,
            "loss_history": list(self.loss_history),
            "grad_norm_history": list(self.grad_norm_history),
            "edit_selector": self.edit_selector.state_dict(),
            "grokfast": self.grokfast.state_dict(),
            "memory_bank": self.memory_bank.state_dict() if self.memory_bank is not None else None,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict()`. The orchestrator keeps its own config object."""
        self.core.load_state_dict(state["model"])
        self.step_count = state["step_count"]
        self.skipped_steps = state["skipped_steps"]
        self.loss_history = deque(state["loss_history"], maxlen=HISTORY_LENGTH)
        self.grad_norm_history = deque(state["grad_norm_history"], maxlen=HISTORY_LENGTH)
        self.edit_selector.load_state_dict(state["edit_selector"])
        self.grokfast.load_state_dict(state["grokfast"], self.device)
        if self.memory_bank is not None and state["memory_bank"] is not None:
            self.memory_bank.load_state_dict(state["memory_bank"])
        calibration = state.get("calibration")  # absent in checkpoints from before it
        self.calibration = CalibrationResult.from_dict(calibration) if calibration else None

    # ------------------------------------------------------------------ helpers

    def _batch(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, target = batch["input"], batch["target"]
        if inputs.shape != target.shape or inputs.dim() != 2:
            raise ValueError(
                f"batch input and target must both be [B, L]; got {tuple(inputs.shape)} and {tuple(target.shape)}"
            )
        return inputs.to(self.device, torch.long), target.to(self.device, torch.long)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _memory(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.memory_bank.snapshot() if self.memory_bank is not None else None

    def _budget(self, strategy: str) -> float:
        return self.config.append_budget if strategy == "append" else self.config.patch_budget

    def _edit_fn(
        self,
        task_type: str,
        explore: bool,
        target: torch.Tensor | None = None,
        gains: list[tuple[str, torch.Tensor]] | None = None,
    ) -> EditFn:
        """The per-step edit callback the unroll calls; with a target it measures each
        edit's token-accuracy gain (the adaptive selector's reward)."""

        def edit(
            step: int,
            canvas: torch.Tensor,
            quality: torch.Tensor,
            proposal: torch.Tensor,
            proposal_quality: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor, str]:
            scores = canvas_score(quality) if self.edit_selector.adaptive else None
            strategy = self.edit_selector.select(step, scores, task_type, explore=explore)
            new_canvas, new_quality = apply_edit(
                strategy, canvas, quality, proposal, proposal_quality, self._budget(strategy)
            )
            if target is not None and gains is not None:
                gains.append(
                    (strategy, token_accuracy(new_canvas, target) - token_accuracy(canvas, target))
                )
            return new_canvas, new_quality, strategy

        return edit

    def _write_memory(self, out: dict[str, Any], solved: torch.Tensor) -> None:
        n = self.config.memory_writes_per_step
        if self.memory_bank is None or n == 0:
            return
        rows = solved.nonzero().squeeze(1)[:n]
        if rows.numel():
            self.memory_bank.write(
                out["summary"][rows].float(), out["latent"][rows].mean(1).float()
            )

    def _record_memory_reads(self, steps: list[dict[str, Any]]) -> None:
        if self.memory_bank is None or self.memory_bank.size == 0:
            return
        for s in steps:
            if s["memory_similarity"] is not None:
                self.memory_bank.record_reads(s["memory_similarity"])

    def _smoothed_loss(self) -> float | None:
        recent = list(self.loss_history)[-self.config.loss_smoothing_window :]
        return sum(recent) / len(recent) if recent else None

    def _decode(self, ids: list[int]) -> Any:
        if self.tokenizer is None:
            return None
        decoded = self.tokenizer.decode(ids)
        return decoded.tolist() if isinstance(decoded, np.ndarray) else decoded


def _grad_norm(params: list[torch.Tensor]) -> float:
    if not params:
        return 0.0
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params])
    ).item()


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _as_ids(input_ids: torch.Tensor | np.ndarray | list, device: torch.device) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(input_ids) if isinstance(input_ids, list) else input_ids)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {tuple(ids.shape)}")
    return ids.to(device, torch.long)
