"""Search strategies at equal compute, over several sweep seeds, in one run.

    python bench/bench_search.py --part searchers --seeds 0 1 2        # random vs Optuna TPE
    python bench/bench_search.py --part front --seeds 0 1 2            # two-objective fronts
    python bench/bench_search.py --task sudoku --set task.size=4 --steps 200 --num-samples 16

Every strategy gets the same trials (num_samples), updates per trial and scheduler
(FIFO: every trial to the end), over a space with clearly bad regions (learning rate
over three decades, the truncation window down to one step). Per sweep seed:

- searchers: trials (in the order they were proposed) each strategy needed to come within
  ``--within`` (1 point) of the best ``--metric`` any strategy found with that seed; the
  model-based search's count as a fraction of random's (the issue's goal: <= 60%).
- front: random sampling against Optuna's multi-objective TPE on (val_acc_infer max,
  val_mean_steps min): the hypervolume of each front at equal trials, against a reference
  point every trial beats (accuracy 0, max_steps_infer + 1 steps).
- pbt: ASHA (random search, ``--num-samples`` trials) against PBT over the same space's
  mutable keys with a population sized to ASHA's total updates (equal compute): the best
  ``--metric`` each reached and the updates each spent.

Medians and the spread (min..max over seeds) are printed as a markdown table and written
to ``--out``. Timings are not compared (the machine is shared); compute is trial-updates.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import yaml

from refiner.config.experiment import load_task_table, prepare_experiment
from refiner.distributed.compat import init_local_on_loopback
from refiner.distributed.sweep_driver import run_sweep
from refiner.sweep.outcome import SweepOutcome, TrialSummary, finite
from refiner.sweep.pareto import hypervolume
from refiner.sweep.plan import SweepPlan
from refiner.sweep.space import load_space
from refiner.tracking import sweeps as sweep_tracking

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_runs import TINY_SWEEP as TINY  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "jobs" / "configs" / "sweep.yaml"
SPACE = {  # bad regions on purpose: lr 1e-5 learns nothing in the budget, 3e-2 is unstable
    "training": {"lr": {"loguniform": [1.0e-5, 3.0e-2]}},
    "orchestration": {
        "max_steps_train": {"choice": [4, 8]},
        "truncated_backprop": {"choice": [True]},
        "backprop_truncate_steps": {
            "choice": [1, 2, 4, 8],
            "at_most": "orchestration.max_steps_train",
        },
        "step_loss_weights": {"schedule": {"choice": ["uniform", "linear", "exponential"]}},
    },
}
FRONT_SPACE = {
    "training": {"lr": {"loguniform": [1.0e-4, 3.0e-2]}},
    "orchestration": {
        "max_steps_infer": {"choice": [1, 2, 3, 4]},
        "stopping": {"max_accuracy_loss": {"uniform": [0.0, 5.0]}},
    },
}
OBJECTIVES = {"val_acc_infer": "max", "val_mean_steps": "min"}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", choices=("searchers", "front", "pbt", "all"), default="searchers")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=10)
    p.add_argument("--steps", type=int, default=90)
    p.add_argument("--startup", type=int, default=3, help="TPE's random trials first")
    p.add_argument("--concurrent", type=int, default=2, help="trials at once (both strategies)")
    p.add_argument("--metric", default="val_token_acc_infer")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--within", type=float, default=0.01, help="1 point = 0.01")
    p.add_argument("--task", default=None, help="e.g. sudoku (default: the sweep config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.md"))
    args = p.parse_args()
    init_local_on_loopback(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    overrides = [*TINY, *args.set, f"training.steps={args.steps}"]
    config, _ = prepare_experiment(BASE, overrides, task=args.task)
    tasks = load_task_table(config.task, config.seed)
    started = time.perf_counter()
    lines = header(args)
    raw: dict[str, Any] = {}
    if args.part in ("searchers", "all"):
        runs = {
            (kind, seed): sweep(work, config.to_dict(), tasks, kind, seed, args, SPACE)
            for seed in args.seeds
            for kind in ("random", "optuna")
        }
        lines += searcher_table(runs, args)
        raw["searchers"] = {f"{k}-{s}": curve(o, args.metric) for (k, s), o in runs.items()}
    if args.part in ("front", "all"):
        runs = {
            (kind, seed): sweep(work, config.to_dict(), tasks, kind, seed, args, FRONT_SPACE, True)
            for seed in args.seeds
            for kind in ("random", "optuna")
        }
        lines += front_table(runs, config.orchestration.max_steps_infer, args)
    if args.part in ("pbt", "all"):
        lines += pbt_table(work, config.to_dict(), tasks, args)
    ray.shutdown()
    lines.append(f"\nWall time of the whole benchmark: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 0


def sweep(
    work: Path,
    base: dict[str, Any],
    tasks: Any,
    kind: str,
    seed: int,
    args: argparse.Namespace,
    space: dict[str, Any],
    two_objectives: bool = False,
    scheduler: dict[str, Any] | None = None,
    num_samples: int | None = None,
) -> SweepOutcome:
    """One sweep: ``kind`` random or optuna, FIFO (unless told), the same trial count and
    budget."""
    settings: dict[str, Any] = {
        "num_samples": num_samples or args.num_samples,
        "seed": seed,
        "max_concurrent_trials": args.concurrent,
        "search": {"type": kind, "n_startup_trials": args.startup},
        "scheduler": scheduler or {"type": "fifo", "metric": args.metric, "mode": args.mode},
    }
    if two_objectives:
        settings["objectives"] = OBJECTIVES
        settings["scheduler"] = {"type": "fifo", "metric": "val_acc_infer", "mode": "max"}
    label = (scheduler or {}).get("type", "front" if two_objectives else "search")
    name = f"{label}-{kind}-{seed}"
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"sweep": settings, "space": space}))
    plan = SweepPlan(
        name=name,
        space=load_space(path).to_dict(),
        space_origin=str(path),
        base=base,
        storage=str(work / "store"),
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        experiment="bench-search",
        out_dir=str(work / "out"),
    )
    outcome = run_sweep(plan, tasks, tracking=sweep_tracking)
    # Each sweep's trials as they finish: a long run that is cut short still leaves these.
    with open(Path(args.out).with_suffix(".partial.jsonl"), "a", encoding="utf-8") as f:
        trials = [
            {
                "trial": t.trial_id,
                "params": t.params,
                "metrics": {
                    k: v for k, v in t.metrics.items() if k in (args.metric, *OBJECTIVES, "step")
                },
            }
            for t in in_order(outcome.trials)
        ]
        f.write(json.dumps({"sweep": name, "trials": trials}, default=str) + "\n")
    print(
        f"[bench] {name}: {len(outcome.trials)} trials, {outcome.total_steps} updates", flush=True
    )
    return outcome


def in_order(trials: list[TrialSummary]) -> list[TrialSummary]:
    """Trials in the order the searcher proposed them (Tune numbers trial ids)."""
    return sorted(trials, key=lambda t: int(t.trial_id.rsplit("_", 1)[-1]))


def curve(outcome: SweepOutcome, metric: str) -> list[float]:
    """The metric per trial in proposal order, signed so that higher is better."""
    sign = -1.0 if outcome.mode == "min" else 1.0
    return [
        sign * float(t.metrics[metric]) if finite(t.metrics.get(metric)) else float("nan")
        for t in in_order(outcome.trials)
    ]


def top(values: list[float]) -> float:
    return max((v for v in values if v == v), default=float("nan"))


def trials_to_reach(values: list[float], target: float) -> int | None:
    for index, value in enumerate(values, start=1):
        if value == value and value >= target:
            return index
    return None


def searcher_table(runs: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        "",
        f"## Random vs Optuna TPE: trials to come within {args.within:g} of the best "
        f"`{args.metric}` found with the seed",
        "",
        "| seed | best (any) | random: best, trials | optuna: best, trials | optuna/random |",
        # (with --mode min the values shown are negated: higher is better throughout)
        "|---|---|---|---|---|",
    ]
    ratios = []
    for seed in args.seeds:
        r, o = curve(runs["random", seed], args.metric), curve(runs["optuna", seed], args.metric)
        best = top(r + o)
        nr, no = (trials_to_reach(c, best - args.within) for c in (r, o))
        # Not reached within the budget counts as budget + 1 (a lower bound on the cost).
        cr, co = (n if n is not None else args.num_samples + 1 for n in (nr, no))
        ratios.append(co / cr)
        lines.append(
            f"| {seed} | {best:.3f} | {top(r):.3f}, {nr or '>' + str(args.num_samples)} | "
            f"{top(o):.3f}, {no or '>' + str(args.num_samples)} | {co / cr:.2f} |"
        )
    lines += [
        "",
        f"Median optuna/random ratio {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}; goal <= 0.60).",
    ]
    return lines


def front_table(runs: dict, max_steps_infer_base: int, args: argparse.Namespace) -> list[str]:
    steps_cap = 1 + max(4, max_steps_infer_base)  # the space's largest max_steps_infer + 1
    reference = (0.0, float(steps_cap))
    lines = [
        "",
        f"## Two objectives ({', '.join(f'{m} {d}' for m, d in OBJECTIVES.items())}): "
        f"hypervolume of the front at {args.num_samples} trials, reference {reference}",
        "",
        "| seed | random: front size, hypervolume | optuna: front size, hypervolume | ratio |",
        "|---|---|---|---|",
    ]
    ratios = []
    for seed in args.seeds:
        r, o = runs["random", seed], runs["optuna", seed]
        hr = hypervolume(r.trials, OBJECTIVES, reference)
        ho = hypervolume(o.trials, OBJECTIVES, reference)
        ratio = ho / hr if hr else float("nan")
        ratios.append(ratio)
        lines.append(
            f"| {seed} | {len(r.front)}, {hr:.3f} | {len(o.front)}, {ho:.3f} | {ratio:.2f} |"
        )
    finite_ratios = [x for x in ratios if x == x]
    if finite_ratios:
        lines += [
            "",
            f"Median optuna/random hypervolume {statistics.median(finite_ratios):.2f} "
            f"(min {min(finite_ratios):.2f}, max {max(finite_ratios):.2f}).",
        ]
    return lines


PBT_SPACE = {  # the mutable part of SPACE (PBT refuses max_steps_train: the unroll is fixed)
    "training": {"lr": {"loguniform": [1.0e-5, 3.0e-2]}},
    "orchestration": {
        "truncated_backprop": {"choice": [True]},
        "backprop_truncate_steps": {
            "choice": [1, 2, 4, 8],
            "at_most": "orchestration.max_steps_train",
        },
        "step_loss_weights": {"schedule": {"choice": ["uniform", "linear", "exponential"]}},
    },
}


def pbt_table(work: Path, base: dict[str, Any], tasks: Any, args: argparse.Namespace) -> list[str]:
    """ASHA first; PBT's population then spends about the updates ASHA spent."""
    lines = [
        "",
        f"## PBT vs ASHA at equal total updates: best `{args.metric}`",
        "",
        "| seed | ASHA: trials, updates, best | PBT: population, updates, best |",
        "|---|---|---|",
    ]
    interval = int(base["training"]["checkpoint_every"])
    for seed in args.seeds:
        asha = sweep(
            work,
            base,
            tasks,
            "random",
            seed,
            args,
            PBT_SPACE,
            scheduler={
                "type": "asha",
                "metric": args.metric,
                "mode": "max",
                "grace_period": interval,
                "reduction_factor": 2,
            },
        )
        population = max(2, round(asha.total_steps / args.steps))
        pbt = sweep(
            work,
            base,
            tasks,
            "random",
            seed,
            args,
            PBT_SPACE,
            scheduler={
                "type": "pbt",
                "metric": args.metric,
                "mode": "max",
                "perturbation_interval": interval,
            },
            num_samples=population,
        )
        best = [top(curve(o, args.metric)) for o in (asha, pbt)]
        lines.append(
            f"| {seed} | {len(asha.trials)}, {asha.total_steps}, {best[0]:.3f} | "
            f"{population}, {pbt.total_steps}, {best[1]:.3f} |"
        )
    return lines


def header(args: argparse.Namespace) -> list[str]:
    return [
        "# Search strategies at equal compute (bench/bench_search.py)",
        "",
        "Command: `python bench/bench_search.py " + " ".join(sys.argv[1:]) + "`",
        f"Machine: {platform.machine()} Linux, 2-core CPU shared with other jobs (4 logical "
        f"Ray CPUs), no GPU; date {time.strftime('%Y-%m-%d')}.",
        f"Setup: {args.num_samples} trials per sweep, {args.steps} updates each, FIFO, "
        f"{args.concurrent} at once, sweep seeds {args.seeds}; TPE starts with "
        f"{args.startup} random trials.",
    ]


if __name__ == "__main__":
    sys.exit(main())
