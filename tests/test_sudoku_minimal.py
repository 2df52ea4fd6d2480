"""Hard sudoku: minimal puzzles under 24 givens keep a unique solution; the guess count."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refiner.data.tokenizers import NUM_SPECIAL
from refiner.tasks.sources import load_source
from refiner.tasks.sources.sudoku_minimal import givens, make_minimal_puzzle, minimise
from refiner.tasks.sources.sudoku_solver import (
    count_guesses,
    count_solutions,
    has_other_solution,
    random_solution,
    solves,
)


@pytest.mark.parametrize("seed", range(4))
def test_minimal_puzzles_reach_22_givens_with_a_unique_solution(seed):
    puzzle, solution = make_minimal_puzzle(9, 22, random.Random(seed))
    assert givens(puzzle) <= 22
    assert count_solutions(puzzle, 9, limit=2) == 1
    assert solves(puzzle, solution, 9)
    for cell, digit in enumerate(puzzle):  # minimal: every clue is needed
        if digit:
            without = list(puzzle)
            without[cell] = 0
            assert has_other_solution(without, 9, cell, digit)


def test_minimise_never_loses_uniqueness():
    rng = random.Random(3)
    solution = random_solution(6, rng)
    puzzle = minimise(solution, 6, rng)
    assert givens(puzzle) < 36 and count_solutions(puzzle, 6) == 1


def test_guess_count_is_zero_for_singles_and_grows_with_fewer_givens():
    rng = random.Random(0)
    solution = random_solution(9, rng)
    one_blank = list(solution)
    one_blank[0] = 0
    assert count_guesses(one_blank, 9) == 0
    hard = [count_guesses(make_minimal_puzzle(9, 21, random.Random(s))[0], 9) for s in range(6)]
    assert max(hard) > 0  # a plain solver has to guess on some minimal puzzles
    empty_cells = [0] * 81
    assert count_guesses(empty_cells, 9) == 0  # the empty grid: digits in order never fail


def test_sudoku_source_hard_options():
    table = load_source("sudoku", count=4, size=9, seed=1, max_givens=22, min_guesses=1)
    for ids in table.column("input").to_pylist():
        cells = np.array(ids) - NUM_SPECIAL
        assert (cells > 0).sum() <= 22
        assert count_guesses(cells, 9) >= 1
    again = load_source("sudoku", count=4, size=9, seed=1, max_givens=22, min_guesses=1)
    assert table.equals(again)
    with pytest.raises(ValueError, match="either givens or max_givens"):
        load_source("sudoku", count=2, size=9, givens=30, max_givens=22)
    with pytest.raises(ValueError, match="max_givens must be in"):
        load_source("sudoku", count=2, size=9, max_givens=12)
