"""An exact n×n sudoku solver (n = 4, 6, 9): bitmask backtracking, most-constrained cell first.

Cells hold symbols 0..n with 0 = blank. The solver counts solutions up to a limit, which is
all that uniqueness checks need ("is there a second one?"). Also used by the augmentation
engine's property tests to check that transformed puzzles stay valid.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import numpy as np

BOX_SHAPES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}  # (rows, columns) of one box


def box_shape(n: int) -> tuple[int, int]:
    """Rows and columns of a box of the n×n sudoku."""
    if n not in BOX_SHAPES:
        raise ValueError(f"sudoku side must be one of {sorted(BOX_SHAPES)}, got {n}")
    return BOX_SHAPES[n]


@functools.cache
def _geometry(n: int) -> tuple[list[int], list[int], list[int]]:
    """Row, column and box index of every cell (row-major)."""
    box_rows, box_cols = box_shape(n)
    rows = [i // n for i in range(n * n)]
    cols = [i % n for i in range(n * n)]
    boxes = [
        (r // box_rows) * (n // box_cols) + c // box_cols for r, c in zip(rows, cols, strict=True)
    ]
    return rows, cols, boxes


def _as_cells(grid: Sequence[int] | np.ndarray, n: int) -> list[int]:
    arr = np.asarray(grid)
    if arr.size != n * n:
        raise ValueError(f"a {n}x{n} sudoku has {n * n} cells, got {arr.size}")
    cells = arr.reshape(-1).astype(np.int64)
    if cells.min() < 0 or cells.max() > n:
        raise ValueError(
            f"sudoku cells must be 0 (blank) or 1..{n}, got {cells.min()}..{cells.max()}"
        )
    return cells.tolist()


class _Search:
    """Backtracking over the blank cells with row/column/box digit masks (bit d = digit d)."""

    def __init__(self, cells: list[int], n: int) -> None:
        self.n = n
        self.full = (1 << (n + 1)) - 2
        self.row_of, self.col_of, self.box_of = _geometry(n)
        self.cells = cells
        self.rows = [0] * n
        self.cols = [0] * n
        self.boxes = [0] * n
        self.consistent = True
        for i, value in enumerate(cells):
            if value:
                bit = 1 << value
                r, c, b = self.row_of[i], self.col_of[i], self.box_of[i]
                if (self.rows[r] | self.cols[c] | self.boxes[b]) & bit:
                    self.consistent = False
                self.rows[r] |= bit
                self.cols[c] |= bit
                self.boxes[b] |= bit
        self.blanks = [i for i, value in enumerate(cells) if not value]
        self.wrong_guesses = 0  # digits tried at a cell with several candidates that failed

    def run(
        self, limit: int, rng: random.Random | None = None, banned: tuple[int, int] | None = None
    ) -> list[list[int]]:
        """Up to ``limit`` solutions; ``rng`` shuffles digit order; ``banned`` = (cell, digit)
        excluded from that cell (the uniqueness check asks for a solution that differs)."""
        self.solutions: list[list[int]] = []
        if not self.consistent:
            return []
        self.limit = limit
        self.rng = rng
        self.banned_cell, banned_digit = banned if banned else (-1, 0)
        self.banned_bit = 1 << banned_digit if banned else 0
        if banned and self.banned_cell in self.blanks:
            # The banned cell is the likeliest dead end: look at it first.
            self.blanks.remove(self.banned_cell)
            self.blanks.insert(0, self.banned_cell)
        self._descend(0)
        return self.solutions

    def _descend(self, depth: int) -> bool:
        blanks = self.blanks
        if depth == len(blanks):
            self.solutions.append(list(self.cells))
            return len(self.solutions) >= self.limit
        rows, cols, boxes = self.rows, self.cols, self.boxes
        row_of, col_of, box_of = self.row_of, self.col_of, self.box_of
        full, banned_cell = self.full, self.banned_cell
        best, best_mask, best_count = depth, 0, 99
        for j in range(depth, len(blanks)):
            i = blanks[j]
            mask = full & ~(rows[row_of[i]] | cols[col_of[i]] | boxes[box_of[i]])
            if i == banned_cell:
                mask &= ~self.banned_bit
            count = mask.bit_count()
            if count < best_count:
                best, best_mask, best_count = j, mask, count
                if count <= 1:
                    break
        if best_count == 0:
            return False
        blanks[depth], blanks[best] = blanks[best], blanks[depth]
        i = blanks[depth]
        r, c, b = row_of[i], col_of[i], box_of[i]
        bits = []
        mask = best_mask
        while mask:
            bit = mask & -mask
            bits.append(bit)
            mask ^= bit
        if self.rng is not None and len(bits) > 1:
            self.rng.shuffle(bits)
        for bit in bits:
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            self.cells[i] = bit.bit_length() - 1
            done = self._descend(depth + 1)
            if not done and best_count > 1:
                self.wrong_guesses += 1
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
            if done:
                self.cells[i] = 0
                return True
        self.cells[i] = 0
        return False


def solve(grid: Sequence[int] | np.ndarray, n: int, limit: int = 2) -> list[np.ndarray]:
    """Solutions of the puzzle ``grid`` (0 = blank), at most ``limit``, shaped like ``grid``.

    A puzzle has a unique solution exactly when ``len(solve(grid, n, limit=2)) == 1``.
    """
    shape = np.shape(grid)
    found = _Search(_as_cells(grid, n), n).run(limit)
    return [np.array(s, dtype=np.int64).reshape(shape) for s in found]


def count_solutions(grid: Sequence[int] | np.ndarray, n: int, limit: int = 2) -> int:
    """Number of solutions, counted up to ``limit``."""
    return len(_Search(_as_cells(grid, n), n).run(limit))


def count_guesses(grid: Sequence[int] | np.ndarray, n: int) -> int:
    """Difficulty: wrong guesses this plain solver makes before its first solution.

    The solver fills forced cells first (most-constrained cell, digits in increasing
    order) and guesses only where a cell has several candidates; every guess that leads
    to a dead end counts. 0 means the puzzle falls to naked singles alone.
    """
    search = _Search(_as_cells(grid, n), n)
    search.run(1)
    return search.wrong_guesses


def is_valid_solution(grid: Sequence[int] | np.ndarray, n: int) -> bool:
    """Whether ``grid`` is a complete n×n sudoku: every row, column and box holds 1..n."""
    arr = np.asarray(grid)
    if arr.size != n * n or n not in BOX_SHAPES:
        return False
    arr = arr.reshape(n, n)
    box_rows, box_cols = box_shape(n)
    boxes = arr.reshape(n // box_rows, box_rows, n // box_cols, box_cols).transpose(0, 2, 1, 3)
    expected = np.arange(1, n + 1)
    groups = np.concatenate([arr, arr.T, boxes.reshape(n, n)])
    return bool((np.sort(groups, axis=1) == expected).all())


def solves(
    puzzle: Sequence[int] | np.ndarray, solution: Sequence[int] | np.ndarray, n: int
) -> bool:
    """Whether ``solution`` is a valid sudoku that agrees with every given of ``puzzle``."""
    givens = np.asarray(puzzle).reshape(-1)
    filled = np.asarray(solution).reshape(-1)
    if givens.shape != filled.shape or not is_valid_solution(filled, n):
        return False
    return bool(((givens == 0) | (givens == filled)).all())


def random_solution(n: int, rng: random.Random) -> list[int]:
    """A random complete grid: the solver fills an empty grid trying digits in random order.

    Unlike shuffling one base pattern, this reaches essentially different grids, so
    puzzles are not all one grid in disguise.
    """
    cells = [0] * (n * n)
    return _Search(cells, n).run(1, rng=rng)[0]


def has_other_solution(cells: list[int], n: int, cell: int, digit: int) -> bool:
    """Whether the puzzle ``cells`` has a solution with ``digit`` not at ``cell``."""
    return bool(_Search(list(cells), n).run(1, banned=(cell, digit)))
