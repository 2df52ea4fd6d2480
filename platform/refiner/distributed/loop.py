"""The per-worker training loop that Ray Train runs on every worker.

Each worker builds the orchestrator (its model wrapped in DDP when there are several
workers), restores the latest checkpoint if Ray Train has one, fast-forwards its data
shard to where that checkpoint left off, and runs the package's training loop
(``refiner.train.fit.fit``: one ``train_step`` per batch) on it. What is Ray's stays
here, in the loop's hook (``WorkerReports``): every ``report_every`` updates all workers
report (a barrier); at checkpoints and at data-epoch ends rank 0 also validates and
attaches a full orchestrator checkpoint.
Rank 0 is the only writer to the tracker (one MLflow run per training run).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray.train
import ray.train.torch
import torch

from refiner.checkpoints.files import CHECKPOINT_FILE, CONFIG_FILE, load_checkpoint, save_checkpoint
from refiner.checkpoints.storage import (
    StorageUnreachable,
    checkpoint_step,
    list_checkpoints,
    persist_checkpoint,
    upload_checkpoint,
    write_checkpoint_meta,
)
from refiner.config.experiment import ExperimentConfig, build_optimizer, build_orchestrator
from refiner.config.sections import ConfigError
from refiner.distributed.compat import checkpoint_destination, quiet_train_report_logging
from refiner.distributed.data import CALIBRATION, StreamPlan
from refiner.distributed.placement import worker_nodes
from refiner.evaluate.canvas_pictures import log_canvas_pictures
from refiner.evaluate.evaluation import EvaluationReport, evaluate_refiner
from refiner.evaluate.predictors import field_report
from refiner.infer.calibration import calibrate_orchestrator
from refiner.infer.calibration_log import log_calibration
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex
from refiner.runs.cli import RunFailedError
from refiner.runs.failures import DeterministicError
from refiner.runs.tracker import NullTracker, RunTracker
from refiner.train.fit import Update, fit
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


class TrainingDiverged(RunFailedError):
    """Too many consecutive updates were skipped for non-finite gradients."""


@dataclass
class WorkerJob:
    """Everything a worker needs, shipped in ``train_loop_config["job"]``."""

    config: dict[str, Any]  # ExperimentConfig.to_dict()
    plan: StreamPlan
    task_type: str
    num_symbols: int | None
    run_dir: str  # where Ray Train keeps this run's checkpoints
    tracker: RunTracker = field(default_factory=NullTracker)
    has_validation: bool = True
    local_mode: bool = False  # num_workers=0: Ray keeps no checkpoints, we persist them
    field_rows: pa.Table | None = None  # held-out benchmark rows (sudoku/maze/ARC), see predictors
    puzzles: PuzzleIndex | None = None  # puzzle identities (model.puzzle_embedding)
    picture_rows: pa.Table | None = None  # held-out rows drawn at checkpoints (canvas_pictures)


@dataclass
class ReportWindow:
    """Training statistics accumulated between two reports (on one worker)."""

    updates: int = 0
    rows: int = 0
    wait_s: float = 0.0
    compute_s: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    acc_at: list[float] = field(default_factory=list)
    clipped: int = 0
    skipped: int = 0

    def add(self, update: Update) -> None:
        m = update.metrics
        self.updates += 1
        self.rows += update.rows
        self.wait_s += update.wait_s
        self.compute_s += update.compute_s
        averaged = {
            "loss": m.loss,
            "loss_token": m.loss_token,
            "loss_halting": m.loss_halting,
            "loss_quality": m.loss_quality,
            "grad_norm": m.grad_norm,
        }
        for key, value in averaged.items():
            if value is not None:
                self.sums[key] = self.sums.get(key, 0.0) + value
        if not self.acc_at:
            self.acc_at = [0.0] * len(m.acc_at)
        self.acc_at = [a + b for a, b in zip(self.acc_at, m.acc_at, strict=True)]
        self.clipped += int(m.clipped)
        self.skipped += int(m.skipped)

    def metrics(self, world_size: int) -> dict[str, float]:
        """The window's means, as the flat mapping the tracker and Ray Train take."""
        n = max(1, self.updates)
        out = {key: value / n for key, value in self.sums.items()}
        out.update({f"acc_at_{t}": a / n for t, a in enumerate(self.acc_at, start=1)})
        elapsed = self.wait_s + self.compute_s
        out["samples_per_s"] = self.rows * world_size / elapsed if elapsed else 0.0
        out["data_wait_frac"] = self.wait_s / elapsed if elapsed else 0.0
        out["clipped_frac"] = self.clipped / n
        out["skipped_updates"] = float(self.skipped)
        return out


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    job: WorkerJob = loop_config["job"]
    if ray.train.get_context().get_world_rank() != 0:
        return _train(job)
    with job.tracker.while_training():  # the machine's load, from the process that trains
        return _train(job)


