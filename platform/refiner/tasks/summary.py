"""A task table in a few lines: counts per split and type, input and target lengths."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def summarise_tasks(table: pa.Table, seconds: float) -> str:
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
