"""Evaluate a saved checkpoint on a task table: rebuild the orchestrator, run infer-few.

A checkpoint is a ``checkpoint.pt`` file, a (Ray) checkpoint folder holding one, or, via
``refiner.tracking.evaluation_log.fetch_checkpoint``, an MLflow ``models:/`` or ``runs:/`` URI.
Pure PyTorch: no Ray, no MLflow (``jobs/evaluate.py`` on a local file loads neither).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch

from refiner.checkpoints.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    stored_configs,
)
from refiner.config.experiment import (
    ExperimentConfig,
    TaskConfig,
    build_optimizer,
    build_orchestrator,
    calibration_rows,
    fit_puzzle_table,
    load_task_table,
    prepare_experiment,
)
from refiner.config.sections import check_step_budget
from refiner.data.batches import batch_from_table
from refiner.evaluate.canvas_pictures import (
    PICTURE_ROWS,
    describe_step_counts,
    draw_canvas_trace,
    trace_canvases,
)
from refiner.evaluate.evaluation import EvaluationReport, evaluate_refiner
from refiner.infer.calibration import CalibrationResult, calibrate_orchestrator, describe_stopping
from refiner.infer.halting import describe_stop_counts
from refiner.infer.prediction import check_readable
from refiner.tasks.schema import describe_tasks, split_validation
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

MLFLOW_SCHEMES = ("models:/", "runs:/")


def local_checkpoint_file(path: str | Path) -> Path:
    """A checkpoint.pt file, or the checkpoint.pt inside a checkpoint folder."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    return path


def evaluate_checkpoint(
    path: str | Path,
    tasks: pa.Table,
    max_steps: int | None = None,
    split: str | None = "val",
    max_rows: int | None = None,
) -> EvaluationReport:
    """Load the checkpoint's model and evaluate it on ``tasks`` (the ``split`` rows if any).

    Inference stops the way the checkpoint says: its stored calibration if it has one,
    else its config's stopping settings (the report names which)."""
    orchestrator, batch, task_type = _load_for_evaluation(path, tasks, max_steps, split, max_rows)
    return evaluate_refiner(orchestrator, batch, task_type, max_steps_infer=max_steps)


@dataclass
class CalibratedEvaluation:
    """An evaluation before and after calibrating the checkpoint's stopping settings."""

    before: EvaluationReport  # the checkpoint's own settings (stored calibration or config)
    after: EvaluationReport
    calibration: CalibrationResult
    calibration_split: str | None
    split: str | None

    def summary(self) -> str:
        same = self.calibration_split == self.split
        lines = [
            f"calibration: {self.calibration.summary()}",
            f"  on the {self.calibration_split or 'all'} rows, measured on the "
            f"{self.split or 'all'} rows"
            + (" (the same rows: the accuracy bound holds there by construction)" if same else ""),
        ]
        for name, report in (("before", self.before), ("after", self.after)):
            lines.append(
                f"  {name}: acc {report.acc_infer:.4f} in {report.mean_steps:.2f} mean steps, "
                f"stopping {describe_stopping(report.stopping)}"
            )
        return "\n".join(lines)


def calibrate_checkpoint(
    path: str | Path,
    tasks: pa.Table,
    max_steps: int | None = None,
    split: str | None = "val",
    calibration_split: str | None = "val",
    max_rows: int | None = None,
) -> CalibratedEvaluation:
    """Evaluate on the ``split`` rows, calibrate the stopping settings on the
    ``calibration_split`` rows (step limit up to ``max_steps``, default the checkpoint's
    max_steps_infer) and evaluate again with them. The checkpoint file is not changed."""
    orchestrator, batch, task_type = _load_for_evaluation(path, tasks, max_steps, split, max_rows)
    before = evaluate_refiner(orchestrator, batch, task_type, max_steps_infer=max_steps)
    views = orchestrator.config.stopping.calibration_views
    if calibration_split == split and views == 1:
        rows = batch
    else:  # other rows, or views of them as training made (stopping.calibration_views)
        chosen = _split_rows(tasks, calibration_split, max_rows)
        experiment = read_checkpoint(local_checkpoint_file(path))["extra"].get("experiment")
        if experiment is not None:
            chosen = calibration_rows(ExperimentConfig.from_dict(experiment), chosen)
        rows = _labelled_batch(chosen, orchestrator)
    calibration = calibrate_orchestrator(orchestrator, rows, task_type, max_steps=max_steps)
    after = evaluate_refiner(orchestrator, batch, task_type, max_steps_infer=max_steps)
    return CalibratedEvaluation(before, after, calibration, calibration_split, split)


def trace_checkpoint(
    path: str | Path,
    tasks: pa.Table,
    rows: int,
    out: str | Path,
    split: str | None = "val",
    max_steps: int | None = None,
) -> str:
    """The canvas after every step on ``rows`` of the ``split`` rows (``jobs/evaluate.py
    --trace``), to the model's step limit: the per-step counts over them, and a picture
    of the first PICTURE_ROWS at ``out``, as a run draws them at its checkpoints."""
    path = local_checkpoint_file(path)
    check_step_budget(max_steps, "--max-steps")
    chosen = _split_rows(tasks, split, rows)
    task_type, num_symbols = describe_tasks(chosen)
    orchestrator = UnifiedRefinerOrchestrator.from_checkpoint(
        path, task_type=task_type, num_symbols=num_symbols
    )
    trace = trace_canvases(orchestrator, chosen, orchestrator.core.config.seq_len, max_steps)
    drawn = trace_canvases(
        orchestrator, chosen.slice(0, PICTURE_ROWS), orchestrator.core.config.seq_len, max_steps
    )
    picture = draw_canvas_trace(drawn, out, f"{drawn.source}: {path.parent.name}/{path.name}")
    return "\n".join(
        [
            f"canvas trace on {len(trace.inputs)} rows, {trace.steps} steps, no early stopping:",
            describe_step_counts(trace),
            f"picture of the first {len(drawn.inputs)}: {picture}",
        ]
    )