def _record_placement(tracker: RunTracker) -> None:
    """Tag the run with each rank's Ray node id (every rank calls it: a collective)."""
    nodes = worker_nodes()
    tracker.set_tags({"refiner.worker_nodes": ",".join(nodes)})  # rank 0's tracker only


def _train(job: WorkerJob) -> dict[str, Any] | None:
    quiet_train_report_logging()  # our progress line says it in one line
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    try:  # the config and task description fail the same way on every restart
        config = ExperimentConfig.from_dict(job.config)
        training = config.training
        torch.set_num_threads(training.torch_threads)
        orchestrator = build_orchestrator(
            config,
            job.task_type,
            job.num_symbols,
            device,
            wrap_model=_ddp_wrapper(device),
            puzzles=job.puzzles,
        )
        optimizer, scheduler = build_optimizer(orchestrator, training)
    except (ConfigError, ValueError) as err:
        raise DeterministicError(f"worker setup (rank {rank}): {err}") from err
    restored = _checkpoint_to_restore(job)
    if restored is not None:
        with restored.as_directory() as directory:
            load_checkpoint(Path(directory) / CHECKPOINT_FILE, orchestrator, optimizer, scheduler)
        _follow_config_lr(optimizer, scheduler, training.lr)
    step = orchestrator.step_count
    # Buffered through tracking outages; steps the run's history already holds (updates
    # replayed after a restart) are not logged again.
    tracker = job.tracker.for_training() if rank == 0 else NullTracker()
    if rank == 0:
        _say(
            f"[refiner] rank 0/{world} on {device}: "
            f"{orchestrator.core.num_parameters():,} parameters, "
            + (f"resumed at update {step}" if restored else "starting at update 0")
        )
        if restored is not None:
            tracker.set_tags({"refiner.resumed_from_step": str(step)})
    _record_placement(tracker)

    batches = _train_batches(job, config, device, rank, step)
    validation = _held_out_batch("val", device) if rank == 0 and job.has_validation else None
    # halting is calibrated on the validation rows, or on views of them (calibration_views)
    calibration = (
        _held_out_batch(CALIBRATION, device)
        if validation is not None and config.orchestration.stopping.calibration_views > 1
        else validation
    )
    reports = WorkerReports(
        job,
        config,
        orchestrator,
        optimizer,
        scheduler,
        tracker,
        rank,
        world,
        validation,
        calibration,
    )
    try:
        fit(
            orchestrator,
            optimizer,
            scheduler,
            batches,
            steps=training.steps,
            task_type=job.task_type,
            on_update=reports.after_update,
            before_update=_fault_hook(rank, world, job.run_dir, config.seed),
        )
    except BaseException:
        # rank 0's reports go out on the tracker's own thread: send what this attempt
        # reported before Ray ends the process (a run that fails for good is not replayed)
        tracker.flush(_FLUSH_ON_FAILURE_S)
        raise
    step = orchestrator.step_count
    if rank != 0:
        return None
    if reports.diverged:  # no final evaluation or checkpoint of a diverged model
        tracker.set_tags({"refiner.stopped": "diverged"})
        summary = {"step": step, "stats": _stats(orchestrator), "diverged": reports.diverged}
    else:
        summary = _final_summary(orchestrator, validation, job, tracker, config)
    return _with_tracking_report(summary, tracker, training.tracking_retry_s)


