"""A training worker's checkpoints: the one it restores at start (Ray Train's latest, or
the newest complete one in the run's storage) and the one rank 0 attaches to a report,
uploaded meta.json last with retries."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import ray.train
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
from refiner.config.experiment import ExperimentConfig
from refiner.distributed.compat import checkpoint_destination
from refiner.distributed.worker_job import WorkerJob
from refiner.runs.failures import DeterministicError
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def restore_checkpoint(
    job: WorkerJob,
    orchestrator: UnifiedRefinerOrchestrator,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    lr: float,
) -> bool:
    """Load the checkpoint to resume from (`_checkpoint_to_restore`), if any, into the
    orchestrator, optimizer and scheduler, keeping the config's learning rate `lr`.
    Returns whether one was restored."""
    restored = _checkpoint_to_restore(job)
    if restored is None:
        return False
    with restored.as_directory() as directory:
        load_checkpoint(Path(directory) / CHECKPOINT_FILE, orchestrator, optimizer, scheduler)
    follow_config_lr(optimizer, scheduler, lr)
    return True


def report_to_ray(
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


def follow_config_lr(optimizer: torch.optim.Optimizer, scheduler: Any, lr: float) -> None:
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


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and v == v and abs(v) != float("inf")
    }
