"""MLflow side of ``jobs/evaluate.py``: fetching a checkpoint by URI, logging an evaluation.

Imported only when an evaluation touches MLflow (a ``models:/``/``runs:/`` checkpoint or
``--experiment``); evaluating a local file never loads MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from refiner.checkpoints.restore import is_mlflow_uri, local_checkpoint_file
from refiner.evaluate.evaluation import EvaluationReport
from refiner.infer.calibration import CalibrationResult
from refiner.infer.calibration_log import log_calibration
from refiner.tracking import tracked_run
from refiner.tracking.logged_model import download_model_checkpoint


def fetch_checkpoint(checkpoint: str, tracking_uri: str, scratch: str) -> Path:
    """A local checkpoint.pt for a file, a folder or an MLflow URI (downloaded to scratch)."""
    if not is_mlflow_uri(checkpoint):
        return local_checkpoint_file(checkpoint)
    return download_model_checkpoint(checkpoint, tracking_uri, scratch)


def log_evaluation(
    tracking_uri: str,
    experiment: str,
    report: EvaluationReport,
    checkpoint: str,
    task: str,
    scratch: str,
    extra_metrics: Mapping[str, float] | None = None,
    calibration: CalibrationResult | None = None,
) -> str:
    """One run (tag ``refiner.kind=evaluation``): params, metrics (the report's and
    ``extra_metrics``, e.g. voting's), acc@t, plots, the stopping settings' origin and,
    given a ``calibration`` (``--calibrate``), its settings and frontier; its id."""
    name = f"eval-{Path(task).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tracked_run(tracking_uri, experiment, name, {"refiner.kind": "evaluation"}) as run:
        run.log_params(
            {
                "checkpoint": checkpoint,
                "task": task,
                "max_steps": report.max_steps_infer,
                "rows": report.rows,
            }
        )
        run.log_metrics({**report.metrics("eval_"), **(extra_metrics or {})}, step=0)
        for t, value in enumerate(report.acc_at, start=1):
            run.log_metrics({"eval_acc_at_t": value}, step=t)
        for plot in report.plots(scratch):
            run.log_artifact(str(plot), "plots")
        if calibration is not None:
            log_calibration(run, calibration, 0, Path(scratch) / "calibration")
        if report.stopping:
            run.set_tags({"refiner.stopping.origin": report.stopping["origin"]})
    return run.run_id
