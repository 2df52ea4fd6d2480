"""Mazes: find the shortest path from S to G (built-in generator or a Maze-Hard CSV).

A maze is a side×side grid of walls ``#``, open cells (space), a start ``S`` and a goal
``G``; the target is the same grid with the cells of the shortest S-G path (S and G
excluded) marked ``o``. Symbols: open 0, wall 1, S 2, G 3, path 4 (``num_symbols`` 5).

Built-in (offline, deterministic from ``seed``): an odd side, a perfect maze carved by a
randomised depth-first search, then a ``loops`` fraction of the remaining inner walls
knocked out so that several routes exist; S and G are placed at least ``min_path`` steps
apart (default: an eighth of the cells, the "hard" end), and a maze is kept only when
its shortest path is unique (BFS path counting). ``input`` reads a CSV in the Maze-Hard
layout instead (``source,question,answer,rating``, 900 characters for 30×30).
Splits: each maze is its own group; ``test_fraction`` of them go to "test".
"""

from __future__ import annotations

import math
import random
from collections import deque
from pathlib import Path

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import SymbolTokenizer
from refiner.tasks.schema import SPLITS, TASK_SCHEMA
from refiner.tasks.sources.grid_csv import read_puzzle_csv

CHARS = " #SGo"  # symbol s is CHARS[s]
OPEN, WALL, START, GOAL, PATH = range(5)
NUM_SYMBOLS = len(CHARS)
DEFAULT_LOOPS = 0.05
ATTEMPTS_PER_MAZE = 200


