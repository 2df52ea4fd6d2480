"""Tune a refiner: Ray Tune over a search space, one TorchTrainer per trial, ASHA.

    python jobs/sweep.py                                   # truncation space, parity, CPU
    python jobs/sweep.py --space tune_spaces/step_weights.yaml --num-samples 8 --steps 200
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
import json
import signal
import sys
import time
from pathlib import Path

from refiner.config import ConfigError
from refiner.distributed.cluster import init_ray
from refiner.distributed.storage import StorageError, check_writable
from refiner.distributed.trainer import resolve_storage
from refiner.experiment import ExperimentConfig, load_task_table, prepare_experiment
from refiner.sweep.callbacks import describe_params
from refiner.sweep.driver import (
    DATA_CPUS,
    SweepOutcome,
    SweepPlan,
    check_trial_training,
    run_sweep,
    trial_footprint,
)
from refiner.sweep.space import load_space, validate_combinations
from refiner.tasks.validation import TaskFileError
from refiner.tracking import TrackingError, check_tracking_store, resolve_tracking_uri
from refiner.tracking import sweeps as sweep_tracking

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
    return p.parse_args(argv)


def build_plan(args: argparse.Namespace) -> tuple[SweepPlan, ExperimentConfig]:
    """Check everything a sweep reads; raises ConfigError naming file and key path."""
    space = load_space(args.space)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise ConfigError(f"--num-samples: must be >= 1, got {args.num_samples}")
        space.settings.num_samples = args.num_samples
    if args.metric:
        space.settings.scheduler.metric = args.metric
    if args.mode:
        space.settings.scheduler.mode = args.mode
    # The space's fixed values, then --set (the user's word wins), then --steps.
    overrides = [f"{k}={json.dumps(v)}" for k, v in space.fixed.items()] + list(args.set)
    if args.steps is not None:
        overrides.append(f"training.steps={args.steps}")
    config, _ = prepare_experiment(args.config, overrides, task=args.task)
    check_trial_training(config.training)
    validate_combinations(space, config.to_dict())
    name = args.name or f"{Path(args.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    plan = SweepPlan(
        name=name,
        space=space.to_dict(),
        space_origin=str(args.space),
        base=config.to_dict(),
        storage=resolve_storage(args.storage),
        tracking_uri=resolve_tracking_uri(args.tracking_uri),
        experiment=args.experiment,
        register_name=args.register_name,
        out_dir=str(Path(args.out).resolve()),
    )
    return plan, config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.resume:
            plan = SweepPlan.load(args.storage, args.resume)
            config = ExperimentConfig.from_dict(plan.base)
        else:
            plan, config = build_plan(args)
        space = plan.search_space()
        tasks = load_task_table(config.task, config.seed)
        check_tracking_store(plan.tracking_uri)
        check_writable(plan.storage)
    except (
        ConfigError,
        TaskFileError,
        TrackingError,
        StorageError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # A local cluster gets logical room for two trials at once, each with a Ray Data CPU.
    per_trial = trial_footprint(space.settings, config.training) + DATA_CPUS
    print(f"[sweep] {init_ray(args.address, 2 * per_trial)}")
    # `ray job stop` sends SIGTERM: an exception ends the MLflow parent run as KILLED.
    # Installed after init_ray, which replaces the handler with sys.exit (run FAILED).
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"[sweep] {'resuming' if args.resume else 'starting'} {plan.name!r}: space {plan.space_origin} "
        f"({', '.join(space.params)}), {space.settings.num_samples} sample(s), "
        f"{config.training.steps} updates per trial on {config.task.source}, "
        f"scheduler {space.settings.scheduler.type}; MLflow {plan.tracking_uri} "
        f"(experiment {plan.experiment!r})",
        flush=True,
    )
    outcome = run_sweep(plan, tasks, resume=bool(args.resume), tracking=sweep_tracking)
    print_summary(outcome, list(space.params), plan)
    return 1 if outcome.errored else 0


def print_summary(outcome: SweepOutcome, keys: list[str], plan: SweepPlan) -> None:
    sign = -1 if outcome.mode == "max" else 1
    rows = sorted(
        outcome.trials,
        key=lambda t: sign * float(t.metrics.get(outcome.metric, sign * float("inf")) or 0),
    )
    print(
        f"\n=== sweep {outcome.name}: {len(rows)} trials, {outcome.total_steps} trial-updates ==="
    )
    print(f"{'trial':<13} {'status':<8} {'steps':>6} {outcome.metric:>14} {'loss':>8}  params")
    for t in rows:
        value = t.metrics.get(outcome.metric)
        shown = f"{value:.3f}" if isinstance(value, (int, float)) else "-"
        mark = " *" if outcome.best is t else ""
        print(
            f"{t.trial_id:<13} {t.status:<8} {t.steps:>6} {shown:>14} "
            f"{t.metrics.get('loss', float('nan')):>8.4f}  {describe_params(t.params, keys)}{mark}"
        )
    print(f"wall time: {outcome.elapsed_s:.0f} s")
    if outcome.errored:
        # The plan is found through --storage: name it unless it is the default.
        resume = f"python jobs/sweep.py --resume {plan.name}"
        if plan.storage != resolve_storage(None):
            resume += f" --storage {plan.storage}"
        print(
            f"{len(outcome.errored)} trial(s) errored (exit status 1); the finished trials "
            f"are kept, finish the others with: {resume}"
        )
    if outcome.best is not None:
        print(f"best trial (*): {outcome.best.trial_id}, MLflow run {outcome.best_run_id}")
        print(f"best config: {outcome.best_config}  (python jobs/train.py --config ...)")
    if outcome.model_uri:
        print(f"registered model: {outcome.model_uri}")
    for note in outcome.notes:
        print(f"note: {note}")
    print(
        f"MLflow parent run {outcome.parent_run_id} in experiment {plan.experiment!r} at "
        f"{plan.tracking_uri}\n  compare: python jobs/compare.py --parent-run "
        f"{outcome.parent_run_id} --tracking-uri {plan.tracking_uri}",
        flush=True,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
