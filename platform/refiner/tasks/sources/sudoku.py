"""Sudoku n×n (n = 4, 6, 9; boxes 2×2, 2×3, 3×3) with a unique solution per puzzle.

A puzzle starts from a random complete grid and loses clues one at a time, in random
order, as long as the solver proves the solution stays unique; difficulty is the number of
givens left (option ``givens``: an int, a ``(low, high)`` range or a "low-high" string).
Cells are symbols 0 (blank) and 1..n, so ``num_symbols = n + 1``.

Hard puzzles: ``max_givens`` switches to the minimal-puzzle search of ``sudoku_minimal``
(9×9 reaches 22 givens in about 0.1 s a puzzle, 21 in about 1 s), ``min_guesses`` keeps
only puzzles on which a plain solver makes at least that many wrong guesses
(``count_guesses``). ``input`` reads a Sudoku-Extreme-style CSV instead (``sudoku_csv``;
``min_rating`` filters it, ``count`` samples it); ``split`` puts every row in one split.

Splits keep solutions apart: puzzles are grouped by their solution up to digit relabelling
(``group_id``) and whole groups go to "test" (and "val"), so no test solution, nor a
relabelled copy of it, appears in training. Under the full sudoku symmetry group (which
the augmentation engine also applies) there are only 2 essentially different 4×4 grids
and 49 6×6 ones, so for those sizes augmented training data does reach test solutions;
for 9×9 such collisions are negligible.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from refiner.data.tokenizers import SymbolTokenizer
from refiner.tasks.schema import SPLITS, TASK_SCHEMA
from refiner.tasks.sources import sudoku_minimal
from refiner.tasks.sources.sudoku_csv import read_sudoku_csv
from refiner.tasks.sources.sudoku_solver import (
    box_shape,
    count_guesses,
    count_solutions,
    has_other_solution,
    is_valid_solution,
    random_solution,
    solve,
    solves,
)

__all__ = [
    "DEFAULT_GIVENS",
    "MIN_GIVENS",
    "count_guesses",
    "count_solutions",
    "generate",
    "is_valid_solution",
    "make_puzzle",
    "solve",
    "solves",
]

DEFAULT_GIVENS = {4: (6, 8), 6: (14, 18), 9: (30, 36)}
MIN_GIVENS = {4: 4, 6: 8, 9: 17}  # proven minima for a unique solution
# What random clue removal reaches in practice (measured: 9×9 minimal puzzles land at 22-28).
TYPICAL_FLOOR = {4: 5, 6: 10, 9: 24}
ATTEMPTS_PER_PUZZLE = 50


def generate(
    count: int | None = None,
    size: int = 9,
    seed: int = 0,
    givens: int | tuple[int, int] | str | None = None,
    test_fraction: float = 0.1,
    val_fraction: float = 0.0,
    max_givens: int | None = None,
    min_guesses: int = 0,
    input: str | None = None,
    min_rating: int | None = None,
    split: str | None = None,
    **_: object,
) -> pa.Table:
    """``count`` distinct size×size puzzles with unique solutions (default 1000; from
    ``input``: all its puzzles), in TASK_SCHEMA."""
    n = size
    box_shape(n)  # validates the side
    if count is not None and count < 1:
        raise ValueError(f"sudoku needs count >= 1, got {count}")
    for name, fraction in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"sudoku: {name} must be in [0, 1), got {fraction}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"sudoku: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if input is not None:
        if n != 9 or givens is not None or max_givens is not None or min_guesses:
            raise ValueError("sudoku: a CSV input is 9x9 as published; drop size/givens options")
        puzzles, solutions, lines = read_sudoku_csv(input, count, seed, min_rating)
        ids = [f"sudoku-csv/{Path(input).stem}/{line}" for line in lines]
    else:
        if min_rating is not None:
            raise ValueError("sudoku: min_rating filters a CSV input; generated puzzles have none")
        count = 1000 if count is None else count
        puzzles, solutions = _hard_or_plain_puzzles(count, n, givens, max_givens, min_guesses, seed)
        ids = [f"sudoku{n}-{seed}-{i:06d}" for i in range(count)]
    count = len(puzzles)
    groups = [_solution_group(solution, n) for solution in solutions]
    splits = (
        [split] * count
        if split is not None
        else _split_by_group(groups, test_fraction, val_fraction, seed)
    )
    tok = SymbolTokenizer(n + 1)
    return pa.table(
        {
            "task_id": ids,
            "task_type": ["grid"] * count,
            "source": ["sudoku"] * count,
            "group_id": groups,
            "split": splits,
            "input": list(tok.encode(np.array(puzzles))),
            "target": list(tok.encode(np.array(solutions))),
            "height": np.full(count, n, dtype=np.int32),
            "width": np.full(count, n, dtype=np.int32),
            "num_symbols": np.full(count, n + 1, dtype=np.int32),
        },
        schema=TASK_SCHEMA,
    )


def make_puzzle(n: int, givens: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """One (puzzle, solution) pair, row-major, with exactly ``givens`` clues."""
    for _ in range(ATTEMPTS_PER_PUZZLE):
        solution = random_solution(n, rng)
        puzzle = _remove_clues(solution, n, givens, rng)
        if puzzle is not None:
            return puzzle, solution
    raise ValueError(
        f"sudoku: could not reach {givens} givens for {n}x{n} in {ATTEMPTS_PER_PUZZLE} attempts;"
        f" random clue removal rarely goes below about {TYPICAL_FLOOR[n]} givens,"
        f" ask for more givens"
    )


def _remove_clues(solution: list[int], n: int, givens: int, rng: random.Random) -> list[int] | None:
    """Blank cells in random order while the solution stays unique; None if stuck above."""
    cells = list(solution)
    order = list(range(n * n))
    rng.shuffle(order)
    left = n * n
    for cell in order:
        if left == givens:
            break
        digit = cells[cell]
        cells[cell] = 0
        # Unique before, so unique after iff no solution puts another digit here.
        if has_other_solution(cells, n, cell, digit):
            cells[cell] = digit
        else:
            left -= 1
    return cells if left == givens else None


def _hard_or_plain_puzzles(
    count: int,
    n: int,
    givens: int | tuple[int, int] | str | None,
    max_givens: int | None,
    min_guesses: int,
    seed: int,
) -> tuple[list[list[int]], list[list[int]]]:
    if min_guesses < 0:
        raise ValueError(f"sudoku: min_guesses must be >= 0, got {min_guesses}")
    if max_givens is None:
        low, high = _givens_range(givens, n)
        make = None
    else:
        if givens is not None:
            raise ValueError("sudoku: give either givens or max_givens, not both")
        if not MIN_GIVENS[n] <= max_givens <= n * n:
            raise ValueError(
                f"sudoku: max_givens must be in [{MIN_GIVENS[n]}, {n * n}] for {n}x{n},"
                f" got {max_givens}"
            )
        low = high = max_givens

        def make(n: int, _: int, rng: random.Random) -> tuple[list[int], list[int]]:
            return sudoku_minimal.make_minimal_puzzle(n, max_givens, rng)

    return _distinct_puzzles(count, n, low, high, seed, make, min_guesses)


def _givens_range(givens: int | tuple[int, int] | str | None, n: int) -> tuple[int, int]:
    if givens is None:
        return DEFAULT_GIVENS[n]
    if isinstance(givens, str):
        try:
            parts = [int(part) for part in givens.split("-")]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            raise ValueError(f"sudoku: givens must be N or LOW-HIGH, got {givens!r}")
        low, high = parts[0], parts[-1]
    elif isinstance(givens, int):
        low = high = givens
    else:
        low, high = givens
    if not MIN_GIVENS[n] <= low <= high <= n * n:
        raise ValueError(
            f"sudoku: givens {low}..{high} impossible for {n}x{n}: a unique solution needs at"
            f" least {MIN_GIVENS[n]} givens and there are {n * n} cells"
        )
    return low, high


def _distinct_puzzles(
    count: int,
    n: int,
    low: int,
    high: int,
    seed: int,
    make: Callable[[int, int, random.Random], tuple[list[int], list[int]]] | None = None,
    min_guesses: int = 0,
) -> tuple[list[list[int]], list[list[int]]]:
    seen: set[tuple[int, ...]] = set()
    puzzles: list[list[int]] = []
    solutions: list[list[int]] = []
    attempt = 0
    while len(puzzles) < count:
        # One generator per (seed, index, retry): puzzle i does not depend on count.
        rng = random.Random(f"sudoku-{n}-{seed}-{len(puzzles)}-{attempt}")
        puzzle, solution = (make or make_puzzle)(n, rng.randint(low, high), rng)
        if tuple(puzzle) in seen or (min_guesses and count_guesses(puzzle, n) < min_guesses):
            attempt += 1
            if attempt > 100 * count:
                raise ValueError(f"sudoku: could not find {count} distinct {n}x{n} puzzles")
            continue
        seen.add(tuple(puzzle))
        puzzles.append(puzzle)
        solutions.append(solution)
    return puzzles, solutions


def canonical_solution(solution: list[int]) -> bytes:
    """The solution with digits renamed in order of first appearance (relabelling-invariant)."""
    names: dict[int, int] = {}
    return bytes(names.setdefault(d, len(names) + 1) for d in solution)


def _solution_group(solution: list[int], n: int) -> str:
    return f"sudoku{n}-{hashlib.sha1(canonical_solution(solution)).hexdigest()[:12]}"


def _split_by_group(
    groups: list[str], test_fraction: float, val_fraction: float, seed: int
) -> list[str]:
    """Whole groups to "test", then "val", until each holds its fraction of the rows."""
    sizes: dict[str, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    order = sorted(sizes)
    random.Random(f"sudoku-split-{seed}").shuffle(order)
    split_of: dict[str, str] = {}
    remaining = list(order)
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        wanted, taken = round(len(groups) * fraction), 0
        while taken < wanted and len(remaining) > 1:  # training always keeps a group
            group = remaining.pop()
            split_of[group] = split
            taken += sizes[group]
    return [split_of.get(group, "train") for group in groups]
