"""Search strategies at equal compute, over several sweep seeds, in one run.

    python bench/bench_search.py                       # all three parts, sudoku 4x4, seeds 0 1 2
    python bench/bench_search.py --part searchers      # random vs Optuna TPE only
    python bench/bench_search.py --part front --seeds 0 # two-objective fronts, one seed

The default task is sudoku 4x4 (the tiny sweep model, whole-grid attention) at 60 updates
per trial: at that budget exact match (``val_acc_infer``) is 0 for every configuration
(checked in one process for lr 1e-5..3e-2 at 100 updates), so trials are ranked by
held-out token accuracy (``val_token_acc_infer``), which separates the good and the bad
regions (0.01 at lr 1e-5, ~0.6 at 1e-2); ``--metric val_acc_infer`` with more ``--steps``
ranks by exact match where a budget allows it.

Every strategy gets the same trials (num_samples), updates per trial and scheduler
(FIFO: every trial to the end), over a space with clearly bad regions (learning rate
over three decades, the truncation window down to one step). Per sweep seed:

- searchers: trials (in the order they were proposed) each strategy needed to come within
  ``--within`` (1 point) of the best ``--metric`` any strategy found with that seed; the
  model-based search's count as a fraction of random's (the issue's goal: <= 60%).
- front: random sampling against Optuna's multi-objective TPE on (``--metric`` max,
  val_mean_steps min), ``--front-samples`` trials each, over the step limit, the halting
  bound and the learning rate: the hypervolume of each front at equal trials, against a
  reference point every trial beats (accuracy 0, the largest max_steps_infer + 1 steps).
  Calibrated halting trades exact-match rows for steps, so the front only has a shape
  where exact match is above 0: rank it by ``val_acc_infer`` on a model and budget that
  reach it (sudoku 4x4 reached 70% exact in 300 updates at d_model 64, 2 layers, a constant
  lr of 3e-3; with the cosine decay to 0.1 of it at update 300, three trials stayed at 0):

      python bench/bench_search.py --part front --metric val_acc_infer --steps 250 \\
          --front-samples 5 --set model.d_model=64 --set model.n_layers=2 \\
          --set training.batch_size=32 --set orchestration.augmentation_count=8 \\
          --set training.checkpoint_every=125 --set training.report_every=125 \\
          --set training.warmup_steps=20 --set training.min_lr_ratio=1.0
- pbt: ASHA (random search, ``--asha-samples`` trials) against PBT over the same space's
  mutable keys with a population sized to ASHA's total updates (equal compute): the best
  ``--metric`` each reached and the updates each spent.

Medians and the spread (min..max over seeds) go into bench/results/search.md and
search.json (bench/harness.py; ``make bench-table`` puts the headline rows into
BENCHMARKS.md), and every finished sweep's trials into search.partial.jsonl as they end.
Timings are not compared (the machine is shared); compute is trial-updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import yaml
from harness import Headline, parser, results_paths, write_results

from refiner.config.experiment import load_task_table, prepare_experiment
from refiner.distributed.compat import init_local_on_loopback
from refiner.distributed.sweep_driver import run_sweep
from refiner.sweep.outcome import SweepOutcome, TrialSummary, finite
from refiner.sweep.pareto import hypervolume, pareto_front
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
FRONT_SPACE = {  # what a trial's accuracy costs in steps: the step limit and the halting bound
    "training": {"lr": {"loguniform": [5.0e-4, 8.0e-3]}},  # exact match needs a fair one
    "orchestration": {
        "max_steps_infer": {"choice": [1, 2, 3, 4, 6, 8]},
        "stopping": {"max_accuracy_loss": {"uniform": [0.0, 20.0]}},
    },
}
# The hypervolume's reference point: no accuracy, one step past the space's largest limit.
FRONT_REFERENCE = (0.0, 1.0 + max(FRONT_SPACE["orchestration"]["max_steps_infer"]["choice"]))
STEPS = "val_mean_steps"  # the second objective: inference steps, fewer is better
# Sweeps recorded before PBT's exploits were counted, and before the updates it trains
# again were (their updates are the final steps' sum).
EXPLOITS_UNRECORDED: set[str] = set()
WENT_BACK_UNRECORDED: set[str] = set()
# The task: sudoku 4x4 needs whole-grid attention (sweep.yaml's parity uses a window of 1).
TASK = ["task.size=4", "model.attention_window=null"]


def main() -> int:
    p = parser(__doc__, "search")
    p.add_argument("--part", choices=("searchers", "front", "pbt", "all"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=6, help="trials per searcher sweep")
    p.add_argument("--front-samples", type=int, default=5, help="trials per front sweep")
    p.add_argument("--asha-samples", type=int, default=4, help="ASHA's trials (pbt part)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--startup", type=int, default=2, help="TPE's random trials first")
    p.add_argument("--concurrent", type=int, default=3, help="trials at once (all strategies)")
    p.add_argument("--num-cpus", type=int, default=8, help="Ray's logical CPUs")
    p.add_argument("--metric", default="val_token_acc_infer")
    p.add_argument("--mode", choices=("max", "min"), default="max")
    p.add_argument("--within", type=float, default=0.01, help="1 point = 0.01")
    p.add_argument("--task", default="sudoku", help="task source (default sudoku, size 4)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--tables-from",
        type=Path,
        metavar="PARTIAL_JSONL",
        help="build the tables from the sweeps a run recorded (its search.partial.jsonl) "
        "instead of running any; give the options that run had",
    )
    args = p.parse_args()
    args.json_path, args.md_path = results_paths("search", args.out)
    if args.tables_from is not None:
        return tables_from(args.tables_from, args)
    args.json_path.with_suffix(".partial.jsonl").unlink(missing_ok=True)  # this run's sweeps
    init_local_on_loopback(
        num_cpus=args.num_cpus, include_dashboard=True, dashboard_host="127.0.0.1"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    task = TASK if args.task == "sudoku" else []
    overrides = [
        *TINY,
        *task,
        "training.checkpoint_every=20",
        "training.report_every=20",
        *args.set,
        f"training.steps={args.steps}",
    ]
    config, _ = prepare_experiment(BASE, overrides, task=args.task)
    tasks = load_task_table(config.task, config.seed)
    started = time.perf_counter()
    lines = header(args)
    raw: dict[str, Any] = {}
    headline: list[Headline] = []
    parts = [args.part] if args.part != "all" else ["searchers", "front", "pbt"]
    for part in parts:
        try:
            table, row, raw[part] = PARTS[part](work, config, tasks, args)
        except Exception as err:  # one part's failure must not lose the others' numbers
            raw[part] = {"error": repr(err)}
            table = ["", f"## {part}: FAILED ({err!r})"]
        else:
            headline.append(row)
        lines += table
    ray.shutdown()
    raw["wall_s"] = round(time.perf_counter() - started)
    lines.append(f"\nWall time of the whole benchmark: {raw['wall_s']} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    write_results("search", out=args.out, headline=headline, results=raw, markdown=text)
    return 0


def searchers_part(
    work: Path, config: Any, tasks: Any, args: argparse.Namespace
) -> tuple[list[str], Headline, dict[str, Any]]:
    runs = {
        (kind, seed): sweep(work, config.to_dict(), tasks, kind, seed, args, SPACE)
        for seed in args.seeds
        for kind in ("random", "optuna")
    }
    return searcher_table(runs, args)


def front_part(
    work: Path, config: Any, tasks: Any, args: argparse.Namespace
) -> tuple[list[str], Headline, dict[str, Any]]:
    runs = {
        (kind, seed): sweep(
            work,
            config.to_dict(),
            tasks,
            kind,
            seed,
            args,
            FRONT_SPACE,
            two_objectives=True,
            num_samples=args.front_samples,
        )
        for seed in args.seeds
        for kind in ("random", "optuna")
    }
    return front_table(runs, args)


def pbt_part(
    work: Path, config: Any, tasks: Any, args: argparse.Namespace
) -> tuple[list[str], Headline, dict[str, Any]]:
    return pbt_table(pbt_runs(work, config.to_dict(), tasks, args), args)


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
    concurrent: int | None = None,
) -> SweepOutcome:
    """One sweep: ``kind`` random or optuna, FIFO (unless told), the same trial count and
    budget."""
    settings: dict[str, Any] = {
        "num_samples": num_samples or args.num_samples,
        "seed": seed,
        "max_concurrent_trials": concurrent or args.concurrent,
        "search": {"type": kind, "n_startup_trials": args.startup},
        "scheduler": scheduler or {"type": "fifo", "metric": args.metric, "mode": args.mode},
    }
    if two_objectives:
        settings["objectives"] = objectives(args)
        settings["scheduler"] = {"type": "fifo", "metric": args.metric, "mode": args.mode}
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
    with open(args.json_path.with_suffix(".partial.jsonl"), "a", encoding="utf-8") as f:
        trials = [
            {
                "trial": t.trial_id,
                "params": t.params,
                "metrics": {
                    k: v for k, v in t.metrics.items() if k in (args.metric, STEPS, "step")
                },
            }
            for t in in_order(outcome.trials)
        ]
        record = {
            "sweep": name,
            "trials": trials,
            "exploits": outcome.exploits,
            "went_back": outcome.went_back,
        }
        f.write(json.dumps(record, default=str) + "\n")
    print(
        f"[bench] {name}: {len(outcome.trials)} trials, {outcome.total_steps} updates", flush=True
    )
    return outcome


def objectives(args: argparse.Namespace) -> dict[str, str]:
    return {args.metric: args.mode, STEPS: "min"}


def in_order(trials: list[TrialSummary]) -> list[TrialSummary]:
    """Trials in the order the searcher proposed them. Random search's trial ids end in
    Tune's counter (``abc12_00003``); a searcher's (Optuna) are bare hex ids, and the sweep
    lists its trials in the order Tune created them, which is kept."""
    counters = [t.trial_id.rsplit("_", 1)[-1] for t in trials]
    if all("_" in t.trial_id and c.isdigit() for t, c in zip(trials, counters, strict=True)):
        return sorted(trials, key=lambda t: int(t.trial_id.rsplit("_", 1)[-1]))
    return list(trials)


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


def spread(values: list[float]) -> str:
    """``median (min..max)`` of the finite values."""
    finite_values = [v for v in values if v == v]
    if not finite_values:
        return "n/a"
    return (
        f"{statistics.median(finite_values):.2f} "
        f"({min(finite_values):.2f}..{max(finite_values):.2f})"
    )


def searcher_table(
    runs: dict, args: argparse.Namespace
) -> tuple[list[str], Headline, dict[str, Any]]:
    lines = [
        "",
        f"## Random vs Optuna TPE: trials to come within {args.within:g} of the best "
        f"`{args.metric}` found with the seed",
        "",
        "| seed | best (any) | random: best, trials | optuna: best, trials | optuna/random |",
        # (with --mode min the values shown are negated: higher is better throughout)
        "|---|---|---|---|---|",
    ]
    ratios, raw = [], {}
    for seed in args.seeds:
        r, o = curve(runs["random", seed], args.metric), curve(runs["optuna", seed], args.metric)
        best = top(r + o)
        nr, no = (trials_to_reach(c, best - args.within) for c in (r, o))
        # Not reached within the budget counts as budget + 1 (a lower bound on the cost).
        cr, co = (n if n is not None else args.num_samples + 1 for n in (nr, no))
        ratios.append(co / cr)
        raw[str(seed)] = {"random": r, "optuna": o, "trials": {"random": nr, "optuna": no}}
        lines.append(
            f"| {seed} | {best:.3f} | {top(r):.3f}, {nr or '>' + str(args.num_samples)} | "
            f"{top(o):.3f}, {no or '>' + str(args.num_samples)} | {co / cr:.2f} |"
        )
    won = sum(x < 1 for x in ratios)
    lines += [
        "",
        f"Optuna/random trials ratio, median (min..max) over {len(ratios)} seeds: "
        f"{spread(ratios)}; goal <= 0.60. Optuna needed fewer trials on {won} of "
        f"{len(ratios)} seeds.",
        *by_budget(raw, args),
    ]
    row = Headline(
        f"Optuna TPE vs random search, trials to within {args.within * 100:g} pt of the best "
        f"`{args.metric}` ({len(ratios)} seeds, {args.num_samples} trials)",
        28,
        "<= 60% of random's trials",
        f"median {spread(ratios)} of random's trials; fewer on {won} of {len(ratios)} seeds",
        order=105,
    )
    return lines, row, {"ratios": ratios, "per_seed": raw}


def by_budget(per_seed: dict[str, dict], args: argparse.Namespace) -> list[str]:
    """Where a searcher starts to pay: the best found after n trials (median over seeds),
    and how each sweep spent its trials (the bad region: under half the seed's best; the
    later half: the trials a model-based searcher proposes from what it learnt)."""
    budgets = sorted({n for n in (2, 4, 6, 8, 12, 16) if n < args.num_samples} | {args.num_samples})
    lines = [
        "",
        "Best so far after n trials (median over seeds; ahead: seeds where Optuna's best "
        "is higher by more than 0.005):",
        "",
        "| trials | random | optuna | optuna - random | optuna ahead / behind |",
        "|---|---|---|---|---|",
    ]
    for n in budgets:
        r = [top(run["random"][:n]) for run in per_seed.values()]
        o = [top(run["optuna"][:n]) for run in per_seed.values()]
        gaps = [b - a for a, b in zip(r, o, strict=True)]
        ahead, behind = sum(g > 0.005 for g in gaps), sum(g < -0.005 for g in gaps)
        lines.append(
            f"| {n} | {statistics.median(r):.3f} | {statistics.median(o):.3f} | "
            f"{statistics.median(gaps):+.3f} | {ahead} / {behind} |"
        )
    half = args.num_samples // 2
    spent = {}
    for kind in ("random", "optuna"):
        bad = 0
        medians = []
        for run in per_seed.values():
            best = top(run["random"] + run["optuna"])
            bad += sum(v < best / 2 for v in run[kind] if v == v)
            later_values = [v for v in run[kind][half:] if v == v]
            medians.append(statistics.median(later_values) if later_values else float("nan"))
        spent[kind] = f"{bad} of {len(per_seed) * args.num_samples} trials under half the best, "
        spent[kind] += f"later-half median {spread(medians)}"
    return [
        *lines,
        "",
        f"How the trials were spent (over {len(per_seed)} seeds): random {spent['random']}; "
        f"optuna {spent['optuna']} (trials {half + 1}..{args.num_samples} of each sweep).",
    ]


def front_table(runs: dict, args: argparse.Namespace) -> tuple[list[str], Headline, dict[str, Any]]:
    goals = objectives(args)
    reference = FRONT_REFERENCE
    lines = [
        "",
        f"## Two objectives ({', '.join(f'{m} {d}' for m, d in goals.items())}): "
        f"hypervolume of the front at {args.front_samples} trials, reference {reference}",
        "",
        "| seed | random: front size, hypervolume | optuna: front size, hypervolume | ratio |",
        "|---|---|---|---|",
    ]
    ratios, raw = [], {}
    for seed in args.seeds:
        r, o = runs["random", seed], runs["optuna", seed]
        hr = hypervolume(r.trials, goals, reference)
        ho = hypervolume(o.trials, goals, reference)
        ratio = ho / hr if hr else float("nan")
        ratios.append(ratio)
        raw[str(seed)] = {"random": hr, "optuna": ho, "front": [len(r.front), len(o.front)]}
        lines.append(
            f"| {seed} | {len(r.front)}, {hr:.3f} | {len(o.front)}, {ho:.3f} | {ratio:.2f} |"
        )
    lines += ["", f"Optuna/random hypervolume, median (min..max): {spread(ratios)}."]
    row = Headline(
        f"two-objective front (`{args.metric}` max, `{STEPS}` min): hypervolume, Optuna "
        f"multi-objective TPE / random ({len(ratios)} seeds, {args.front_samples} trials)",
        28,
        "report (> 1: TPE's front dominates more)",
        f"median {spread(ratios)}",
        order=106,
    )
    return lines, row, {"ratios": ratios, "per_seed": raw, "reference": reference}


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


def pbt_runs(
    work: Path, base: dict[str, Any], tasks: Any, args: argparse.Namespace
) -> dict[tuple[str, int], SweepOutcome]:
    """ASHA first; PBT's population then spends about the updates ASHA spent."""
    interval = int(base["training"]["checkpoint_every"])
    runs = {}
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
                "mode": args.mode,
                "grace_period": interval,
                "reduction_factor": 2,
            },
            num_samples=args.asha_samples,
        )
        population = max(2, round(asha.total_steps / args.steps))
        runs["asha", seed] = asha
        runs["pbt", seed] = sweep(
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
                "mode": args.mode,
                "perturbation_interval": interval,
            },
            num_samples=population,
            concurrent=population,  # PBT compares members that run side by side
        )
    return runs


