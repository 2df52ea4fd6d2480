"""Compare a sweep's trials from MLflow alone: a table, a CSV and overlaid refinement curves.

Per child run: its swept params (the ``refiner.swept_keys`` tag names them), the final
training loss, acc@t at the inference step budget (the latest ``val_acc_at_{budget}``),
exact match of early-stopped inference (``val_acc_infer``), the mean inference steps
(``val_mean_steps``) and the refinement curve: the latest ``val_acc_at_t`` for t = 1..T.
Where the trials ran a benchmark, also the field's numbers (``FIELD_METRICS``): the final
evaluation's (``final_val_*``) when the run finished, else the latest checkpoint's.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refiner.evaluate.plots import plot_refinement_curve
from refiner.tracking.sweeps import BEST_TAG, FRONT_TAG, STOPPED_TAG, SweepRuns, run_name


@dataclass
class TrialRow:
    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]  # final_loss, acc_at_budget, acc_infer, mean_steps, the sweep metric
    curve: list[float]  # acc@t, t = 1..T
    best: bool
    on_front: bool = False  # a two-objective sweep's Pareto front (tagged by the sweep)


KEY_METRICS = ("final_loss", "acc_at_budget", "acc_infer", "mean_steps")
# The field's metrics (refiner.evaluate.voting): sudoku/maze exact per puzzle and cell, ARC pass@k.
FIELD_METRICS = ("puzzle_exact", "cell_acc", "pass_at_1", "pass_at_2")


def trial_rows(sweep: SweepRuns) -> list[TrialRow]:
    """One row per child run, sorted by the sweep metric (best first)."""
    metric, mode = sweep.metric
    keys = sweep.swept_keys
    rows = []
    for run in sweep.children:
        m, params = run.data.metrics, run.data.params
        budget = params.get("orchestration.max_steps_infer", "")
        curve = _curve(m)
        rows.append(
            TrialRow(
                run_id=run.info.run_id,
                name=run_name(run),
                status=run.info.status
                + (" (stopped early)" if run.data.tags.get(STOPPED_TAG) == "true" else ""),
                params={k: params.get(k, "") for k in keys},
                metrics={
                    "final_loss": m.get("loss", math.nan),
                    "acc_at_budget": m.get(f"val_acc_at_{budget}", math.nan),
                    "acc_infer": m.get("val_acc_infer", math.nan),
                    "mean_steps": m.get("val_mean_steps", math.nan),
                    **_field_metrics(m),
                    **{k: m.get(k, math.nan) for k in sweep.objectives},
                    metric: m.get(metric, math.nan),
                },
                curve=curve,
                best=run.data.tags.get(BEST_TAG) == "true",
                on_front=run.data.tags.get(FRONT_TAG) == "true",
            )
        )
    sign = -1.0 if mode == "max" else 1.0

    def order(row: TrialRow) -> tuple[float, float]:
        value = row.metrics.get(metric, math.nan)
        return (math.inf if math.isnan(value) else sign * value, row.metrics["final_loss"])

    return sorted(rows, key=order)


def format_front(rows: list[TrialRow], objectives: dict[str, str]) -> str:
    """A two-objective sweep's front, in the order of the first objective (best first)."""
    first = next(iter(objectives))
    sign = -1.0 if objectives[first] == "max" else 1.0
    front = sorted((r for r in rows if r.on_front), key=lambda r: sign * r.metrics[first])
    shown = ", ".join(f"{m} ({mode})" for m, mode in objectives.items())
    lines = [f"Pareto front over {shown}: {len(front)} trial(s) (F in the table)"]
    for r in front:
        values = "  ".join(f"{m} {_num(r.metrics.get(m, math.nan))}" for m in objectives)
        lines.append(f"  {r.name}{' *' if r.best else ''}  {values}")
    return "\n".join(lines)


def _field_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The field's metrics a run logged (none for a task that is no benchmark)."""
    out = {}
    for name in FIELD_METRICS:
        value = metrics.get(f"final_val_{name}", metrics.get(f"val_{name}"))
        if value is not None:
            out[name] = value
    return out


def _curve(metrics: dict[str, float]) -> list[float]:
    steps = sorted(
        int(k.rsplit("_", 1)[1])
        for k in metrics
        if k.startswith("val_acc_at_") and k.rsplit("_", 1)[1].isdigit()
    )
    return [metrics[f"val_acc_at_{t}"] for t in steps]


def format_table(rows: list[TrialRow], metric: str) -> str:
    keys = list(rows[0].params) if rows else []
    columns = [k.rsplit(".", 1)[-1] for k in keys]
    field = [name for name in FIELD_METRICS if any(name in r.metrics for r in rows)]
    shown = list(KEY_METRICS) + field
    shown += [metric] if metric not in shown else []
    header = ["run", *columns, *shown, "status"]
    lines = [
        [
            r.name + (" *" if r.best else "") + (" F" if r.on_front else ""),
            *(_short(r.params[k]) for k in keys),
            *(_num(r.metrics.get(c, math.nan)) for c in shown),
            r.status,
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths, strict=True))]
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def write_csv(rows: list[TrialRow], path: str | Path) -> Path:
    path = Path(path)
    keys = list(rows[0].params) if rows else []
    metric_keys = sorted({k for r in rows for k in r.metrics})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["run_id", "run_name", "status", "best", "pareto_front", *keys, *metric_keys]
        )
        for r in rows:
            writer.writerow(
                [
                    r.run_id,
                    r.name,
                    r.status,
                    r.best,
                    r.on_front,
                    *(r.params[k] for k in keys),
                    *(r.metrics.get(k, "") for k in metric_keys),
                ]
            )
    return path


def plot_curves(rows: list[TrialRow], path: str | Path, title: str) -> Path:
    """Overlay the trials' acc@t curves (trials without a validation curve are left out)."""
    series = {}
    for r in rows:
        if r.curve:
            label = " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in r.params.items())
            series[f"{label}{' (best)' if r.best else ''}"[:60] or r.name] = r.curve
    return plot_refinement_curve(series, path, title=title)


def _num(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
