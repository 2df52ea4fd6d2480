"""Train a refiner on Ray: Ray Data augmentation -> Ray Train DDP -> one MLflow run.

    python jobs/train.py                                   # parity, 2 CPU workers, local Ray
    python jobs/train.py --task sudoku --steps 2000 --set model.d_model=128
    ray job submit --working-dir . -- python jobs/train.py --tracking-uri http://HEAD:5000

Reads top to bottom: load and validate the config and tasks (bad input stops here,
before any compute and before an MLflow run exists), start or attach to Ray, open the
MLflow run, train, print a summary.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from refiner.config import ConfigError
from refiner.distributed.cluster import init_ray
from refiner.distributed.loop import TrainingDiverged
from refiner.distributed.storage import StorageError, check_writable
from refiner.distributed.trainer import resolve_storage, run_training
from refiner.experiment import prepare_experiment
from refiner.failures import DeterministicError
from refiner.tasks.validation import TaskFileError
from refiner.tracking import (
    TrackingError,
    check_tracking_store,
    resolve_tracking_uri,
    tracked_run,
)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="run config YAML")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set orchestration.max_steps_train=12 (repeatable)",
    )
    p.add_argument("--task", help="a built-in source (parity, sudoku, arc, text) or a task file")
    p.add_argument("--num-workers", type=int, help="Ray Train workers (0: in the driver)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, NCCL DDP, bf16")
    p.add_argument("--steps", type=int, help="optimizer updates")
    p.add_argument("--seed", type=int)
    p.add_argument("--storage", help="checkpoint storage: a path or a URI (s3://bucket/dir)")
    p.add_argument("--experiment", default="refiner", help="MLflow experiment")
    p.add_argument("--run-name", help="Ray Train and MLflow run name; an existing one resumes")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)")
    p.add_argument("--address", help="Ray cluster to attach to (default: RAY_ADDRESS or local)")
    return p.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> list[str]:
    """The dedicated flags are shorthands for --set overrides (applied after --set)."""
    out = list(args.set)
    if args.num_workers is not None:
        out.append(f"training.num_workers={args.num_workers}")
    if args.gpu:
        out.append("training.use_gpu=true")
    if args.steps is not None:
        out.append(f"training.steps={args.steps}")
    if args.seed is not None:
        out.append(f"seed={args.seed}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config, tasks = prepare_experiment(args.config, overrides_from(args), task=args.task)
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_store(tracking_uri)
        storage = resolve_storage(args.storage)
        check_writable(storage)
    except (ConfigError, TaskFileError, TrackingError, StorageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_name = args.run_name or f"{Path(config.task.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    training = config.training
    print(
        f"[refiner] {init_ray(args.address, training.num_workers * training.cpus_per_worker + 1)}"
    )
    # `ray job stop` sends SIGTERM: turn it into an exception so the MLflow run ends KILLED.
    # Installed after init_ray: ray.init replaces the handler with sys.exit (run FAILED).
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"[refiner] run {run_name!r}: {tasks.num_rows} tasks from {config.task.source}, "
        f"{training.steps} updates on {max(1, training.num_workers)} worker(s), "
        f"MLflow {tracking_uri} (experiment {args.experiment!r})",
        flush=True,
    )
    try:
        with tracked_run(tracking_uri, args.experiment, run_name) as tracker:
            outcome = run_training(config, tasks, run_name, storage, tracker)
    except (TrainingDiverged, DeterministicError) as err:  # the run is FAILED, not retried
        print(f"error: {err}", file=sys.stderr)
        return 1

    print("\n=== summary ===", flush=True)
    if "evaluation_text" in outcome.summary:
        print(outcome.summary["evaluation_text"])
    print(f"updates: {outcome.summary.get('step')}  wall time: {outcome.elapsed_s:.0f} s")
    print(f"checkpoint: {outcome.checkpoint}")
    print(f"MLflow run: {tracker.run_id} in experiment {args.experiment!r} at {tracking_uri}")
    print(f"  browse: mlflow ui --backend-store-uri {tracking_uri}", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
