"""Held-out evaluation of a refiner: the refinement curve and what infer-few does.

Shared by the Ray workers (at every checkpoint), ``jobs/evaluate.py`` and the plain
loop, so that "val_acc_infer" means the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from refiner.data.tokenizers import PAD
from refiner.evaluate.plots import plot_halting_histogram, plot_refinement_curve
from refiner.infer.halting import describe_stop_counts, describe_stopping
from refiner.model.puzzles import BATCH_KEY
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


@dataclass
class EvaluationReport:
    """acc@t of the full unroll, and exact-match accuracy of early-stopped inference."""

    rows: int
    acc_at: list[float]  # exact match after t = 1..T refinement steps (no early stop)
    token_acc_at: list[float]
    acc_infer: float  # exact match of inference with early stopping at the step budget
    max_steps_infer: int
    steps_taken: list[int]
    stopping_reasons: dict[str, int]
    edit_strategy_use: dict[str, int] = field(default_factory=dict)
    # Token accuracy of that inference (non-pad positions): moves long before exact
    # match does, so short sweeps can rank trials by it.
    token_acc_infer: float = 0.0
    # The stopping settings inference ran with and their origin (refiner.infer.calibration:
    # "config", "calibrated at update N on M rows" or "early stopping off").
    stopping: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_steps(self) -> float:
        return sum(self.steps_taken) / max(1, len(self.steps_taken))

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        """Flat scalar metrics for Ray reports and MLflow."""
        out = {f"{prefix}acc_at_{t}": a for t, a in enumerate(self.acc_at, start=1)}
        out[f"{prefix}acc_infer"] = self.acc_infer
        out[f"{prefix}token_acc_infer"] = self.token_acc_infer
        out[f"{prefix}mean_steps"] = self.mean_steps
        for reason, count in self.stopping_reasons.items():
            out[f"{prefix}stop_{reason}"] = count / max(1, self.rows)
        return out

    def summary(self) -> str:
        """A short text table: acc@t, then what inference did."""
        lines = [f"held-out rows: {self.rows}", "  step t   acc@t   token acc@t"]
        for t, (a, ta) in enumerate(zip(self.acc_at, self.token_acc_at, strict=True), start=1):
            lines.append(f"  {t:6d}   {a:5.3f}   {ta:5.3f}")
        lines += [
            f"inference (step limit {self.max_steps_infer}, early stopping): "
            f"acc {self.acc_infer:.3f} (tokens {self.token_acc_infer:.3f}),"
            f" mean steps {self.mean_steps:.2f}",
            f"why rows stopped: {describe_stop_counts(self.stopping_reasons)}",
        ]
        if self.stopping:
            lines.append(f"stopping: {describe_stopping(self.stopping)}")
        return "\n".join(lines)

    def plots(self, out_dir: str | Path) -> list[Path]:
        out_dir = Path(out_dir)
        return [
            plot_refinement_curve(self.acc_at, out_dir / "refinement_curve.png"),
            plot_halting_histogram(
                self.steps_taken, out_dir / "halting_steps.png", self.max_steps_infer
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "acc_at": self.acc_at,
            "token_acc_at": self.token_acc_at,
            "acc_infer": self.acc_infer,
            "token_acc_infer": self.token_acc_infer,
            "max_steps_infer": self.max_steps_infer,
            "mean_steps": self.mean_steps,
            "stopping_reasons": self.stopping_reasons,
            "edit_strategy_use": self.edit_strategy_use,
            "stopping": self.stopping,
        }


def evaluate_refiner(
    orchestrator: UnifiedRefinerOrchestrator,
    batch: Mapping[str, torch.Tensor],
    task_type: str = "sequence",
    max_steps_infer: int | None = None,
    curve_steps: int | None = None,
) -> EvaluationReport:
    """Evaluate on one labelled batch; changes no training state."""
    budget = max_steps_infer or orchestrator.config.max_steps_infer
    # the curve covers the inference budget too when that runs past the training unroll
    steps = curve_steps or max(orchestrator.config.max_steps_train, budget)
    curve = orchestrator.evaluate(batch, task_type=task_type, steps=steps)
    result = orchestrator.inference(
        batch["input"],
        max_steps_override=max_steps_infer,  # None: the config's, capped by a calibration
        task_type=task_type,
        puzzle_ids=batch.get(BATCH_KEY),
    )
    final = torch.tensor(result["final_canvas_ids"], device=batch["target"].device)
    exact = (final == batch["target"]).all(-1).float().mean().item()
    scored = batch["target"] != PAD
    tokens = ((final == batch["target"]) & scored).sum().item() / max(1, scored.sum().item())
    return EvaluationReport(
        rows=int(batch["input"].shape[0]),
        acc_at=curve["acc_at"],
        token_acc_at=curve["token_acc_at"],
        acc_infer=exact,
        max_steps_infer=result["stopping"]["max_steps"],  # the limit that ran (a calibration's)
        steps_taken=result["steps_taken"],
        stopping_reasons=result["stopping_reason_counts"],
        edit_strategy_use=result["edit_strategy_use"],
        token_acc_infer=tokens,
        stopping=result["stopping"],
    )
