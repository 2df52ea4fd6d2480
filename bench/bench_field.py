"""Benchmark (issue 15): the field's benchmarks on this CPU, time to accuracy through
``jobs/train.py`` with the shipped recipes (2 Ray workers unless --num-workers).

Cases (each runs the recipe as shipped, its training.steps sized so that its learning-rate
decay ends inside the budget; a run still going when the budget is spent is stopped with
SIGTERM, so its MLflow run ends KILLED with every checkpoint's metrics kept):
  sudoku6   --task sudoku (jobs/configs/sudoku.yaml: built-in 6x6)          10 min
  maze15    --task maze   (jobs/configs/maze.yaml: built-in 15x15)          30 min
  sudoku9   --task sudoku, 9x9 "hard" (<= 22 givens, >= 1 guess), 1000 train  30 min
  arc10     --task arc    (ARC-AGI-1 training puzzles fitting 10x10)        30 min
The curve is the field's metric logged at each checkpoint (val_puzzle_exact, or
val_pass_at_2 voting over training.vote_views views for ARC) against wall time since the
run started (Ray start and data preparation included). For ARC the latest checkpoint is
also scored without voting (1 view) and with --views views, to show what voting adds.

    python bench/bench_field.py                       # all four: about 100 minutes
    python bench/bench_field.py --cases sudoku6 arc10 --budget-scale 0.5
    python bench/bench_field.py --cases maze15 --set seed=1     # another seed (model and data)
    python bench/bench_field.py --smoke               # tiny sizes, one short run per case

Prints a table and writes bench/results/field.md (--smoke: a scratch folder instead).
Run it on a quiet machine: the numbers are wall times.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import Headline, parser, write_results
from mlflow import MlflowClient

from refiner.checkpoints.storage import list_checkpoints
from refiner.config.experiment import prepare_experiment
from refiner.evaluate.predictors import benchmark_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "field.md"
EXPERIMENT = "bench-field"


@dataclass
class Case:
    name: str
    task: str
    minutes: float
    metric: str  # the field's metric, logged at checkpoints
    overrides: list[str] = field(default_factory=list)
    headline: tuple[str, str, int] = ("", "report", 0)  # BENCHMARKS.md: benchmark, target, order


CASES = {
    "sudoku6": Case(
        "sudoku6",
        "sudoku",
        10,
        "val_puzzle_exact",
        headline=(
            "sudoku 6x6 recipe, time to accuracy on 2 CPU workers",
            ">= 99% in <= 10 min",
            210,
        ),
    ),
    "maze15": Case(
        "maze15",
        "maze",
        30,
        "val_puzzle_exact",
        headline=("maze 15x15, CPU recipe", ">= 90% in 30 min", 220),
    ),
    "sudoku9": Case(
        "sudoku9",
        "sudoku",
        30,
        "val_puzzle_exact",
        [
            "task.size=9",
            "task.count=1111",
            "task.options.max_givens=22",
            "task.options.min_guesses=1",
            "training.steps=700",  # puzzle generation takes about 5 of the 30 minutes
            "training.checkpoint_every=100",
        ],
        headline=("sudoku 9x9 hard, CPU recipe", "report", 230),
    ),
    "arc10": Case(
        "arc10",
        "arc",
        30,
        "val_pass_at_2",
        ["training.vote_views=8"],
        headline=(
            "ARC-AGI-1 training puzzles <= 10x10, CPU recipe through `jobs/train.py`, 2 workers",
            "gain from conditioning and from voting",
            240,
        ),
    ),
}
SMOKE = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "model.latent_cycles=1",
    "orchestration.max_steps_train=2",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=2",
    "orchestration.augmentation_count=2",
    "training.batch_size=16",
    "training.steps=6",
    "training.report_every=3",
    "training.checkpoint_every=3",
    "training.warmup_steps=2",
    "training.vote_views=2",
    "task.val_max_rows=16",
]
SMOKE_COUNTS = {"sudoku6": 60, "maze15": 40, "sudoku9": 40, "arc10": 8}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "field", "results report, .md (default: bench/results/field.md)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiplies every budget")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--views", type=int, default=16, help="ARC: views for the voting-on score")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also this override in every case, as jobs/train.py --set (e.g. seed=1)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few updates per case")
    return p.parse_args(argv)


@dataclass
class Result:
    case: Case
    status: str
    wall_s: float
    updates: int
    curve: list[tuple[float, int, float]]  # (seconds since start, update, field metric)
    voting: dict[str, float] = field(default_factory=dict)  # ARC: pass@2 by view count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-field-"))
    out = Path(args.out) if args.out else (scratch / "field.md" if args.smoke else RESULTS)
    folder = out.parent
    results = []
    for name in args.cases:
        case = CASES[name]
        overrides = [*case.overrides, *args.overrides]
        if args.smoke:
            overrides = [o for o in overrides if not o.startswith("task.count")]
            overrides += [*SMOKE, f"task.count={SMOKE_COUNTS[name]}"]
            overrides += ["task.size=6"] if name == "arc10" else []
        budget_s = 600.0 if args.smoke else case.minutes * 60 * args.budget_scale
        print(f"== {name}: {budget_s / 60:.1f} min budget, --task {case.task}", flush=True)
        results.append(run_case(case, overrides, budget_s, args, scratch / name))
        print(describe(results[-1]), flush=True)
        write_case(results[-1], folder, args)
    table = report(results, args)
    print("\n" + table)
    write_results("field", out=out.with_suffix(".md"), markdown=table + "\n")
    return 0


def run_case(case: Case, overrides: list[str], budget_s: float, args, work: Path) -> Result:
    work.mkdir(parents=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    sets = [arg for o in overrides for arg in ("--set", o)]
    command = [
        sys.executable, str(ROOT / "jobs" / "train.py"), "--task", case.task,
        "--num-workers", str(0 if args.smoke else args.num_workers), "--run-name", case.name,
        "--experiment", EXPERIMENT, "--tracking-uri", uri, "--storage", str(work / "storage"),
        *sets,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # a private local Ray per run
    started = time.perf_counter()
    with open(work / "train.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # the job ends its MLflow run KILLED
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this script started
                process.wait()
    wall_s = time.perf_counter() - started
    if process.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM, 130, 143):
        tail = (work / "train.log").read_text()[-3000:]
        raise RuntimeError(f"{case.name}: jobs/train.py exited {process.returncode}:\n{tail}")
    result = read_result(case, uri, wall_s)
    if case.task == "arc":
        result.voting = score_voting(case, overrides, work / "storage" / case.name, args)
    return result


def read_result(case: Case, uri: str, wall_s: float) -> Result:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    run = client.search_runs([experiment.experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, case.metric)
    start_ms = run.info.start_time
    # The logged model repeats its checkpoint's metrics later: the first log of a step counts.
    first: dict[int, tuple[float, float]] = {}
    for m in sorted(history, key=lambda m: m.timestamp):
        first.setdefault(m.step, ((m.timestamp - start_ms) / 1000, m.value))
    steps = client.get_metric_history(run.info.run_id, "loss")
    return Result(
        case,
        run.info.status,
        wall_s,
        max((m.step for m in steps), default=0),
        sorted((t, step, value) for step, (t, value) in first.items()),
    )


def score_voting(case: Case, overrides: list[str], run_dir: Path, args) -> dict[str, float]:
    """pass@2 of the latest checkpoint without voting (1 view) and with ``args.views``."""
    kept = list_checkpoints(str(run_dir))
    if not kept:
        return {}
    _, tasks = prepare_experiment(ROOT / "jobs" / "configs" / "arc.yaml", overrides)
    path = Path(kept[-1][1]) / "checkpoint.pt"
    views = 2 if args.smoke else args.views
    return {
        f"pass@2 ({n} view{'s' if n > 1 else ''})": benchmark_report(
            path, tasks, n, "test", max_rows=512
        ).pass_at_2
        for n in (1, views)
    }


def write_case(result: Result, folder: Path, args) -> None:
    """The case's results file, bench/results/field_<case>.json, with its headline row."""
    r, case = result, result.case
    benchmark, target, order = case.headline
    if r.curve:
        t, update, value = max(r.curve, key=lambda point: point[2])
        text = (
            f"**{value:.1%}** ({case.metric}) at {t / 60:.1f} min (update {update:,}); "
            f"final {r.curve[-1][2]:.1%}, {r.updates:,} updates in {r.wall_s / 60:.1f} min"
        )
    else:
        text = f"no checkpoint metric ({r.status}, {r.wall_s / 60:.1f} min)"
    if r.voting:
        text += "; " + ", ".join(f"{k} {v:.1%}" for k, v in r.voting.items())
    # The recipe as shipped, full budget: its headline row. Another seed or a shorter
    # budget: a results file of its own, beside it.
    shipped = not (args.smoke or args.overrides or args.budget_scale != 1.0)
    name = f"field_{case.name}" + "".join(f"_{o}".replace("/", "-") for o in args.overrides)
    name += "" if args.budget_scale == 1.0 else f"_x{args.budget_scale:g}"
    write_results(
        name,
        out=folder / f"{name}.json",
        headline=[Headline(benchmark, 15, target, text, order)] if shipped else [],
        results={
            "status": r.status,
            "wall_s": r.wall_s,
            "updates": r.updates,
            "curve": r.curve,
            "voting": r.voting,
            "overrides": args.overrides,
        },
    )