def pbt_table(
    runs: dict[tuple[str, int], SweepOutcome], args: argparse.Namespace
) -> tuple[list[str], Headline, dict[str, Any]]:
    lines = [
        "",
        f"## PBT vs ASHA at equal total updates: best `{args.metric}`",
        "",
        "| seed | ASHA: trials, updates, best | PBT: population, updates trained, best "
        "| PBT exploits | PBT - ASHA |",
        "|---|---|---|---|---|",
    ]
    gains, raw = [], {}
    for seed in args.seeds:
        asha, pbt = runs["asha", seed], runs["pbt", seed]
        best = [top(curve(o, args.metric)) for o in (asha, pbt)]
        gains.append(best[1] - best[0])
        raw[str(seed)] = {
            "asha": {"trials": len(asha.trials), "updates": asha.total_steps, "best": best[0]},
            "pbt": {
                "population": len(pbt.trials),
                "updates": pbt.total_steps + pbt.went_back,
                "final_steps": pbt.total_steps,
                "best": best[1],
                "exploits": None if pbt.name in EXPLOITS_UNRECORDED else len(pbt.exploits),
            },
        }
        # An exploit goes on from the peer's latest checkpoint: updates trained again
        # (or skipped) count, so that the comparison is at the updates PBT really spent.
        updates = (
            f"{pbt.total_steps} (final steps; updates trained again not recorded)"
            if pbt.name in WENT_BACK_UNRECORDED
            else f"{pbt.total_steps + pbt.went_back} ({pbt.went_back:+d} on the final steps)"
        )
        lines.append(
            f"| {seed} | {len(asha.trials)}, {asha.total_steps}, {best[0]:.3f} | "
            f"{len(pbt.trials)}, {updates}, {best[1]:.3f} | "
            f"{'not recorded' if pbt.name in EXPLOITS_UNRECORDED else len(pbt.exploits)} | "
            f"{best[1] - best[0]:+.3f} |"
        )
    won = sum(g > 0 for g in gains)
    lines += [
        "",
        f"PBT's best minus ASHA's, median (min..max): {spread(gains)}; PBT higher on {won} "
        f"of {len(gains)} seeds.",
    ]
    row = Headline(
        f"PBT vs ASHA at equal total updates, best `{args.metric}` ({len(gains)} seeds)",
        28,
        "report",
        f"PBT - ASHA median {spread(gains)}; PBT higher on {won} of {len(gains)} seeds",
        order=107,
    )
    return lines, row, {"gains": gains, "per_seed": raw}