def _load_for_evaluation(
    path: str | Path,
    tasks: pa.Table,
    max_steps: int | None,
    split: str | None,
    max_rows: int | None,
) -> tuple[UnifiedRefinerOrchestrator, dict[str, torch.Tensor], str]:
    """The checkpoint's orchestrator and the labelled batch of the ``split`` rows (all
    rows if none match), at most ``max_rows``."""
    path = local_checkpoint_file(path)
    tasks = _split_rows(tasks, split, max_rows)
    check_step_budget(max_steps, "--max-steps")
    task_type, num_symbols = describe_tasks(tasks)
    orchestrator = UnifiedRefinerOrchestrator.from_checkpoint(
        path, task_type=task_type, num_symbols=num_symbols
    )
    return orchestrator, _labelled_batch(tasks, orchestrator), task_type


def _split_rows(tasks: pa.Table, split: str | None, max_rows: int | None) -> pa.Table:
    """The ``split`` rows (all rows if none match), at most ``max_rows``."""
    if split is not None:
        chosen = tasks.filter(pc.equal(tasks.column("split"), split))
        tasks = chosen if chosen.num_rows else tasks
    return tasks if max_rows is None else tasks.slice(0, max_rows)


def _labelled_batch(
    tasks: pa.Table, orchestrator: UnifiedRefinerOrchestrator
) -> dict[str, torch.Tensor]:
    try:
        # a puzzle-conditioned model looks each row's puzzle up by group_id
        return batch_from_table(
            tasks, orchestrator.core.config.seq_len, puzzles=orchestrator.puzzle_index
        )
    except ValueError as err:
        raise ValueError(f"tasks do not fit the checkpoint's model: {err}") from None


def steps_histogram(report: EvaluationReport) -> dict[int, int]:
    return dict(sorted(Counter(report.steps_taken).items()))


def is_mlflow_uri(checkpoint: str) -> bool:
    return checkpoint.startswith(MLFLOW_SCHEMES)


def evaluation_tasks(
    path: str | Path,
    task: str,
    count: int | None = None,
    size: int | None = None,
    seed: int = 0,
) -> pa.Table:
    """The tasks to evaluate on: ``task`` (a source or a file) with ``count``/``size``.

    Evaluating on the source the checkpoint was trained on defaults its count and size
    to the training run's and takes its options, so ``--task parity`` means the same
    parity it learned. Rows the model cannot read are refused (``check_readable``).
    """
    payload = read_checkpoint(path)
    trained_on = payload["extra"].get("experiment", {}).get("task", {})
    config = TaskConfig(source=task, count=count, size=size)
    if task == trained_on.get("source"):
        config.size = size if size is not None else trained_on.get("size")
        config.count = count if count is not None else trained_on.get("count")
        config.options = dict(trained_on.get("options") or {})  # e.g. the recipe's mazes
    tasks = load_task_table(config, seed)
    check_readable(tasks, stored_configs(payload["orchestrator"], path)[0], task)
    return tasks


def describe_evaluation(report: EvaluationReport, checkpoint: str, task: str) -> str:
    """What ``jobs/evaluate.py`` prints: accuracy, the curve, steps taken, why it stopped."""
    return "\n".join(
        [
            f"checkpoint: {checkpoint}",
            f"tasks: {task} ({report.rows} rows)",
            report.summary(),
            f"accuracy (infer-few, max {report.max_steps_infer} steps): {report.acc_infer:.4f}",
            "steps taken: " + ", ".join(f"{k}: {v}" for k, v in steps_histogram(report).items()),
            f"stopping reasons: {describe_stop_counts(report.stopping_reasons)}",
        ]
    )


@dataclass
class RestoredRun:
    """A training run as one of its checkpoints left it (see `restore_run`)."""

    config: ExperimentConfig
    train_rows: pa.Table
    held_out: pa.Table
    task_type: str
    orchestrator: UnifiedRefinerOrchestrator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def restore_run(path: str | Path, overrides: Sequence[str] = ()) -> RestoredRun:
    """The training state in a `jobs/train.py` checkpoint (a folder or its checkpoint.pt),
    on CPU, ready to train on or inspect: the config stored beside it (with ``--set``
    style ``overrides``), the run's task rows split as the run split them, and the
    orchestrator with its live weights (the EMA beside them), optimizer and schedule.

    Raises CheckpointError (a missing or corrupt file) or ConfigError (a bad override)."""
    file = local_checkpoint_file(path)
    config_file = file.parent / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{file.parent}: no {CONFIG_FILE} beside the checkpoint")
    config, tasks = prepare_experiment(config_file, overrides)
    train_rows, held_out = split_validation(tasks, config.task.val_split)
    task_type, num_symbols = describe_tasks(tasks)
    orchestrator = build_orchestrator(
        config,
        task_type,
        num_symbols,
        torch.device("cpu"),
        puzzles=fit_puzzle_table(config, train_rows),  # its puzzle_index from now on
    )
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    load_checkpoint(file, orchestrator, optimizer, scheduler)
    return RestoredRun(config, train_rows, held_out, task_type, orchestrator, optimizer, scheduler)
