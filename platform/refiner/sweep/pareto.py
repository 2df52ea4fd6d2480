"""Two-objective sweeps: the Pareto front, its hypervolume, and the rule that picks one point.

Pure Python. A point is a trial's two objective values (e.g. ``val_acc_infer`` to
maximise, ``val_mean_steps`` to minimise). A trial is on the front when no other trial
is at least as good on both objectives and better on one.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refiner.evaluate.plots import plot_pareto_front
from refiner.sweep.outcome import TrialSummary, finite


@dataclass(frozen=True)
class Choice:
    """The front's point that the sweep calls best, and why (printed and tagged)."""

    trial: TrialSummary
    reason: str


def scored(trials: Sequence[TrialSummary], objectives: Mapping[str, str]) -> list[TrialSummary]:
    """Trials that did not error and have a finite value for every objective."""
    return [
        t
        for t in trials
        if t.status != "error" and all(finite(t.metrics.get(m)) for m in objectives)
    ]


def pareto_front(
    trials: Sequence[TrialSummary], objectives: Mapping[str, str]
) -> list[TrialSummary]:
    """The non-dominated trials, sorted by the first objective (best first)."""
    points = scored(trials, objectives)
    keys = [_better_is_larger(t, objectives) for t in points]
    front = [
        t
        for t, k in zip(points, keys, strict=True)
        if not any(_dominates(other, k) for other in keys)
    ]
    first = next(iter(objectives))
    sign = -1.0 if objectives[first] == "max" else 1.0
    return sorted(front, key=lambda t: sign * float(t.metrics[first]))


def choose(
    front: Sequence[TrialSummary], objectives: Mapping[str, str], within: float
) -> Choice | None:
    """The front's trial best on the second objective among those within ``within`` (in the
    first objective's units) of the best first objective; ties go to the first objective."""
    if not front:
        return None
    first, second = list(objectives)
    sign1 = 1.0 if objectives[first] == "max" else -1.0
    sign2 = 1.0 if objectives[second] == "max" else -1.0
    best_first = max(sign1 * float(t.metrics[first]) for t in front)
    near = [t for t in front if sign1 * float(t.metrics[first]) >= best_first - within - 1e-12]
    pick = max(near, key=lambda t: (sign2 * float(t.metrics[second]), sign1 * t.metrics[first]))
    top = sign1 * best_first
    reason = (
        f"{'highest' if sign2 > 0 else 'lowest'} {second} ({pick.metrics[second]:.4g}) among the "
        f"{len(near)} front trial(s) with {first} within {within:g} of the best ({top:.4g}); "
        f"its {first} is {pick.metrics[first]:.4g}"
    )
    return Choice(pick, reason)


def hypervolume(
    trials: Sequence[TrialSummary], objectives: Mapping[str, str], reference: Sequence[float]
) -> float:
    """The area the front dominates, bounded by ``reference`` (a point worse than every
    trial on both objectives, in the objectives' own units). Higher is better."""
    front = pareto_front(trials, objectives)
    ref = _better_is_larger_values(reference, objectives)
    pts = sorted(
        (p for p in (_better_is_larger(t, objectives) for t in front) if p[0] > ref[0]),
        key=lambda p: -p[0],
    )
    area, height = 0.0, ref[1]
    for x, y in pts:  # sweep from the best first objective down
        if y > height:
            area += (x - ref[0]) * (y - height)
            height = y
    return area


def front_rows(
    front: Sequence[TrialSummary], objectives: Mapping[str, str], keys: Sequence[str]
) -> list[dict[str, Any]]:
    """The front as table rows: trial, objective values, swept params."""
    return [
        {
            "trial_id": t.trial_id,
            "run_name": t.run_name,
            **{m: t.metrics[m] for m in objectives},
            **{k: t.params.get(k) for k in keys},
        }
        for t in front
    ]


def _better_is_larger(t: TrialSummary, objectives: Mapping[str, str]) -> tuple[float, float]:
    return _better_is_larger_values([float(t.metrics[m]) for m in objectives], objectives)


def _better_is_larger_values(
    values: Sequence[float], objectives: Mapping[str, str]
) -> tuple[float, float]:
    signs = [1.0 if mode == "max" else -1.0 for mode in objectives.values()]
    a, b = (s * float(v) for s, v in zip(signs, values, strict=True))
    return a, b


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def write_front_artifacts(
    trials: Sequence[TrialSummary],
    front: Sequence[TrialSummary],
    objectives: Mapping[str, str],
    keys: Sequence[str],
    directory: str | Path,
    chosen: TrialSummary | None = None,
) -> list[Path]:
    """``pareto_front.csv`` (the front's trials) and ``pareto_front.png`` (every scored
    trial, the front marked and joined, the chosen point circled) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = front_rows(front, objectives, keys)
    table = directory / "pareto_front.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        columns = ["trial_id", "run_name", *objectives, *keys]
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    first, second = list(objectives)
    every = [
        (float(t.metrics[first]), float(t.metrics[second])) for t in scored(trials, objectives)
    ]
    line = [(float(t.metrics[first]), float(t.metrics[second])) for t in front]
    pick = (float(chosen.metrics[first]), float(chosen.metrics[second])) if chosen else None
    plot = plot_pareto_front(
        every, line, (first, second), directory / "pareto_front.png", chosen=pick
    )
    return [table, plot]
