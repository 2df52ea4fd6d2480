"""Train a refiner on Ray: Ray Data augmentation -> Ray Train DDP -> one MLflow run.

    python jobs/train.py                                   # parity, 2 CPU workers, local Ray
    python jobs/train.py --task sudoku --steps 2000 --set model.d_model=128
    python jobs/train.py --config jobs/configs/sudoku_extreme_gpu.yaml --gpu --num-workers 4
    ray job submit --working-dir . -- python jobs/train.py --tracking-uri http://HEAD:5000

Reads top to bottom: load and validate the config and tasks (bad input stops here,
before any compute and before an MLflow run exists), start or attach to Ray, open the
MLflow run, train, print a summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from refiner.cli import input_checks, job_main, set_overrides, stop_on_sigterm
from refiner.distributed.cluster import init_ray
from refiner.distributed.trainer import run_training
from refiner.experiment import choose_config, prepare_experiment
from refiner.storage import check_writable, resolve_storage
from refiner.tracking import check_tracking_store, resolve_tracking_uri, tracked_run

CONFIGS = Path(__file__).parent / "configs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        help="run config YAML (default: the --task source's recipe, configs/<source>.yaml,"
        " where there is one, else configs/default.yaml)",
    )
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
    p.add_argument(
        "--register-name", help="register the best checkpoint's MLflow model under this name"
    )
    p.add_argument("--address", help="Ray cluster to attach to (default: RAY_ADDRESS or local)")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The dedicated flags are shorthands for --set overrides (applied after --set).
    shorthands = {
        "training.num_workers": args.num_workers,
        "training.use_gpu": args.gpu,
        "training.steps": args.steps,
        "seed": args.seed,
    }
    with input_checks():  # bad input stops here: "error: ...", exit status 2
        config_path, task = choose_config(args.config, args.task, CONFIGS)
        config, tasks = prepare_experiment(
            config_path, set_overrides(args.set, shorthands), task=task
        )
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_store(tracking_uri)
        storage = resolve_storage(args.storage)
        check_writable(storage)
    run_name = args.run_name or f"{Path(config.task.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    training = config.training
    print(
        f"[refiner] {init_ray(args.address, training.num_workers * training.cpus_per_worker + 1)}"
    )
    stop_on_sigterm()  # `ray job stop`: the MLflow run ends KILLED (after init_ray)
    print(
        f"[refiner] run {run_name!r}: {tasks.num_rows} tasks from {config.task.source}, "
        f"{training.steps} updates on {max(1, training.num_workers)} worker(s), "
        f"MLflow {tracking_uri} (experiment {args.experiment!r})",
        flush=True,
    )
    # Diverged training (a RunFailedError) ends the run FAILED, exit status 1; the
    # earlier checkpoints stay.
    with tracked_run(tracking_uri, args.experiment, run_name) as tracker:
        tracker.register_name = args.register_name
        outcome = run_training(config, tasks, run_name, storage, tracker)

    print("\n=== summary ===", flush=True)
    if "evaluation_text" in outcome.summary:
        print(outcome.summary["evaluation_text"])
    print(f"updates: {outcome.summary.get('step')}  wall time: {outcome.elapsed_s:.0f} s")
    print(f"checkpoint: {outcome.checkpoint}")
    if outcome.model_uri:
        print(f"model: {outcome.model_uri}")
    print(f"MLflow run: {tracker.run_id} in experiment {args.experiment!r} at {tracking_uri}")
    print(f"  browse: mlflow ui --backend-store-uri {tracking_uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