def recorded_runs(path: Path, args: argparse.Namespace) -> dict[str, dict]:
    """The sweeps a run recorded in its .partial.jsonl, keyed per part as the tables want
    them (``search-optuna-1`` -> searchers[("optuna", 1)])."""
    parts: dict[str, dict] = {"searchers": {}, "front": {}, "pbt": {}}
    where = {"search": "searchers", "front": "front", "asha": "pbt", "pbt": "pbt"}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        label, kind, seed = record["sweep"].rsplit("-", 2)
        trials = [
            TrialSummary(
                t["trial"], f"{record['sweep']}-{t['trial']}", t["params"], t["metrics"], "done"
            )
            for t in record["trials"]
        ]
        outcome = SweepOutcome(record["sweep"], args.metric, args.mode, trials, None, None)
        exploits = record.get("exploits", [])
        # Older records counted exploits only, or not at all.
        outcome.exploits = exploits if isinstance(exploits, list) else ["?"] * exploits
        if "exploits" not in record:
            EXPLOITS_UNRECORDED.add(record["sweep"])
        outcome.went_back = record.get("went_back", 0)
        if "went_back" not in record:
            WENT_BACK_UNRECORDED.add(record["sweep"])
        outcome.front = pareto_front(trials, objectives(args)) if label == "front" else []
        key = kind if label == "search" or label == "front" else label
        parts[where[label]][key, int(seed)] = outcome
    return parts


