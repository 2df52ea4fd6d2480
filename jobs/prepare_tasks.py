"""Write a built-in task source to a task file (parquet or jsonl) and summarise it.

    python jobs/prepare_tasks.py --source sudoku --size 9 --count 1000 --out data/sudoku9.parquet
    python jobs/prepare_tasks.py --source arc --option version=arc-agi-2 --out data/arc2.jsonl
    python jobs/prepare_tasks.py --source text --input pairs.jsonl --out data/text.parquet
    python jobs/prepare_tasks.py --source sudoku --input train.csv --count 1000 --out sudoku.parquet
    python jobs/prepare_tasks.py --source maze --input test.csv --option split=test --out maze.parquet
    python jobs/prepare_tasks.py --source arc --input ARC-AGI-2/data/training --out arc2.parquet

Bad input prints one message on stderr and exits with status 2; the output file is
written atomically, so a failed run leaves no file behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refiner.tasks.io import TaskFileError, write_tasks
from refiner.tasks.sources import SOURCES, load_source

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, choices=sorted(SOURCES))
    parser.add_argument(
        "--size", type=int, help="sequence length, sudoku side or maximum ARC grid side"
    )
    parser.add_argument("--count", type=int, help="number of tasks (ARC: puzzles)")
    parser.add_argument(
        "--input",
        help="a file/dir to read: text jsonl, sudoku or maze CSV (HRM layout), ARC JSON dir",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source option, e.g. givens=30-36, version=arc-agi-2, subset=evaluation",
    )
    parser.add_argument("--out", required=True, help="output file, .parquet or .jsonl")
    return parser.parse_args(argv)


def parse_options(pairs: list[str]) -> dict[str, object]:
    """KEY=VALUE strings to keyword options; numbers become int or float."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        options[key] = _number_or_text(value)
    return options


def _number_or_text(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def summarise(table: pa.Table, seconds: float) -> str:
    splits = Counter(table.column("split").to_pylist())
    types = Counter(table.column("task_type").to_pylist())
    lines = [
        f"{table.num_rows} tasks in {seconds:.2f} s",
        "  splits: " + ", ".join(f"{k}={v}" for k, v in sorted(splits.items())),
        "  task types: " + ", ".join(f"{k}={v}" for k, v in sorted(types.items())),
    ]
    for name in ("input", "target"):
        lengths = pc.list_value_length(table.column(name)).to_numpy()
        lines.append(
            f"  {name} length: min {lengths.min()}, mean {np.mean(lengths):.1f},"
            f" max {lengths.max()}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        table = load_source(
            args.source,
            count=args.count,
            size=args.size,
            seed=args.seed,
            input=args.input,
            **parse_options(args.option),
        )
        table = write_tasks(table, args.out)
    except (TaskFileError, ValueError, OSError) as err:
        print(f"prepare_tasks: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.out}")
    print(summarise(table, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
