"""Minimal sudoku puzzles with few givens (the "hard" end: about 22 for 9×9).

Removing clues in random order until none can go yields a *minimal* puzzle (every
clue needed), but one that usually keeps 23-27 givens for 9×9. To go lower, a local
search perturbs a minimal puzzle: drop one clue, add back from the solution clues at
cells where a competing solution differs (until the solution is unique again, never the
dropped cell), and minimise again. The result replaces the current puzzle when it has no
more givens, so the walk drifts down through equally small puzzles to smaller ones.
The solution never changes and uniqueness is proved by the solver at every step.
"""

from __future__ import annotations

import random

from refiner.tasks.sources.sudoku_solver import has_other_solution, random_solution, solve

MOVES_PER_PUZZLE = 400  # perturbations tried before giving up on one solution grid
ATTEMPTS_PER_PUZZLE = 20  # fresh solution grids tried before the generator gives up


def minimise(cells: list[int], n: int, rng: random.Random) -> list[int]:
    """Blank every clue (random order) whose removal keeps the solution unique."""
    cells = list(cells)
    order = [i for i, value in enumerate(cells) if value]
    rng.shuffle(order)
    for cell in order:
        digit = cells[cell]
        cells[cell] = 0
        if has_other_solution(cells, n, cell, digit):
            cells[cell] = digit
    return cells


def givens(cells: list[int]) -> int:
    return sum(1 for value in cells if value)


def perturb(puzzle: list[int], solution: list[int], n: int, rng: random.Random) -> list[int]:
    """One move of the search: drop a clue, restore uniqueness elsewhere, minimise."""
    candidate = list(puzzle)
    dropped = rng.choice([i for i, value in enumerate(candidate) if value])
    candidate[dropped] = 0
    while True:
        found = solve(candidate, n, limit=2)
        if len(found) == 1:
            return minimise(candidate, n, rng)
        other = next(s for s in (f.reshape(-1).tolist() for f in found) if s != solution)
        differ = [
            i for i in range(n * n) if other[i] != solution[i] and not candidate[i] and i != dropped
        ]
        cell = rng.choice(differ) if differ else dropped
        candidate[cell] = solution[cell]


def make_minimal_puzzle(n: int, max_givens: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """A (puzzle, solution) pair with a unique solution and at most ``max_givens`` givens."""
    for _ in range(ATTEMPTS_PER_PUZZLE):
        solution = random_solution(n, rng)
        puzzle = minimise(solution, n, rng)
        for _ in range(MOVES_PER_PUZZLE):
            if givens(puzzle) <= max_givens:
                return puzzle, solution
            candidate = perturb(puzzle, solution, n, rng)
            if givens(candidate) <= givens(puzzle):
                puzzle = candidate
        if givens(puzzle) <= max_givens:
            return puzzle, solution
    raise ValueError(
        f"sudoku: no {n}x{n} puzzle with at most {max_givens} givens found in"
        f" {ATTEMPTS_PER_PUZZLE} grids x {MOVES_PER_PUZZLE} moves; ask for more givens"
    )
