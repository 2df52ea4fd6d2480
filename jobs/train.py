"""Train a refiner on Ray: Ray Data augmentation -> Ray Train DDP -> one MLflow run.

    python jobs/train.py                                   # parity, 2 CPU workers, local Ray
    python jobs/train.py --task sudoku --steps 2000 --set model.d_model=128
    python jobs/train.py --task sudoku --dry-run           # config, tasks, resources; no start
    python jobs/train.py --config jobs/configs/sudoku_extreme_gpu.yaml --gpu --num-workers 4
    ray job submit --working-dir . -- python jobs/train.py --tracking-uri http://HEAD:5000

Reads top to bottom: load and validate the config and tasks (bad input stops here,
before any compute and before an MLflow run exists), start or attach to Ray, open the
MLflow run, train, print a summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light imports here: `--help` answers without loading torch, Ray or MLflow.
from refiner.runs.cli import input_checks, job_main, set_overrides, stop_on_sigterm

CONFIGS = Path(__file__).parent / "configs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        help="run config YAML (default: the --task source's recipe, configs/<source>.yaml,"
        " where there is one; a task file or text: configs/general.yaml; no --task: parity)",
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
    p.add_argument(
        "--allow-config-change", action="store_true", help="resume --run-name with a new config"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check all, print the plan; start nothing"
    )
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from refiner.checkpoints.storage import check_writable, resolve_storage
    from refiner.config.recipes import choose_recipe
    from refiner.runs.plan import TrainingPlan, default_run_name, training_cluster_cpus
    from refiner.runs.tracking_store import check_tracking_store, resolve_tracking_uri

    shorthands = {  # the dedicated flags: --set overrides, applied after --set
        "training.num_workers": args.num_workers,
        "training.use_gpu": args.gpu,
        "training.steps": args.steps,
        "seed": args.seed,
    }
    with input_checks():  # bad input stops here: "error: ...", exit status 2
        recipe = choose_recipe(args.config, args.task, CONFIGS)
        config, tasks = recipe.prepare(set_overrides(args.set, shorthands))
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
        check_tracking_store(tracking_uri)
        storage = resolve_storage(args.storage)
        check_writable(storage)
        run_name = args.run_name or default_run_name(config)
        why = recipe.explain(config, tasks)  # the run's first line: which recipe and why
        plan = TrainingPlan(
            config, tasks, run_name, args.address, tracking_uri, args.experiment, storage, why
        )
        if args.dry_run:  # no Ray, no MLflow: prints what would run
            print(plan.describe(), flush=True)
            return 0
        from refiner.tracking import tracked_run
        from refiner.tracking.resume import check_resume

        tags = check_resume(  # a resumed run's changed config: refused unless allowed
            tracking_uri, args.experiment, run_name, config.to_dict(), args.allow_config_change
        )
    from refiner.distributed.cluster import check_storage_shared, init_ray, session_logs
    from refiner.distributed.trainer import run_training
    from refiner.tracking.console import quiet_mlflow_console

    print(f"[refiner] {plan.recipe}", flush=True)
    print(f"[refiner] {init_ray(args.address, training_cluster_cpus(config.training))}")
    logs = quiet_mlflow_console(session_logs())  # MLflow's INFO lines, bars: beside Ray's
    print(f"[refiner] Ray's and MLflow's other lines: {logs.parent}", flush=True)
    with input_checks():  # several nodes: a local --storage path is not shared by them
        check_storage_shared(storage)
    stop_on_sigterm()  # `ray job stop`: the MLflow run ends KILLED (after init_ray)
    print(f"[refiner] {plan.start_line()}", flush=True)
    # Diverged training (RunFailedError) ends the run FAILED, exit 1; earlier checkpoints stay.
    with tracked_run(tracking_uri, args.experiment, run_name, tags) as tracker:
        tracker.register_name = args.register_name
        outcome = run_training(config, tasks, run_name, storage, tracker)
    print(plan.summary(outcome, tracker.run_id), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
