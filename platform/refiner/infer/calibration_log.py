"""What a calibration leaves in a run's tracker: settings as tags and metrics, the
steps-vs-accuracy frontier as a table (JSON and CSV) and a plot.

Goes through the `RunTracker` protocol only (no MLflow here), so the Ray train loop
and the jobs log the same things the same way.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from refiner.infer.calibration import CalibrationResult, frontier_table, plot_frontier
from refiner.runs.tracker import RunTracker

ARTIFACT_DIR = "calibration"


def stopping_tags(result: CalibrationResult) -> dict[str, str]:
    """The chosen settings as run tags ("off" for a signal that is not used)."""
    s = result.settings
    return {
        "refiner.stopping.origin": result.origin,
        "refiner.stopping.act_threshold": _text(s.act_threshold),
        "refiner.stopping.quality_threshold": _text(s.quality_threshold),
        "refiner.stopping.patience": _text(s.patience),
        "refiner.stopping.patience_signal": s.patience_signal if s.patience else "off",
        "refiner.stopping.max_steps": str(s.max_steps),
    }


def calibration_metrics(result: CalibrationResult) -> dict[str, float]:
    """Scalars over time: what was chosen and what it costs on the calibration rows
    (a signal that is off is left out rather than given a fake value)."""
    s = result.settings
    out = {
        "calib_max_steps": float(s.max_steps),
        "calib_patience": float(s.patience or 0),
        "calib_mean_steps": result.mean_steps,
        "calib_accuracy": result.accuracy,
        "calib_accuracy_at_limit": result.accuracy_at_limit,
        "calib_accuracy_loss": result.accuracy_loss,
        "calib_rows": float(result.rows),
    }
    if s.act_threshold is not None:
        out["calib_act_threshold"] = s.act_threshold
    if s.quality_threshold is not None:
        out["calib_quality_threshold"] = s.quality_threshold
    return out


def write_calibration_files(result: CalibrationResult, directory: str | Path) -> list[Path]:
    """calibration.json (the whole result), frontier.csv and frontier.png in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    summary = directory / "calibration.json"
    summary.write_text(json.dumps(result.to_dict(), indent=1))
    table = frontier_table(result)
    frontier = directory / "frontier.csv"
    with frontier.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(list(table))
        writer.writerows(zip(*table.values(), strict=True))
    return [summary, frontier, plot_frontier(result, directory / "frontier.png")]


def log_calibration(
    tracker: RunTracker, result: CalibrationResult, step: int, directory: str | Path
) -> list[Path]:
    """Tags, metrics at `step`, and the files under calibration/update_N in the run."""
    tracker.set_tags(stopping_tags(result))
    tracker.log_metrics(calibration_metrics(result), step)
    files = write_calibration_files(result, directory)
    for path in files:
        tracker.log_artifact(str(path), f"{ARTIFACT_DIR}/update_{step:06d}")
    return files


def _text(value: float | int | None) -> str:
    return "off" if value is None else f"{value:g}"