def generate(
    count: int | None = None,
    size: int = 15,
    seed: int = 0,
    min_path: int | None = None,
    loops: float = DEFAULT_LOOPS,
    test_fraction: float = 0.1,
    input: str | None = None,
    min_rating: int | None = None,
    split: str | None = None,
    **_: object,
) -> pa.Table:
    """``count`` distinct mazes (default 1000; from ``input``: all of them) in TASK_SCHEMA."""
    if count is not None and count < 1:
        raise ValueError(f"maze: count must be >= 1, got {count}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"maze: test_fraction must be in [0, 1), got {test_fraction}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"maze: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if input is not None:
        questions, answers, ids = _read_csv(input, count, seed, min_rating)
        side = math.isqrt(len(questions[0]))
    else:
        if min_rating is not None:
            raise ValueError("maze: min_rating filters a CSV input; generated mazes have none")
        side = size
        questions, answers = _distinct_mazes(count or 1000, size, min_path, loops, seed)
        ids = [f"maze{size}-{seed}-{i:06d}" for i in range(len(questions))]
    rows = len(questions)
    tok = SymbolTokenizer(NUM_SYMBOLS)
    return pa.table(
        {
            "task_id": ids,
            "task_type": ["grid"] * rows,
            "source": ["maze"] * rows,
            "group_id": ids,
            "split": [split] * rows if split else _split(ids, test_fraction, seed),
            "input": list(tok.encode(np.array(questions))),
            "target": list(tok.encode(np.array(answers))),
            "height": np.full(rows, side, dtype=np.int32),
            "width": np.full(rows, side, dtype=np.int32),
            "num_symbols": np.full(rows, NUM_SYMBOLS, dtype=np.int32),
        },
        schema=TASK_SCHEMA,
    )


# -- reading a Maze-Hard CSV ------------------------------------------------------------

CSV_SIDE = 30


def _read_csv(
    path: str, count: int | None, seed: int, min_rating: int | None
) -> tuple[list[list[int]], list[list[int]], list[str]]:
    puzzles = read_puzzle_csv(
        path,
        CSV_SIDE * CSV_SIDE,
        CHARS[:4],
        CHARS,
        check=_answer_fits_question,
        min_rating=min_rating,
        count=count,
        seed=seed,
    )
    stem = Path(path).stem
    return (
        [symbols(p.question) for p in puzzles],
        [symbols(p.answer) for p in puzzles],
        [f"maze-csv/{stem}/{p.line}" for p in puzzles],
    )


def symbols(text: str) -> list[int]:
    return [CHARS.index(ch) for ch in text]


def _answer_fits_question(question: str, answer: str) -> list[tuple[str, str]]:
    """The answer is the question with path marks: only open cells, S or G may become 'o'."""
    for i, (q, a) in enumerate(zip(question, answer, strict=True)):
        if q != a and not (a == "o" and q in " SG"):
            row, col = divmod(i, CSV_SIDE)
            return [("answer", f"cell ({row}, {col}) is {a!r} where the question has {q!r}")]
    if question.count("S") != 1 or question.count("G") != 1:
        return [("question", "expected exactly one S and one G")]
    return []


# -- the built-in generator -----------------------------------------------------------


def shortest_path_count(grid: np.ndarray, start: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """BFS from ``start`` over non-wall cells: (distance, number of shortest paths) per cell.

    Distance -1 marks unreachable cells; counts are capped at 2 (all a uniqueness check needs).
    """
    height, width = grid.shape
    dist = np.full(grid.shape, -1, dtype=np.int64)
    ways = np.zeros(grid.shape, dtype=np.int64)
    dist[start], ways[start] = 0, 1
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if not (0 <= nr < height and 0 <= nc < width) or grid[nr, nc] == WALL:
                continue
            if dist[nr, nc] == -1:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
            if dist[nr, nc] == dist[r, c] + 1:
                ways[nr, nc] = min(2, ways[nr, nc] + ways[r, c])
    return dist, ways


def solve_maze(grid: np.ndarray) -> np.ndarray | None:
    """The grid with the unique shortest S-G path marked PATH; None if not unique/reachable."""
    start_row, start_col = (int(x) for x in np.argwhere(grid == START)[0])
    start = (start_row, start_col)
    goal = tuple(int(x) for x in np.argwhere(grid == GOAL)[0])
    dist, ways = shortest_path_count(grid, start)
    if dist[goal] < 0 or ways[goal] != 1:
        return None
    solved = grid.copy()
    r, c = goal
    while dist[r, c] > 1:  # walk back: exactly one neighbour one step closer lies on it
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]:
                if dist[nr, nc] == dist[r, c] - 1 and ways[nr, nc] == 1:
                    r, c = nr, nc
                    break
        solved[r, c] = PATH
    return solved


def make_maze(
    size: int, min_path: int, loops: float, rng: random.Random
) -> tuple[list[int], list[int]]:
    """One (maze, solved maze) pair, row-major symbols."""
    for _ in range(ATTEMPTS_PER_MAZE):
        grid = _carve(size, loops, rng)
        open_cells = [(int(r), int(c)) for r, c in np.argwhere(grid == OPEN)]
        start = rng.choice(open_cells)
        dist, ways = shortest_path_count(grid, start)
        far = [cell for cell in open_cells if dist[cell] >= min_path and ways[cell] == 1]
        if not far:
            continue
        grid[start] = START
        grid[rng.choice(far)] = GOAL
        solved = solve_maze(grid)
        if solved is not None:
            return grid.reshape(-1).tolist(), solved.reshape(-1).tolist()
    raise ValueError(
        f"maze: no {size}x{size} maze with a unique shortest path of length >= {min_path}"
        f" in {ATTEMPTS_PER_MAZE} attempts; lower min_path or loops"
    )


def _carve(size: int, loops: float, rng: random.Random) -> np.ndarray:
    """Walls everywhere, cells at odd coordinates joined by a random spanning tree
    (iterative depth-first search), then a ``loops`` fraction of the inner walls opened."""
    grid = np.full((size, size), WALL, dtype=np.int64)
    cells = size // 2  # cells per axis, at 1, 3, ..., size - 2
    seen = {(0, 0)}
    stack = [(0, 0)]
    grid[1, 1] = OPEN
    while stack:
        r, c = stack[-1]
        steps = [
            (r + dr, c + dc)
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= r + dr < cells and 0 <= c + dc < cells and (r + dr, c + dc) not in seen
        ]
        if not steps:
            stack.pop()
            continue
        nr, nc = rng.choice(steps)
        seen.add((nr, nc))
        grid[2 * nr + 1, 2 * nc + 1] = OPEN
        grid[r + nr + 1, c + nc + 1] = OPEN  # the wall between the two cells
        stack.append((nr, nc))
    inner = [
        (r, c)
        for r in range(1, size - 1)
        for c in range(1, size - 1)
        if grid[r, c] == WALL and (r % 2) != (c % 2)
    ]
    for cell in rng.sample(inner, round(loops * len(inner))):
        grid[cell] = OPEN
    return grid


def _distinct_mazes(
    count: int, size: int, min_path: int | None, loops: float, seed: int
) -> tuple[list[list[int]], list[list[int]]]:
    if size < 5 or size % 2 == 0:
        raise ValueError(f"maze: the built-in generator needs an odd size >= 5, got {size}")
    if not 0 <= loops <= 1:
        raise ValueError(f"maze: loops must be in [0, 1], got {loops}")
    if min_path is None:
        min_path = size * size // 8
    if min_path < 1:
        raise ValueError(f"maze: min_path must be >= 1, got {min_path}")
    seen: set[tuple[int, ...]] = set()
    mazes: list[list[int]] = []
    solved: list[list[int]] = []
    attempt = 0
    while len(mazes) < count:
        # One generator per (seed, index, retry): maze i does not depend on count.
        rng = random.Random(f"maze-{size}-{seed}-{len(mazes)}-{attempt}")
        maze, answer = make_maze(size, min_path, loops, rng)
        if tuple(maze) in seen:
            attempt += 1
            if attempt > 100 * count:
                raise ValueError(f"maze: could not find {count} distinct {size}x{size} mazes")
            continue
        seen.add(tuple(maze))
        mazes.append(maze)
        solved.append(answer)
    return mazes, solved


def _split(ids: list[str], test_fraction: float, seed: int) -> list[str]:
    wanted = min(round(len(ids) * test_fraction), len(ids) - 1)  # training keeps one
    test = set(random.Random(f"maze-split-{seed}").sample(range(len(ids)), wanted))
    return ["test" if i in test else "train" for i in range(len(ids))]
