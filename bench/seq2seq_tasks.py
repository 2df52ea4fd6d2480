"""Sequence-to-sequence task files that no recipe was written for (the general recipe's test).

    python bench/seq2seq_tasks.py --kind reverse --count 1200 --out bench/artifacts/reverse.parquet

Kinds: ``reverse`` (the input backwards), ``sort`` (its symbols in ascending order),
``shift`` (copied with a cyclic shift of 3 positions to the right). Rows are digit strings
(10 symbols) of random lengths ``--min-len``..``--max-len``; inputs are distinct, 10% go
to split "val" (checkpoint choice) and 10% to "test" (reported), the rest "train".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from refiner.data.tokenizers import NUM_SPECIAL  # noqa: E402
from refiner.tasks.io import write_tasks  # noqa: E402
from refiner.tasks.schema import TASK_SCHEMA  # noqa: E402

NUM_SYMBOLS = 10
SHIFT = 3
KINDS: dict[str, Callable[[list[int]], list[int]]] = {
    "reverse": lambda s: s[::-1],
    "sort": sorted,
    "shift": lambda s: s[-SHIFT % len(s) :] + s[: -SHIFT % len(s)],
}


def generate(kind: str, count: int, min_len: int, max_len: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, ...]] = set()
    inputs: list[list[int]] = []
    while len(inputs) < count:
        length = int(rng.integers(min_len, max_len + 1))
        row = tuple(int(x) for x in rng.integers(0, NUM_SYMBOLS, size=length))
        if row not in seen:
            seen.add(row)
            inputs.append(list(row))
    split = ["val" if i % 10 == 0 else "test" if i % 10 == 1 else "train" for i in range(count)]
    ids = [f"{kind}-{i:05d}" for i in range(count)]
    token = lambda s: [NUM_SPECIAL + x for x in s]  # noqa: E731
    return pa.table(
        {
            "task_id": ids,
            "task_type": ["sequence"] * count,
            "source": [kind] * count,
            "group_id": ids,
            "split": split,
            "input": [token(s) for s in inputs],
            "target": [token(list(KINDS[kind](s))) for s in inputs],
            "height": pa.nulls(count, pa.int32()),
            "width": pa.nulls(count, pa.int32()),
            "num_symbols": [NUM_SYMBOLS] * count,
        },
        schema=TASK_SCHEMA,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=sorted(KINDS), required=True)
    p.add_argument("--count", type=int, default=1200)
    p.add_argument("--min-len", type=int, default=4)
    p.add_argument("--max-len", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    table = generate(args.kind, args.count, args.min_len, args.max_len, args.seed)
    write_tasks(table, args.out)
    print(f"{args.out}: {table.num_rows} {args.kind} rows")


if __name__ == "__main__":
    main()
