"""A directory of ARC puzzle files (ARC-AGI-1/-2, ConceptARC, ...): one JSON per puzzle.

Each ``<puzzle id>.json`` holds ``{"train": [{"input": grid, "output": grid}, ...],
"test": [...]}`` with grids as lists of rows of colours 0..9, at most 30×30. Every file
is checked; problems name the file and the place inside it (``test[0].output row 2``)
and are reported together, so nothing is built from a partly bad directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError

MAX_SIDE = 30
NUM_COLOURS = 10


def load_puzzle_dir(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Puzzle id (file stem) -> {"train": [pairs], "test": [pairs]} for every *.json file."""
    folder = Path(path)
    if not folder.is_dir():
        raise TaskFileError(str(folder), [Problem("not a directory of ARC puzzle .json files")])
    files = sorted(folder.glob("*.json"))
    if not files:
        raise TaskFileError(str(folder), [Problem("no .json puzzle files in this directory")])
    puzzles: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    total = 0
    for file in files:
        found, puzzle = _read_puzzle(file)
        total += len(found)
        problems += [Problem(f"{file.name}: {message}") for message in found]
        if puzzle is not None:
            puzzles[file.stem] = puzzle
    if total:
        raise TaskFileError(str(folder), problems[:MAX_REPORTED_PROBLEMS], total)
    return puzzles


def _read_puzzle(file: Path) -> tuple[list[str], dict[str, Any] | None]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        return [f"cannot read: {err}"], None
    except json.JSONDecodeError as err:
        return [f"invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})"], None
    if not isinstance(data, dict):
        return [f"expected a JSON object, got {type(data).__name__}"], None
    found = [
        f"unknown key {key!r}; a puzzle has train and test"
        for key in data
        if key not in ("train", "test")
    ]
    for kind in ("train", "test"):
        pairs = data.get(kind)
        if not isinstance(pairs, list) or not pairs:
            found.append(f"{kind}: expected a non-empty list of pairs")
            continue
        for index, pair in enumerate(pairs):
            where = f"{kind}[{index}]"
            if not isinstance(pair, dict):
                found.append(f"{where}: expected an object with input and output")
                continue
            for key in ("input", "output"):
                if key not in pair:
                    found.append(f"{where}: missing {key!r}")
                else:
                    found += [f"{where}.{key}{message}" for message in _grid_problems(pair[key])]
    return found, (None if found else {"train": data["train"], "test": data["test"]})


def _grid_problems(grid: Any) -> list[str]:
    if not isinstance(grid, list) or not grid or not all(isinstance(row, list) for row in grid):
        return [": expected a non-empty list of rows"]
    width = len(grid[0])
    if not 1 <= width <= MAX_SIDE or len(grid) > MAX_SIDE:
        return [f": {len(grid)}x{width} grid; sides must be in 1..{MAX_SIDE}"]
    for r, row in enumerate(grid):
        if len(row) != width:
            return [f" row {r}: {len(row)} cells, row 0 has {width} (grids are rectangles)"]
        bad = [
            v
            for v in row
            if not (isinstance(v, int) and not isinstance(v, bool)) or not 0 <= v < NUM_COLOURS
        ]
        if bad:
            return [f" row {r}: {bad[0]!r} is not a colour 0..{NUM_COLOURS - 1}"]
    return []
