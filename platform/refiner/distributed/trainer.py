"""The driver side of a training run: datasets, TorchTrainer, result.

``run_training`` is what ``jobs/train.py`` and each sweep trial call. It expects Ray to
be initialised and the tracker's run to be open; it logs params, runs Ray Train (the
loop in ``refiner.distributed.loop``), attaches the final checkpoint to the run and
returns what rank 0 summarised.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray.data
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from refiner.augment.budget import MIB, check_budget, tasks_per_call
from refiner.checkpoints.files import CHECKPOINT_FILE
from refiner.checkpoints.storage import check_writable, resolve_storage
from refiner.config.experiment import (
    ExperimentConfig,
    augmentation_spec,
    calibration_rows,
    fit_puzzle_table,
)
from refiner.distributed.console import train_logging_config
from refiner.distributed.data import (
    CALIBRATION,
    StreamPlan,
    TaskOrigin,
    TrainDatasetFactory,
    validation_dataset,
)
from refiner.distributed.failure_policy import FailFastTorchTrainer, deterministic_cause, reason
from refiner.distributed.loop import TrainingDiverged, train_loop_per_worker
from refiner.distributed.pbt_verdicts import TrialVerdicts
from refiner.distributed.worker_job import WorkerJob
from refiner.evaluate.canvas_pictures import picture_rows
from refiner.evaluate.predictors import field_kind
from refiner.infer.serving import serving_profile
from refiner.runs.failures import DeterministicError
from refiner.runs.provenance import describe_task_dataset
from refiner.runs.tracker import LOST_TAG, NullTracker, RunTracker, lost_summary
from refiner.tasks.schema import describe_tasks, split_validation

# A Ray Data block (one augmentation call) holds rows for at least this many updates: with
# one-row tasks (no augmentation) blocks of 32 rows kept 2 CPU workers waiting on data 79%
# of the time (12 samples/s instead of about 90).
BLOCK_BATCHES = 8


@dataclass
class TrainingOutcome:
    run_name: str
    run_dir: str
    checkpoint: str | None  # path or URI of the latest checkpoint directory
    metrics: dict[str, Any]  # the metrics reported with that checkpoint
    summary: dict[str, Any]  # rank 0's final evaluation and training stats
    elapsed_s: float
    model_uri: str | None = None  # the best checkpoint as an MLflow model (models:/...)
    model_checkpoint: str | None = None  # the checkpoint directory that model came from
    model_metrics: dict[str, Any] = field(default_factory=dict)  # reported with that one
    # (update, model URI) of every kept checkpoint's logged model, oldest first
    logged_models: list[tuple[int, str]] = field(default_factory=list)


def run_training(
    config: ExperimentConfig,
    tasks: pa.Table,
    run_name: str,
    storage: str | None = None,
    tracker: RunTracker | None = None,
    *,
    callbacks: list[Any] | None = None,
    verdicts: TrialVerdicts | None = None,
) -> TrainingOutcome:
    """Train one run; ``callbacks`` go to Ray Train's RunConfig (a sweep passes Tune's
    ``TuneReportCallback`` so that every report reaches the trial's scheduler); a PBT
    trial's run waits at each checkpoint for Tune's ``verdicts``."""
    started = time.perf_counter()
    tracker = tracker or NullTracker()
    storage = resolve_storage(storage)
    check_writable(storage)
    run_dir = f"{storage}/{run_name}"
    training = config.training

    train_tasks, held_out = split_validation(tasks, config.task.val_split)
    if train_tasks.num_rows == 0:
        raise ValueError(f"{config.task.source}: no rows with split 'train' to train on")
    held_out = held_out.slice(0, config.task.val_max_rows)
    task_type, num_symbols = describe_tasks(tasks)
    puzzles = fit_puzzle_table(config, train_tasks)  # sizes model.puzzle_identities
    spec = augmentation_spec(config)
    check_budget(config)  # a sweep trial's sampled count: refused like the job's
    global_batch = training.batch_size * max(1, training.num_workers)
    plan = StreamPlan(
        num_tasks=train_tasks.num_rows,
        rows_per_task=spec.count,
        tasks_per_block=tasks_per_call(
            spec.count,
            config.model.seq_len,
            training.tasks_per_augment_batch,
            training.augment_block_mb * MIB,
            min_rows=BLOCK_BATCHES * global_batch,
        ),
        global_batch=global_batch,
    )
    # Progress bars redraw in place on a terminal; in a log file they are pages of noise.
    progress_bars = sys.stdout.isatty()
    ray.data.DataContext.get_current().enable_progress_bars = progress_bars
    datasets: dict[str, Any] = {
        "train": TrainDatasetFactory(
            train_tasks,
            spec,
            config.seed,
            config.model.seq_len,
            plan,
            training.steps,
            run_dir,
            progress_bars=progress_bars,
            puzzles=puzzles,
            origin=TaskOrigin(config.task.source, _train_rows(tasks)),
        )
    }
    if held_out.num_rows:
        datasets["val"] = validation_dataset(held_out, config.model.seq_len, puzzles)
        if config.orchestration.stopping.calibration_views > 1:  # views of the val rows
            datasets[CALIBRATION] = validation_dataset(
                calibration_rows(config, held_out), config.model.seq_len, puzzles
            )

    tracker.log_params(config.to_dict())
    tracker.log_dataset(describe_task_dataset(config.task.source, tasks, _source_options(config)))
    tracker.set_tags(
        {
            "refiner.task": config.task.source,
            "refiner.task_type": task_type,
            "refiner.train_tasks": str(train_tasks.num_rows),
            "refiner.val_rows": str(held_out.num_rows),
            "refiner.num_workers": str(training.num_workers),
            "refiner.run_dir": run_dir,
        }
    )
    job = WorkerJob(
        config=config.to_dict(),
        plan=plan,
        task_type=task_type,
        num_symbols=num_symbols,
        run_dir=run_dir,
        tracker=tracker,
        has_validation=held_out.num_rows > 0,
        local_mode=training.num_workers == 0,
        field_rows=held_out if field_kind(held_out) else None,
        puzzles=puzzles,
        picture_rows=picture_rows(held_out),  # drawn at every validation checkpoint
        verdicts=verdicts,
    )
    trainer = FailFastTorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=training.num_workers,
            use_gpu=training.use_gpu,
            resources_per_worker=_worker_resources(training),
        ),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            callbacks=callbacks,
            logging_config=train_logging_config(),  # Train's INFO lines: log files only
            failure_config=FailureConfig(max_failures=training.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=training.num_to_keep,
                checkpoint_score_attribute=training.checkpoint_score,
                checkpoint_score_order="max",
            ),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        cause = deterministic_cause(err)
        if cause is None:
            raise
        why = reason(cause)  # not retried (FailFastPolicy): the same input fails again
        tracker.set_tags(
            {"refiner.stopped": "deterministic_failure", "refiner.failure": why[:5000]}
        )
        raise DeterministicError(why) from None
    checkpoint = result.checkpoint
    lost = lost_summary((result.return_value or {}).get("tracking", {}))
    if lost:  # what rank 0 could not record during a tracking outage, on the run itself
        tracker.set_tags({LOST_TAG: lost[:5000]})
    if checkpoint is not None:
        tracker.set_tags({"refiner.checkpoint": _uri(checkpoint)})
        with checkpoint.as_directory() as directory:
            tracker.log_artifact(os.path.join(directory, CHECKPOINT_FILE), "checkpoint")
    if (result.return_value or {}).get("diverged"):  # training.max_skipped_updates
        raise TrainingDiverged(result.return_value["diverged"])
    model_uri, model_checkpoint, model_metrics = None, None, {}
    logged_models: list[tuple[int, str]] = []
    best = _best_checkpoint(result, training.checkpoint_score)
    profile = serving_profile(train_tasks, held_out)  # requests checked, answers cut
    for kept, kept_metrics in _kept_checkpoints(result):  # a logged model per checkpoint
        is_best = best is not None and kept.path == best[0].path
        with kept.as_directory() as directory:
            # No metrics passed: those rank 0 logged at that step are linked to the model.
            uri = tracker.log_model(
                os.path.join(directory, CHECKPOINT_FILE),
                int(kept_metrics.get("step", 0) or 0),
                {},
                profile,
                register=is_best,  # the registry gets the best, as before
            )
        if uri:
            logged_models.append((int(kept_metrics.get("step", 0) or 0), uri))
        if is_best:
            model_uri, model_checkpoint, model_metrics = uri, _uri(kept), kept_metrics
    return TrainingOutcome(
        run_name=run_name,
        run_dir=run_dir,
        checkpoint=_uri(checkpoint) if checkpoint is not None else None,
        metrics=dict(result.metrics or {}),
        summary=dict(result.return_value or {}),
        elapsed_s=time.perf_counter() - started,
        model_uri=model_uri,
        model_checkpoint=model_checkpoint,
        model_metrics=model_metrics,
        logged_models=logged_models,
    )


def _kept_checkpoints(result: Any) -> list[tuple[Any, dict[str, Any]]]:
    """Every checkpoint Ray Train kept (training.num_to_keep), oldest first, with its
    metrics; the latest alone when none was scored."""
    kept = [(c, dict(m or {})) for c, m in (result.best_checkpoints or [])]
    if not kept and result.checkpoint is not None:
        kept = [(result.checkpoint, dict(result.metrics or {}))]
    return sorted(kept, key=lambda cm: int(cm[1].get("step", 0) or 0))


def _best_checkpoint(result: Any, score: str) -> tuple[Any, dict[str, Any]] | None:
    """The checkpoint Ray Train kept as best by ``training.checkpoint_score`` (max), with
    its metrics; the latest one when no checkpoint carries the score."""
    kept = [(c, dict(m or {})) for c, m in (result.best_checkpoints or [])]
    scored = [(c, m) for c, m in kept if isinstance(m.get(score), int | float)]
    if scored:
        return max(scored, key=lambda cm: cm[1][score])
    if result.checkpoint is not None:
        return result.checkpoint, dict(result.metrics or {})
    return None


def _source_options(config: ExperimentConfig) -> dict[str, Any]:
    task = config.task
    return {"count": task.count, "size": task.size, "seed": config.seed, **task.options}


def _train_rows(tasks: pa.Table) -> np.ndarray:
    """Each training task's row in the task table (error messages name the file row)."""
    return np.flatnonzero(tasks.column("split").to_numpy(zero_copy_only=False) == "train")


def _worker_resources(training: Any) -> dict[str, float]:
    resources = {**training.worker_resources, "CPU": training.cpus_per_worker}
    if training.use_gpu:
        resources["GPU"] = 1
    return resources


def _uri(checkpoint: ray.train.Checkpoint) -> str:
    if checkpoint.filesystem.type_name == "local":
        return checkpoint.path
    return f"{checkpoint.filesystem.type_name}://{checkpoint.path}"
