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

from refiner.runs.cli import input_checks, job_main, parse_options
from refiner.tasks.io import write_tasks
from refiner.tasks.sources import SOURCES, load_source
from refiner.tasks.summary import summarise_tasks


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


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with input_checks():  # bad input: "error: ...", exit status 2, no file written
        table = load_source(
            args.source,
            count=args.count,
            size=args.size,
            seed=args.seed,
            input=args.input,
            **parse_options(args.option),
        )
        table = write_tasks(table, args.out)
    print(f"wrote {args.out}")
    print(summarise_tasks(table, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