def _train_batches(
    job: WorkerJob, config: ExperimentConfig, device: torch.device, rank: int, step: int
) -> Iterator[dict[str, torch.Tensor]]:
    """This worker's shard of the training stream, from where the restored update left off."""
    training = config.training
    batches = iter(
        ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=training.batch_size,
            dtypes=torch.long,
            device=device,
            drop_last=True,
            local_shuffle_buffer_size=training.shuffle_buffer_rows or None,
            local_shuffle_seed=config.seed * 1009 + rank if training.shuffle_buffer_rows else None,
            **_device_feed(device),
        )
    )
    # The stream starts at the checkpoint's data epoch: skip what was already trained on.
    for _ in range(job.plan.rows_to_skip(step) // job.plan.global_batch):
        next(batches)
    keys = ("input", "target", BATCH_KEY)
    return ({key: batch[key] for key in keys if key in batch} for batch in batches)


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
            _print_progress(metrics, training.steps, report)
            self.tracker.log_metrics(metrics, step)
        _report(
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


def _with_tracking_report(
    summary: dict[str, Any], tracker: RunTracker, retry_s: float
) -> dict[str, Any]:
    """Rank 0, at the end: what a tracking outage left buffered is sent (retried for
    ``training.tracking_retry_s``); what never got through is named in the summary."""
    report = tracker.flush(retry_s)
    if report:
        summary["tracking"] = report
    return summary


def _ddp_wrapper(device: torch.device) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """Ray Train's `prepare_model` (DDP when there are several workers), with GPU settings
    that fit the unroll: every parameter is used at every step of every update, so the
    graph is static (`static_graph`: no per-update search for unused parameters, buckets
    fixed after the first update) and gradients can live in the all-reduce buckets
    (`gradient_as_bucket_view`: no copy, less memory). The block weights are shared by
    every step, so their gradients are complete only at the end of backward; the default
    25 MB buckets are kept. CPU (gloo) keeps DDP's defaults."""
    if device.type != "cuda":
        return ray.train.torch.prepare_model
    return functools.partial(
        ray.train.torch.prepare_model,
        parallel_strategy_kwargs={"static_graph": True, "gradient_as_bucket_view": True},
    )


def _device_feed(device: torch.device) -> dict[str, Any]:
    """iter_torch_batches options: on GPU, pinned host batches (the copy to the device
    can overlap compute) and two batches prefetched; CPU keeps the defaults."""
    if device.type != "cuda":
        return {}
    return {"pin_memory": True, "prefetch_batches": 2}


def _held_out_batch(name: str, device: torch.device) -> dict[str, torch.Tensor] | None:
    """All rows of an unsplit dataset ("val", CALIBRATION) as one batch; None if empty."""
    rows = list(
        ray.train.get_dataset_shard(name).iter_torch_batches(
            batch_size=None, dtypes=torch.long, device=device
        )
    )
    if not rows:
        return None
    return {
        key: torch.cat([r[key] for r in rows])
        for key in ("input", "target", BATCH_KEY)
        if key in rows[0]
    }


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
    _say(f"[refiner] {result.summary()}")
    with tempfile.TemporaryDirectory(prefix="refiner-calibration-") as directory:
        log_calibration(tracker, result, step, directory)


def _report(
    metrics: dict[str, Any],
    orchestrator: UnifiedRefinerOrchestrator,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: ExperimentConfig,
    rank: int,
    with_checkpoint: bool,
    job: WorkerJob,
) -> None:
    """Every rank reports (Ray Train's barrier); rank 0 attaches the checkpoint."""
    if not (with_checkpoint and rank == 0):
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="refiner-ckpt-") as directory:
        step = int(metrics["step"])
        save_checkpoint(
            Path(directory) / CHECKPOINT_FILE,
            orchestrator,
            optimizer,
            scheduler,
            extra={"step": step, "epoch": int(metrics["epoch"]), "experiment": config.to_dict()},
        )
        config.to_yaml(Path(directory) / CONFIG_FILE)
        meta = {"step": step, "epoch": int(metrics["epoch"]), "metrics": _finite(metrics)}
        write_checkpoint_meta(directory, meta)  # last: it marks the folder complete
        retry_s = config.training.storage_retry_s
        if job.local_mode:
            kept = persist_checkpoint(
                directory, job.run_dir, step, config.training.num_to_keep, retry_s
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint(kept))
        else:
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(directory),
                checkpoint_upload_fn=functools.partial(_upload_with_retries, retry_s=retry_s),
            )


