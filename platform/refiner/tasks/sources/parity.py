"""Prefix parity: input bits x_1..x_n, target y_i = x_1 xor ... xor x_i.

Each output bit depends on every earlier input bit, so a small model cannot get a long
sequence right in one pass but can propagate the running parity a stretch further with
every refinement step: the cheap CPU benchmark for "refinement helps".
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import SymbolTokenizer
from refiner.tasks.schema import TASK_SCHEMA

NUM_SYMBOLS = 2


def prefix_parity(bits: np.ndarray) -> np.ndarray:
    """Running xor along the last axis."""
    return (np.cumsum(bits, axis=-1) % 2).astype(bits.dtype)


def generate(
    count: int, size: int = 16, seed: int = 0, val_fraction: float = 0.1, **_: object
) -> pa.Table:
    """``count`` random bit strings of length ``size``; a ``val_fraction`` of them in "val".

    Sequences are distinct, so validation sequences are never seen in training.
    """
    if size < 1 or count < 1:
        raise ValueError(f"parity needs size >= 1 and count >= 1, got size={size}, count={count}")
    if count > 2**size:
        raise ValueError(
            f"parity: only {2**size} distinct sequences of length {size}, asked for {count}"
        )
    rng = np.random.default_rng(seed)
    bits = _distinct_bit_rows(rng, count, size)
    tok = SymbolTokenizer(NUM_SYMBOLS)
    inputs = tok.encode(bits)
    targets = tok.encode(prefix_parity(bits))
    n_val = int(round(count * val_fraction))
    splits = ["val"] * n_val + ["train"] * (count - n_val)
    ids = [f"parity-{size}-{seed}-{i:06d}" for i in range(count)]
    return pa.table(
        {
            "task_id": ids,
            "task_type": ["sequence"] * count,
            "source": ["parity"] * count,
            "group_id": ids,
            "split": splits,
            "input": list(inputs),
            "target": list(targets),
            "height": pa.nulls(count, pa.int32()),
            "width": pa.nulls(count, pa.int32()),
            "num_symbols": np.full(count, NUM_SYMBOLS, dtype=np.int32),
        },
        schema=TASK_SCHEMA,
    )


def _distinct_bit_rows(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    rows: dict[bytes, np.ndarray] = {}
    while len(rows) < count:
        batch = rng.integers(0, 2, size=(count, size), dtype=np.int8)
        for row in batch:
            rows.setdefault(row.tobytes(), row)
            if len(rows) == count:
                break
    return np.stack(list(rows.values()))