def describe(result: Result) -> str:
    points = "  ".join(f"{t / 60:.1f}m:{v:.3f}" for t, _, v in result.curve)
    extra = "  ".join(f"{k} {v:.4f}" for k, v in result.voting.items())
    return f"  {result.case.metric} at checkpoints: {points or '-'}  {extra}"


def report(results: list[Result], args) -> str:
    lines = [
        "# The field's benchmarks on CPU (bench/bench_field.py)",
        "",
        f"{args.num_workers if not args.smoke else 0} Ray workers, `jobs/train.py --task ...` with"
        " the shipped recipes; wall time since the MLflow run started."
        + (" SMOKE RUN: tiny sizes, numbers mean nothing." if args.smoke else ""),
        "",
        "| case | metric | final | best | updates | wall (min) | status | curve (min: value) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        final = f"{r.curve[-1][2]:.4f}" if r.curve else "-"
        best = f"{max(v for _, _, v in r.curve):.4f}" if r.curve else "-"
        points = ", ".join(f"{t / 60:.1f}: {v:.3f}" for t, _, v in r.curve)
        lines.append(
            f"| {r.case.name} | {r.case.metric} | {final} | {best} | {r.updates} |"
            f" {r.wall_s / 60:.1f} | {r.status} | {points} |"
        )
    voting = [r for r in results if r.voting]
    if voting:
        lines += ["", "ARC, latest checkpoint, test pairs: what voting adds", ""]
        for r in voting:
            lines += [f"- {r.case.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.voting.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
