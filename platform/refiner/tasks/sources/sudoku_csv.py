"""Sudoku-Extreme-style CSV files -> 9×9 puzzles for the sudoku source.

Columns ``source,question,answer,rating``; ``question`` is 81 characters over ``1-9``
with ``.`` or ``0`` for a blank, ``answer`` 81 digits. A kept puzzle's answer must
complete its question into a valid sudoku (checked; uniqueness is the publisher's claim
and is not re-proved: that is a solver call per puzzle). ``min_rating`` keeps the harder
ones, ``count`` samples that many with ``seed``.
"""

from __future__ import annotations

import os

from refiner.tasks.sources.grid_csv import read_puzzle_csv
from refiner.tasks.sources.sudoku_solver import solves

SIDE = 9
QUESTION_CHARS = ".0123456789"
ANSWER_CHARS = "123456789"


def read_sudoku_csv(
    path: str | os.PathLike,
    count: int | None = None,
    seed: int = 0,
    min_rating: int | None = None,
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """(puzzles, solutions, line numbers), cells 0 (blank) or 1..9, row-major."""
    puzzles = read_puzzle_csv(
        path,
        SIDE * SIDE,
        QUESTION_CHARS,
        ANSWER_CHARS,
        check=_answer_solves,
        min_rating=min_rating,
        count=count,
        seed=seed,
    )
    return (
        [_cells(p.question) for p in puzzles],
        [_cells(p.answer) for p in puzzles],
        [p.line for p in puzzles],
    )


def _cells(text: str) -> list[int]:
    return [0 if ch == "." else int(ch) for ch in text]


def _answer_solves(question: str, answer: str) -> list[tuple[str, str]]:
    if solves(_cells(question), _cells(answer), SIDE):
        return []
    return [("answer", "is not a valid sudoku that keeps every given of the question")]
