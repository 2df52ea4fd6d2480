"""What a finished sweep gives back: its trials, the best one, and the summary table.

Pure Python: the Ray layer (``refiner.distributed.sweep_driver``) fills these from
Tune's results; the job prints ``format_summary``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from refiner.checkpoints.storage import resolve_storage
from refiner.sweep.plan import SweepPlan


@dataclass
class TrialSummary:
    trial_id: str
    run_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    status: str  # "done", "stopped" (by the scheduler) or "error"

    @property
    def steps(self) -> int:
        return int(self.metrics.get("step", 0) or 0)


@dataclass
class SweepOutcome:
    name: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    best: TrialSummary | None
    parent_run_id: str | None
    best_run_id: str | None = None
    best_config: str | None = None
    model_uri: str | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    objectives: dict[str, str] = field(default_factory=dict)  # a two-objective sweep's
    front: list[TrialSummary] = field(default_factory=list)  # its Pareto front
    choice_reason: str = ""  # why the best trial was chosen from the front
    exploits: list[str] = field(default_factory=list)  # PBT/PB2: who took whose weights
    went_back: int = 0  # PBT/PB2: updates trained again after exploits, beyond total_steps

    @property
    def total_steps(self) -> int:
        return sum(t.steps for t in self.trials)

    @property
    def errored(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == "error"]


def best_trial(trials: Sequence[TrialSummary], metric: str, mode: str) -> TrialSummary | None:
    """The best scored trial that did not error; None when no trial has the metric.

    Ties (e.g. exact match still 0 on a short budget) go to more steps, then lower loss.
    """
    scored = [t for t in trials if finite(t.metrics.get(metric)) and t.status != "error"]
    if not scored:
        return None
    sign = 1 if mode == "max" else -1
    return max(scored, key=lambda t: (sign * t.metrics[metric], t.steps, -_loss(t.metrics)))


def describe_params(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``max_steps_train=8 truncated_backprop=True``: the last part of each swept key."""
    return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(config.get(k))}" for k in keys)


def format_summary(outcome: SweepOutcome, keys: Sequence[str], plan: SweepPlan) -> str:
    """The end-of-sweep table (best first), the best trial and how to go on."""
    sign = -1 if outcome.mode == "max" else 1
    rows = sorted(
        outcome.trials,
        key=lambda t: sign * float(t.metrics.get(outcome.metric, sign * float("inf")) or 0),
    )
    lines = [
        f"\n=== sweep {outcome.name}: {len(rows)} trials, {outcome.total_steps} trial-updates ===",
        f"{'trial':<13} {'status':<8} {'steps':>6} {outcome.metric:>14} {'loss':>8}  params",
    ]
    for t in rows:
        value = t.metrics.get(outcome.metric)
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else "-"
        mark = " *" if outcome.best is t else ""
        lines.append(
            f"{t.trial_id:<13} {t.status:<8} {t.steps:>6} {shown:>14} "
            f"{t.metrics.get('loss', float('nan')):>8.4f}  {describe_params(t.params, keys)}{mark}"
        )
    lines.append(f"wall time: {outcome.elapsed_s:.0f} s")
    if outcome.errored:
        # The plan is found through --storage: name it unless it is the default.
        resume = f"python jobs/sweep.py --resume {plan.name}"
        if plan.storage != resolve_storage(None):
            resume += f" --storage {plan.storage}"
        lines.append(
            f"{len(outcome.errored)} trial(s) errored (exit status 1); the finished trials "
            f"are kept, finish the others with: {resume}"
        )
    if outcome.objectives:
        shown = ", ".join(f"{m} ({mode})" for m, mode in outcome.objectives.items())
        lines.append(f"Pareto front over {shown}: {len(outcome.front)} trial(s)")
        for t in outcome.front:
            values = "  ".join(f"{m} {float(t.metrics[m]):.4g}" for m in outcome.objectives)
            lines.append(f"  {t.trial_id:<13} {values}  {describe_params(t.params, keys)}")
        if outcome.choice_reason:
            lines.append(f"chosen from the front: {outcome.choice_reason}")
    if outcome.exploits:
        lines.append(f"population: {len(outcome.exploits)} exploit(s)")
        lines.extend(f"  {line}" for line in outcome.exploits)
    if outcome.went_back:
        lines.append(
            f"updates trained: {outcome.total_steps + outcome.went_back} (the final steps add "
            f"up to {outcome.total_steps}: trials went on from checkpoints "
            f"{abs(outcome.went_back)} updates {'behind' if outcome.went_back > 0 else 'ahead of'}"
            " where they were)"
        )
    if outcome.best is not None:
        lines.append(f"best trial (*): {outcome.best.trial_id}, MLflow run {outcome.best_run_id}")
        lines.append(f"best config: {outcome.best_config}  (python jobs/train.py --config ...)")
    if outcome.model_uri:
        lines.append(f"registered model: {outcome.model_uri}")
    lines.extend(f"note: {note}" for note in outcome.notes)
    lines.append(
        f"MLflow parent run {outcome.parent_run_id} in experiment {plan.experiment!r} at "
        f"{plan.tracking_uri}\n  compare: python jobs/compare.py --parent-run "
        f"{outcome.parent_run_id} --tracking-uri {plan.tracking_uri}"
    )
    return "\n".join(lines)


def finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _loss(metrics: Mapping[str, Any]) -> float:
    loss = metrics.get("loss")
    return float(loss) if finite(loss) else math.inf


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "+".join(map(str, value))
    return str(value)
