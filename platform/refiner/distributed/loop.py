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
from collections.abc import Callable
from typing import Any

import ray.train
import ray.train.torch
import torch

from refiner.config.experiment import ExperimentConfig, build_optimizer, build_orchestrator
from refiner.config.sections import ConfigError
from refiner.distributed.compat import quiet_train_report_logging
from refiner.distributed.data import CALIBRATION
from refiner.distributed.fault_injection import fault_hook
from refiner.distributed.placement import worker_nodes
from refiner.distributed.worker_checkpoints import restore_checkpoint
from refiner.distributed.worker_console import say
from refiner.distributed.worker_data import held_out_batch, train_batches
from refiner.distributed.worker_job import WorkerJob
from refiner.distributed.worker_reports import WorkerReports
from refiner.runs.cli import RunFailedError
from refiner.runs.failures import DeterministicError
from refiner.runs.tracker import NullTracker, RunTracker
from refiner.train.fit import fit
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

_FLUSH_ON_FAILURE_S = 10.0  # rank 0's last reports, when its training raises


class TrainingDiverged(RunFailedError):
    """Too many consecutive updates were skipped for non-finite gradients."""


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any] | None:
    job: WorkerJob = loop_config["job"]
    if ray.train.get_context().get_world_rank() != 0:
        return _train(job)
    with job.tracker.while_training():  # the machine's load, from the process that trains
        return _train(job)


def _train(job: WorkerJob) -> dict[str, Any] | None:
    quiet_train_report_logging()  # our progress line says it in one line
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    config, orchestrator, optimizer, scheduler = _build(job, rank, device)
    training = config.training
    restored = restore_checkpoint(job, orchestrator, optimizer, scheduler, training.lr)
    tracker = _tracker(job, rank, world, device, orchestrator, restored)
    batches = train_batches(job.plan, config, device, rank, orchestrator.step_count)
    validation = held_out_batch("val", device) if rank == 0 and job.has_validation else None
    # halting is calibrated on the validation rows, or on views of them (calibration_views)
    calibration = (
        held_out_batch(CALIBRATION, device)
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
            before_update=fault_hook(rank, world, job.run_dir, config.seed),  # None unless a test
        )
    except BaseException:
        # rank 0's reports go out on the tracker's own thread: send what this attempt
        # reported before Ray ends the process (a run that fails for good is not replayed)
        tracker.flush(_FLUSH_ON_FAILURE_S)
        raise
    if rank != 0:
        return None
    return _with_tracking_report(reports.final_summary(), tracker, training.tracking_retry_s)


def _build(
    job: WorkerJob, rank: int, device: torch.device
) -> tuple[ExperimentConfig, UnifiedRefinerOrchestrator, torch.optim.Optimizer, Any]:
    """The worker's config, orchestrator (DDP-wrapped), optimizer and LR schedule."""
    try:  # the config and task description fail the same way on every restart
        config = ExperimentConfig.from_dict(job.config)
        torch.set_num_threads(config.training.torch_threads)
        orchestrator = build_orchestrator(
            config,
            job.task_type,
            job.num_symbols,
            device,
            wrap_model=_ddp_wrapper(device),
            puzzles=job.puzzles,
        )
        optimizer, scheduler = build_optimizer(orchestrator, config.training)
    except (ConfigError, ValueError) as err:
        raise DeterministicError(f"worker setup (rank {rank}): {err}") from err
    return config, orchestrator, optimizer, scheduler


def _tracker(
    job: WorkerJob,
    rank: int,
    world: int,
    device: torch.device,
    orchestrator: UnifiedRefinerOrchestrator,
    restored: bool,
) -> RunTracker:
    """Rank 0's tracker (the others': a NullTracker), after rank 0 said where it starts
    and every rank tagged its node (a collective)."""
    step = orchestrator.step_count
    # Buffered through tracking outages; steps the run's history already holds (updates
    # replayed after a restart) are not logged again.
    tracker = job.tracker.for_training() if rank == 0 else NullTracker()
    if rank == 0:
        say(
            f"[refiner] rank 0/{world} on {device}: "
            f"{orchestrator.core.num_parameters():,} parameters, "
            + (f"resumed at update {step}" if restored else "starting at update 0")
        )
        if restored:
            tracker.set_tags({"refiner.resumed_from_step": str(step)})
    _record_placement(tracker)
    return tracker


def _record_placement(tracker: RunTracker) -> None:
    """Tag the run with each rank's Ray node id (every rank calls it: a collective)."""
    nodes = worker_nodes()
    tracker.set_tags({"refiner.worker_nodes": ",".join(nodes)})  # rank 0's tracker only


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
