"""Rank 0's reports on a training worker: the hook `fit` calls after every update
(`WorkerReports.after_update`: windows of statistics, validation, checkpoints, the
divergence stop) and the run's final summary."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from refiner.checkpoints.files import CONFIG_FILE
from refiner.config.experiment import ExperimentConfig
from refiner.distributed.pbt_verdicts import stop_here
from refiner.distributed.report_window import ReportWindow
from refiner.distributed.worker_checkpoints import report_to_ray
from refiner.distributed.worker_console import print_progress, say
from refiner.distributed.worker_job import WorkerJob
from refiner.evaluate.canvas_pictures import log_canvas_pictures
from refiner.evaluate.evaluation import EvaluationReport, evaluate_refiner
from refiner.evaluate.predictors import field_report
from refiner.infer.calibration import calibrate_orchestrator
from refiner.infer.calibration_log import log_calibration
from refiner.runs.tracker import RunTracker
from refiner.train.fit import Update
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

# Rank 0 waits at most this long, before a checkpoint, for its reports to be recorded.
_SETTLE_BEFORE_CHECKPOINT_S = 10.0


@dataclass
class WorkerReports:
    """`fit`'s hook on a worker: every report_every updates all ranks report; at
    checkpoints (and data-epoch ends) rank 0 validates and attaches a checkpoint; too
    many non-finite updates in a row stop the run (`diverged` says why)."""

    job: WorkerJob
    config: ExperimentConfig
    orchestrator: UnifiedRefinerOrchestrator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tracker: RunTracker
    rank: int
    world: int
    validation: dict[str, torch.Tensor] | None
    calibration: dict[str, torch.Tensor] | None
    window: ReportWindow = field(default_factory=ReportWindow)
    skipped_in_a_row: int = 0
    diverged: str | None = None

    def after_update(self, update: Update) -> bool:
        """Returns True to stop training (diverged)."""
        training, plan, step = self.config.training, self.job.plan, update.step
        self.window.add(update)
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if update.metrics.skipped else 0
        if training.max_skipped_updates and self.skipped_in_a_row >= training.max_skipped_updates:
            # Every rank skips the same updates (all-reduced gradients), so all stop here.
            self.diverged = (
                f"training diverged: updates {step - self.skipped_in_a_row + 1}-{step} all had "
                f"non-finite gradients (training.max_skipped_updates="
                f"{training.max_skipped_updates}); lower training.lr or raise the limit"
            )
        epoch_end = training.checkpoint_at_epoch_end and (
            plan.epoch_of_step(step) > plan.epoch_of_step(step - 1)
        )
        checkpoint_due = self.diverged is None and (
            step % training.checkpoint_every == 0 or step == training.steps or epoch_end
        )
        if not (checkpoint_due or self.diverged or step % training.report_every == 0):
            return False
        metrics = {
            **self.window.metrics(self.world),
            "step": step,
            "epoch": plan.epoch_of_step(step - 1),
            "lr": float(self.scheduler.get_last_lr()[0]),
        }
        report: EvaluationReport | None = None
        if self.rank == 0 and checkpoint_due:
            report = self.validate(metrics, step)
        if self.rank == 0:
            print_progress(metrics, training.steps, report)
            self.tracker.log_metrics(metrics, step)
            if checkpoint_due:  # recorded before the checkpoint: a resume starts past it
                self.tracker.settle(_SETTLE_BEFORE_CHECKPOINT_S)
        report_to_ray(
            metrics,
            self.orchestrator,
            self.optimizer,
            self.scheduler,
            self.config,
            self.rank,
            checkpoint_due,
            self.job,
        )
        self.window = ReportWindow()
        verdicts = self.job.verdicts
        if checkpoint_due and self.rank == 0 and verdicts is not None:
            if not verdicts.goes_on_after(step):  # the other ranks wait in the next update
                stop_here(verdicts.trial_id, step)
        return self.diverged is not None

    def validate(self, metrics: dict[str, Any], step: int) -> EvaluationReport | None:
        """Rank 0 at a checkpoint: calibrate stopping, evaluate the held-out rows and the
        field's metrics (all on the weights the checkpoint will hold) into `metrics`."""
        config, orchestrator = self.config, self.orchestrator
        if self.validation is None:  # no held-out rows: rank checkpoints by training accuracy
            metrics["val_acc_infer"] = metrics[f"acc_at_{config.orchestration.max_steps_infer}"]
            return None
        stopping = config.orchestration.stopping
        with orchestrator.averaged_weights():  # what the checkpoint will hold
            if stopping.calibrate and stopping.early_stopping:  # val_acc_infer uses it
                rows = self.calibration if self.calibration is not None else self.validation
                _calibrate(orchestrator, rows, self.job.task_type, self.tracker, step)
            report = evaluate_refiner(orchestrator, self.validation, self.job.task_type)
            field = _field_report(orchestrator, self.job, config)
            log_canvas_pictures(orchestrator, self.job.picture_rows, config, self.tracker, step)
        metrics.update(report.metrics("val_"))
        if field is not None:
            metrics.update(field.metrics("val_"))
        return report

    def final_summary(self) -> dict[str, Any]:
        """Rank 0, after the last update: the run's summary (a diverged run gets no final
        evaluation)."""
        orchestrator = self.orchestrator
        if self.diverged:
            self.tracker.set_tags({"refiner.stopped": "diverged"})
            step = orchestrator.step_count
            return {"step": step, "stats": _stats(orchestrator), "diverged": self.diverged}
        return _final_summary(orchestrator, self.validation, self.job, self.tracker, self.config)


