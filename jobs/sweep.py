"""Tune a refiner: Ray Tune over a search space, one TorchTrainer per trial, ASHA.

    python jobs/sweep.py                                   # truncation space, parity, CPU
    python jobs/sweep.py --space tune_spaces/step_weights.yaml --num-samples 8 --steps 200
    python jobs/sweep.py --space tune_spaces/optuna.yaml   # Optuna TPE proposes the trials
    python jobs/sweep.py --space tune_spaces/pareto.yaml --register-name refiner-front
    python jobs/sweep.py --space tune_spaces/pbt.yaml      # population-based training (or pb2.yaml)
    python jobs/sweep.py --resume truncation-20250101-120000   # finish errored/unfinished trials
    ray job submit --working-dir . --runtime-env-json '{"py_modules": ["platform/refiner"]}' \\
        -- python jobs/sweep.py --tracking-uri http://HEAD:5000 --storage s3://bucket/sweeps

Reads top to bottom: load and check the space and the base run config (a bad space or
config stops here, before Ray starts and before any MLflow run exists), start or attach
to Ray, run the trials (a line per trial result), print the summary table: the best
trial's MLflow run, its exported config (for jobs/train.py --config) and its
registered model. MLflow: one parent run per sweep, one child run per trial.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light imports here: `--help` answers without loading torch, Ray or MLflow.
from refiner.runs.cli import input_checks, job_main, stop_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPACE = ROOT / "tune_spaces" / "truncation.yaml"
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "sweep.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--space", default=str(DEFAULT_SPACE), help="search space YAML")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="base run config YAML")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key for every trial, e.g. --set training.lr=0.001 (repeatable)",
    )
    p.add_argument("--num-samples", type=int, help="trials to sample (x grid size)")
    p.add_argument("--task", help="a built-in source (parity, sudoku, arc, text) or a task file")
    p.add_argument("--steps", type=int, help="optimizer updates per trial (ASHA's max_t)")
    p.add_argument(
        "--metric", help="the scheduler's metric (default: the space's, val_token_acc_infer)"
    )
    p.add_argument("--mode", choices=("max", "min"), help="with --metric: maximise or minimise")
    p.add_argument("--name", help="sweep name (Tune experiment, MLflow parent run)")
    p.add_argument("--resume", metavar="NAME", help="continue an interrupted sweep")
    p.add_argument("--storage", help="Tune and checkpoint storage: a path or a URI")
    p.add_argument("--experiment", default="refiner-sweeps", help="MLflow experiment")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)")
    p.add_argument("--register-name", help="register the best checkpoint as this MLflow model")
    p.add_argument("--out", default="outputs/sweeps", help="where the best config is written")
    p.add_argument("--address", help="Ray cluster to attach to (default: RAY_ADDRESS or local)")
    p.add_argument("--dry-run", action="store_true", help="check and print the plan; start nothing")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from refiner.checkpoints.storage import check_writable
    from refiner.config.experiment import load_task_table
    from refiner.runs.plan import describe_sweep_plan
    from refiner.runs.tracking_store import check_tracking_store, resolve_tracking_uri
    from refiner.sweep.outcome import format_summary
    from refiner.sweep.plan import SweepPlan, describe_start, local_cluster_cpus, plan_sweep

    with input_checks():  # bad input stops here: "error: ...", exit status 2
        if args.resume:
            plan = SweepPlan.load(args.storage, args.resume)
        else:
            plan = plan_sweep(
                args.space,
                args.config,
                args.set,
                tracking_uri=resolve_tracking_uri(args.tracking_uri),
                experiment=args.experiment,
                task=args.task,
                num_samples=args.num_samples,
                steps=args.steps,
                metric=args.metric,
                mode=args.mode,
                name=args.name,
                storage=args.storage,
                register_name=args.register_name,
                out_dir=args.out,
            )
        config, space = plan.config(), plan.search_space()
        tasks = load_task_table(config.task, config.seed)
        check_tracking_store(plan.tracking_uri)
        check_writable(plan.storage)
        if args.dry_run:  # no Ray, no MLflow: prints what would run
            print(describe_sweep_plan(plan, tasks, address=args.address, resume=bool(args.resume)))
            return 0
    from refiner.distributed.cluster import check_storage_shared, init_ray, session_logs
    from refiner.distributed.sweep_driver import run_sweep
    from refiner.tracking import sweeps as sweep_tracking
    from refiner.tracking.console import quiet_mlflow_console

    print(f"[sweep] {init_ray(args.address, local_cluster_cpus(space.settings, config.training))}")
    logs = quiet_mlflow_console(session_logs())  # MLflow's INFO lines, bars: beside Ray's
    print(f"[sweep] Ray's and MLflow's other lines: {logs.parent}", flush=True)
    with input_checks():  # several nodes: a local --storage path is not shared by them
        check_storage_shared(plan.storage)
    stop_on_sigterm()  # `ray job stop`: the MLflow parent run ends KILLED (after init_ray)
    print(f"[sweep] {describe_start(plan, resume=bool(args.resume))}", flush=True)
    outcome = run_sweep(plan, tasks, resume=bool(args.resume), tracking=sweep_tracking)
    print(format_summary(outcome, list(space.params), plan), flush=True)
    return 1 if outcome.errored else 0


if __name__ == "__main__":
    sys.exit(main())
