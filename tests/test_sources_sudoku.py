"""Sudoku: the solver, unique-solution puzzles, difficulty and solution-disjoint splits."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refiner.data.tokenizers import NUM_SPECIAL, SymbolTokenizer
from refiner.tasks.io import validate_table
from refiner.tasks.sources import sudoku
from refiner.tasks.sources.sudoku import canonical_solution, count_solutions, solve, solves
from refiner.tasks.sources.sudoku_solver import (
    box_shape,
    has_other_solution,
    is_valid_solution,
    random_solution,
)

# A well-known 9×9 puzzle with a unique solution, and that solution.
PUZZLE = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def digits(text: str) -> list[int]:
    return [int(ch) for ch in text]


def decode(ids, n: int) -> np.ndarray:
    return SymbolTokenizer(n + 1).decode(np.asarray(ids)).reshape(n, n)


def test_solver_finds_the_unique_solution_in_the_input_shape():
    (found,) = solve(np.array(digits(PUZZLE)).reshape(9, 9), 9)
    assert found.shape == (9, 9)
    assert found.ravel().tolist() == digits(SOLUTION)
    assert count_solutions(digits(PUZZLE), 9) == 1


def test_solver_counts_up_to_the_limit():
    empty = [0] * 81
    assert count_solutions(empty, 9, limit=2) == 2
    assert len(solve(empty, 9, limit=5)) == 5
    assert count_solutions([0] * 16, 4, limit=1000) == 288  # there are 288 4×4 sudokus


def test_solver_rejects_contradictions_and_bad_input():
    broken = digits(PUZZLE)
    broken[1] = 5  # two 5s in the first row
    assert solve(broken, 9) == []
    with pytest.raises(ValueError, match="81 cells"):
        solve([0] * 80, 9)
    with pytest.raises(ValueError, match="0 \\(blank\\) or 1..4"):
        solve([5] + [0] * 15, 4)
    with pytest.raises(ValueError, match="side must be one of"):
        box_shape(5)


def test_is_valid_solution_checks_rows_columns_and_boxes():
    grid = np.array(digits(SOLUTION)).reshape(9, 9)
    assert is_valid_solution(grid, 9)
    assert not is_valid_solution(np.zeros((9, 9), dtype=int), 9)
    swapped = grid.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]  # rows fine, columns broken
    assert not is_valid_solution(swapped, 9)
    # Latin square whose 2×3 boxes are wrong: rows and columns alone are not enough.
    latin = np.array([[(r + c) % 6 + 1 for c in range(6)] for r in range(6)])
    assert not is_valid_solution(latin, 6)
    assert not is_valid_solution(grid[:8], 9)
    assert solves(digits(PUZZLE), grid, 9)
    assert not solves(digits(PUZZLE), swapped, 9)


@pytest.mark.parametrize("n", [4, 6, 9])
def test_random_solutions_are_valid_and_varied(n):
    rng = random.Random(0)
    grids = [random_solution(n, rng) for _ in range(10)]
    assert all(is_valid_solution(g, n) for g in grids)
    assert len({canonical_solution(g) for g in grids}) > 1


def test_has_other_solution_matches_counting():
    cells = digits(PUZZLE)
    cells_removed = list(cells)
    cells_removed[0] = 0
    assert not has_other_solution(cells_removed, 9, 0, 5)
    assert count_solutions(cells_removed, 9) == 1


@pytest.mark.parametrize("n,count", [(4, 40), (6, 40), (9, 40)])
def test_every_generated_puzzle_has_one_solution_its_target(n, count):
    table = sudoku.generate(count, size=n, seed=7)
    validate_table(table)
    low, high = sudoku.DEFAULT_GIVENS[n]
    for row in table.to_pylist():
        puzzle, target = decode(row["input"], n), decode(row["target"], n)
        assert low <= np.count_nonzero(puzzle) <= high
        solutions = solve(puzzle, n, limit=2)
        assert len(solutions) == 1
        assert (solutions[0] == target).all()
        assert solves(puzzle, target, n)
        assert row["num_symbols"] == n + 1 and row["height"] == row["width"] == n
        assert row["task_type"] == "grid" and row["source"] == "sudoku"
    puzzles = {tuple(r) for r in table.column("input").to_pylist()}
    assert len(puzzles) == count  # distinct puzzles


def test_givens_option_sets_difficulty():
    table = sudoku.generate(10, size=9, seed=1, givens=26)
    assert {int(np.count_nonzero(decode(ids, 9))) for ids in table.column("input").to_pylist()} == {
        26
    }
    ranged = sudoku.generate(10, size=6, seed=1, givens="12-13")
    counts = {int(np.count_nonzero(decode(ids, 6))) for ids in ranged.column("input").to_pylist()}
    assert counts <= {12, 13}


@pytest.mark.parametrize(
    "n,givens,match",
    [
        (9, 16, "at least 17 givens"),
        (6, 7, "at least 8 givens"),
        (4, 17, "there are 16 cells"),
        (9, "many", "givens must be N or LOW-HIGH"),
    ],
)
def test_impossible_givens_are_refused(n, givens, match):
    with pytest.raises(ValueError, match=match):
        sudoku.generate(5, size=n, givens=givens)


def test_unreachable_givens_give_a_clear_error(monkeypatch):
    monkeypatch.setattr(sudoku, "ATTEMPTS_PER_PUZZLE", 2)
    with pytest.raises(ValueError, match="could not reach 17 givens .* ask for more givens"):
        sudoku.generate(1, size=9, givens=17)


@pytest.mark.parametrize("n", [4, 6, 9])
def test_test_solutions_are_never_seen_in_training(n):
    table = sudoku.generate(60, size=n, seed=3, test_fraction=0.2, val_fraction=0.1)
    splits = table.column("split").to_pylist()
    assert {"train", "test"} <= set(splits)
    canon = {"train": set(), "val": set(), "test": set()}
    for split, ids in zip(splits, table.column("target").to_pylist(), strict=True):
        canon[split].add(canonical_solution(decode(ids, n).ravel().tolist()))
    assert not canon["test"] & canon["train"]
    assert not canon["val"] & canon["train"]
    assert not canon["test"] & canon["val"]
    groups = {}
    for split, group in zip(splits, table.column("group_id").to_pylist(), strict=True):
        groups.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in groups.values())


def test_canonical_form_ignores_digit_relabelling():
    grid = digits(SOLUTION)
    relabel = {d: (d % 9) + 1 for d in range(1, 10)}
    assert canonical_solution(grid) == canonical_solution([relabel[d] for d in grid])


def test_generation_is_deterministic_and_prefix_stable():
    a = sudoku.generate(12, size=6, seed=5)
    assert a.equals(sudoku.generate(12, size=6, seed=5))
    assert not a.equals(sudoku.generate(12, size=6, seed=6))
    b = sudoku.generate(20, size=6, seed=5)
    assert a.column("input").to_pylist() == b.column("input").to_pylist()[:12]


def test_tokens_use_the_shared_vocabulary():
    table = sudoku.generate(5, size=4, seed=0)
    flat = np.concatenate([np.asarray(x) for x in table.column("input").to_pylist()])
    assert flat.min() >= NUM_SPECIAL and flat.max() <= NUM_SPECIAL + 4