def _calibrate(
    orchestrator: UnifiedRefinerOrchestrator,
    rows: dict[str, torch.Tensor],
    task_type: str,
    tracker: RunTracker,
    step: int,
) -> None:
    """Rank 0: choose the stopping settings on the calibration rows (step limit up to
    orchestration.max_steps_infer, the user's ceiling); inference and the checkpoint
    about to be written carry them. Logs the settings and the frontier."""
    result = calibrate_orchestrator(orchestrator, rows, task_type)
    say(f"[refiner] {result.summary()}")
    with tempfile.TemporaryDirectory(prefix="refiner-calibration-") as directory:
        log_calibration(tracker, result, step, directory)


def _final_summary(
    orchestrator: UnifiedRefinerOrchestrator,
    validation: dict[str, torch.Tensor] | None,
    job: WorkerJob,
    tracker: RunTracker,
    config: ExperimentConfig,
) -> dict[str, Any]:
    """Rank 0: the final held-out evaluation, its plots and the run's resolved config."""
    summary: dict[str, Any] = {"step": orchestrator.step_count, "stats": _stats(orchestrator)}
    with tempfile.TemporaryDirectory(prefix="refiner-final-") as directory:
        config_path = Path(directory) / CONFIG_FILE
        config.to_yaml(config_path)
        tracker.log_artifact(str(config_path))
        if validation is not None:
            with orchestrator.averaged_weights():
                report = evaluate_refiner(orchestrator, validation, job.task_type)
                field = _field_report(orchestrator, job, config)
            summary["evaluation"] = report.to_dict()
            summary["evaluation_text"] = report.summary()
            summary["stopping"] = report.stopping  # the settings used and their origin
            tracker.set_tags({"refiner.stopping.origin": report.stopping["origin"]})
            for plot in report.plots(directory):
                tracker.log_artifact(str(plot), "plots")
            final = report.metrics("val_")
            if field is not None:  # the field's numbers: exact per puzzle, ARC pass@k
                final.update(field.metrics("val_"))
                summary["field"] = field.metrics("")
                summary["evaluation_text"] += f"\nthe field's metrics: {field.summary()}"
            tracker.log_metrics(
                {f"final_{k}": v for k, v in final.items()}, orchestrator.step_count
            )
    return summary


def _field_report(
    orchestrator: UnifiedRefinerOrchestrator, job: WorkerJob, config: ExperimentConfig
) -> Any:
    """Rank 0: the field's metrics on the held-out benchmark rows (at most val_max_rows)."""
    if job.field_rows is None:
        return None
    return field_report(
        orchestrator,
        job.field_rows,
        config.training.vote_views,
        config.model.seq_len,
        job.task_type,
        seed=config.seed,
        batch_size=config.training.batch_size,
    )


def _stats(orchestrator: UnifiedRefinerOrchestrator) -> dict[str, Any]:
    stats = orchestrator.get_training_stats()
    stats.pop("config", None)
    return stats