def _upload_with_retries(
    checkpoint: ray.train.Checkpoint, checkpoint_dir_name: str, retry_s: float
) -> ray.train.Checkpoint:
    """Ray Train's upload of rank 0's checkpoint, done by ``upload_checkpoint``: meta.json
    last (an interrupted upload is never taken for a checkpoint) and failed writes retried
    with backoff for ``training.storage_retry_s``, then one clear error."""
    fs, destination = checkpoint_destination(checkpoint_dir_name)
    try:
        upload_checkpoint(checkpoint.path, fs, destination, retry_s)
    except StorageUnreachable as err:
        # Restarting the worker group would only retry the same store: end the run here.
        raise DeterministicError(str(err)) from err
    return ray.train.Checkpoint(destination, filesystem=fs)


def _follow_config_lr(optimizer: torch.optim.Optimizer, scheduler: Any, lr: float) -> None:
    """Keep the config's learning rate over the one restored with the optimizer.

    A resumed run has the same one (nothing changes); a PBT trial that exploited a peer
    restores the peer's optimizer, but its own config may hold a mutated rate.
    """
    if all(base == lr for base in scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group["initial_lr"] = lr
        group["lr"] = lr * factor(scheduler.last_epoch)


def _checkpoint_to_restore(job: WorkerJob) -> ray.train.Checkpoint | None:
    """Ray Train's latest checkpoint, else the newest complete one in the run's storage.

    Storage is the fallback in local mode (Ray keeps no checkpoints there) and after a
    worker was killed before the controller collected its last reports: Ray Train then
    restarts without the checkpoints already on storage, while the data stream (see
    ``TrainDatasetFactory``) starts from the newest of them.
    """
    stored = list_checkpoints(job.run_dir)
    latest = None if job.local_mode else ray.train.get_checkpoint()
    # Ray's may also lag behind storage: restore the newer, so that the model and the
    # data stream (which starts at the newest stored checkpoint) agree.
    if latest is not None and (
        not stored or checkpoint_step(latest.filesystem, latest.path) >= stored[-1][0]
    ):
        return latest
    return ray.train.Checkpoint(stored[-1][1]) if stored else None


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


def _print_progress(metrics: dict[str, Any], total: int, report: EvaluationReport | None) -> None:
    line = (
        f"[refiner] update {metrics['step']:>6}/{total}  epoch {metrics['epoch']}  "
        f"loss {metrics.get('loss', float('nan')):.4f}  "
        f"acc@1 {metrics.get('acc_at_1', 0):.3f}  "
        f"acc@T {metrics.get(_last_acc_key(metrics), 0):.3f}  "
        f"grad {metrics.get('grad_norm', float('nan')):.2f}  "
        f"{metrics['samples_per_s']:.0f} samples/s (all workers)  "
        f"data wait {metrics['data_wait_frac']:.1%}"
    )
    if report is not None:
        line += f"  | val acc@infer {report.acc_infer:.3f} in {report.mean_steps:.2f} steps"
    _say(line)


def _say(line: str) -> None:
    # Not print(): Ray Train workers patch it to log *and* echo, so every line came twice.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _last_acc_key(metrics: dict[str, Any]) -> str:
    steps = [int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("acc_at_")]
    return f"acc_at_{max(steps)}" if steps else "acc_at_1"


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and v == v and abs(v) != float("inf")
    }


FAULT_ENV = "REFINER_TEST_FAULT_AT_STEP"
_FLUSH_ON_FAILURE_S = 10.0


def _fault_hook(rank: int, world: int, run_dir: str, seed: int) -> Callable[[int], None] | None:
    """Test hook, not configuration: ``REFINER_TEST_FAULT_AT_STEP=N`` (or ``N,seed=S``, only
    runs whose config seed is S) in the environment the workers start with makes the last
    rank raise once per run at update N. Tests set it; a real run never does, and then
    there is no hook at all (None: the loop calls nothing).

    A marker file keeps the restarted worker group from failing again at the same step.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    at, _, only_seed = spec.partition(",seed=")
    at_step = int(at)
    if rank != world - 1 or (only_seed and int(only_seed) != seed):
        return None
    run_key = hashlib.sha1(run_dir.encode()).hexdigest()[:12]
    marker = Path(tempfile.gettempdir()) / f"refiner-fault-{run_key}-{at_step}"

    def inject(step: int) -> None:
        if step != at_step or marker.exists():
            return
        marker.write_text(str(os.getpid()))
        raise RuntimeError(f"injected fault at update {at_step} ({FAULT_ENV})")

    return inject