def tables_from(path: Path, args: argparse.Namespace) -> int:
    """The tables of the sweeps a (possibly cut short) run recorded, without running any."""
    lines = [*header(args), "", f"Tables rebuilt from the sweeps recorded in `{path.name}`."]
    raw: dict[str, Any] = {}
    headline = []
    recorded = recorded_runs(path, args)
    keys = {
        "searchers": ("random", "optuna"),
        "front": ("random", "optuna"),
        "pbt": ("asha", "pbt"),
    }
    for part, runs in recorded.items():
        if args.part not in ("all", part):
            continue
        if not all((k, seed) in runs for seed in args.seeds for k in keys[part]):
            lines += ["", f"## {part}: not run (no complete set of sweeps recorded)"]
            continue
        if part == "searchers":
            table, row, raw[part] = searcher_table(runs, args)
        elif part == "front":
            table, row, raw[part] = front_table(runs, args)
        else:
            table, row, raw[part] = pbt_table(runs, args)
        lines += table
        headline.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    write_results("search", out=args.out, headline=headline, results=raw, markdown=text)
    return 0


def header(args: argparse.Namespace) -> list[str]:
    shown = ("searchers", "front", "pbt") if args.part == "all" else (args.part,)
    counts = {
        "searchers": f"searchers {args.num_samples} trials per sweep (FIFO)",
        "front": f"fronts {args.front_samples} trials per sweep (FIFO)",
        "pbt": f"ASHA {args.asha_samples} trials, PBT a population of ASHA's updates",
    }
    changed = f" with {', '.join(args.set)}" if args.set else ""
    return [
        "# Search strategies at equal compute (bench/bench_search.py)",
        "",
        f"Setup: task {args.task}{' 4x4' if args.task == 'sudoku' else ''}, the tiny sweep "
        f"model{changed}, {args.steps} updates per trial, ranked by `{args.metric}` "
        f"({args.mode}); {'; '.join(counts[p] for p in shown)}; {args.concurrent} trials at "
        f"once on {args.num_cpus} logical Ray CPUs; sweep seeds {args.seeds}; TPE starts "
        f"with {args.startup} random trials.",
    ]


PARTS = {"searchers": searchers_part, "front": front_part, "pbt": pbt_part}

if __name__ == "__main__":
    sys.exit(main())
