"""Sudoku (grid rows with source "sudoku"): transforms of the sudoku symmetry group.

An n×n sudoku has boxes of ``box_rows × box_cols`` (4: 2×2, 6: 2×3, 9: 3×3): rows come in
bands of ``box_rows``, columns in stacks of ``box_cols``. These keep every row, column and
box a row, column or box, so a valid solution stays valid and still solves the
transformed puzzle (blank = symbol 0 stays blank):

- ``paraphrase``: digit relabelling of 1..n (a fraction f of the digits shuffled).
- ``format_variation``: each component drawn with probability f: 0 band permutation,
  1 stack permutation, 2 rows within each band, 3 columns within each stack, 4 transpose
  (only when boxes are square; with probability 1/2 when drawn). Streams
  "format_variation/{bands,stacks,rows,cols,transpose}".

The layout is ``out = T^t(G[rowmap][:, colmap])`` with
``rowmap[b*box_rows + p] = bands[b]*box_rows + rows[b, p]`` (likewise columns).
``position_shift`` rolls the input cyclically on both axes (the grid fills its canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refiner.augment.batch import TaskGroup
from refiner.augment.counter_rng import uniforms
from refiner.augment.input_only import noise_and_mask, shift_offsets
from refiner.augment.rows import RowPlan
from refiner.augment.symmetry import components_drawn, draw_relabelling, permutations_or_identity
from refiner.augment.tables import gather_rows, relabel_table, token_dtype
from refiner.data.tokenizers import NUM_SPECIAL

LAYOUT_COMPONENTS = 5


def box_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a box: the most square factorisation with rows <= columns."""
    rows = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    if rows == 1:
        raise ValueError(f"a {n}x{n} sudoku has no box shape")
    return rows, n // rows


@dataclass
class SudokuLayout:
    row_map: np.ndarray  # int64 [N, n]: output row i (before transposing) reads row_map[i]
    col_map: np.ndarray  # int64 [N, n]
    transpose: np.ndarray  # bool [N]


def draw_layout(plan: RowPlan, n: int) -> SudokuLayout | None:
    """The rows' layout elements, or None when format_variation is off."""
    strength = plan.strength("format_variation")
    if strength is None:
        return None
    box_rows, box_cols = box_shape(n)
    seeds, rows = plan.seeds, len(plan)
    drawn = components_drawn(seeds, strength, LAYOUT_COMPONENTS)
    bands = permutations_or_identity(seeds, drawn[:, 0], "format_variation/bands", n // box_rows)
    stacks = permutations_or_identity(seeds, drawn[:, 1], "format_variation/stacks", n // box_cols)
    within_rows = _within(seeds, drawn[:, 2], "format_variation/rows", n // box_rows, box_rows)
    within_cols = _within(seeds, drawn[:, 3], "format_variation/cols", n // box_cols, box_cols)
    transpose = drawn[:, 4] & (uniforms(seeds, "format_variation/transpose", 1)[:, 0] < 0.5)
    transpose &= box_rows == box_cols
    row_map = (bands[:, :, None] * box_rows + within_rows).reshape(rows, n)
    col_map = (stacks[:, :, None] * box_cols + within_cols).reshape(rows, n)
    return SudokuLayout(row_map, col_map, transpose)


def _within(
    seeds: np.ndarray, drawn: np.ndarray, stream: str, groups: int, size: int
) -> np.ndarray:
    """Per-group permutations ``[N, groups, size]`` (one stream, draws in group order)."""
    keys = uniforms(seeds, stream, groups * size).reshape(len(seeds), groups, size)
    perm = np.argsort(keys, axis=2, kind="stable")
    return np.where(drawn[:, None, None], perm, np.arange(size)[None, None, :])


def identity_layout(rows: int, n: int) -> SudokuLayout:
    ident = np.broadcast_to(np.arange(n), (rows, n))
    return SudokuLayout(ident, ident, np.zeros(rows, dtype=bool))


def source_cells(
    layout: SudokuLayout,
    n: int,
    shift_rows: np.ndarray | None = None,
    shift_cols: np.ndarray | None = None,
) -> np.ndarray:
    """int64 ``[N, n*n]``: the source cell of each output cell, optionally rolled.

    Transposing swaps which map indexes output rows, so ``src = P[i] + Q[j]`` with
    ``(P, Q) = (row_map*n, col_map)`` or ``(col_map, row_map*n)``. A roll of the output by
    (sy, sx) shifts P and Q cyclically.
    """
    tr = layout.transpose[:, None]
    first = np.where(tr, layout.col_map, layout.row_map * n)
    second = np.where(tr, layout.row_map * n, layout.col_map)
    if shift_rows is not None and shift_cols is not None:  # given together
        first = _roll_maps(first, shift_rows)
        second = _roll_maps(second, shift_cols)
    rows = len(first)
    return (first[:, :, None] + second[:, None, :]).reshape(rows, n * n)


def inverse_maps(maps: np.ndarray) -> np.ndarray:
    """Per-row inverse permutations (a scatter, cheaper than argsort)."""
    inverse = np.empty_like(maps)
    np.put_along_axis(inverse, maps, np.arange(maps.shape[1])[None, :], axis=1)
    return inverse


def target_cells(
    layout: SudokuLayout,
    n: int,
    cells: np.ndarray,
    rows: np.ndarray,
    row_inv: np.ndarray,
    col_inv: np.ndarray,
    shift_rows: np.ndarray | None = None,
    shift_cols: np.ndarray | None = None,
) -> np.ndarray:
    """Where source cells ``cells`` (of rows ``rows``) land in the output (forward map)."""
    r, c = np.divmod(cells, n)
    i = row_inv[rows, r]
    j = col_inv[rows, c]
    tr = layout.transpose[rows]
    i, j = np.where(tr, j, i), np.where(tr, i, j)
    if shift_rows is not None and shift_cols is not None:  # given together
        i = (i + shift_rows[rows]) % n
        j = (j + shift_cols[rows]) % n
    return i * n + j


def _roll_maps(maps: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    n = maps.shape[1]
    return np.take_along_axis(maps, (np.arange(n)[None, :] - offsets[:, None]) % n, axis=1)


def augment_sudoku(
    group: TaskGroup, plan: RowPlan, out_inputs: np.ndarray, out_targets: np.ndarray
) -> None:
    """Write the group's augmented rows into ``out_inputs``/``out_targets`` (int32 ``[N, n*n]``)."""
    n = _check(group)
    rows = len(plan)
    width = NUM_SPECIAL + n + 1
    largest = max(width - 1, NUM_SPECIAL + int(group.num_symbols.max()) - 1)  # noise symbols too
    dtype = token_dtype(largest)
    puzzles = group.inputs.astype(dtype)
    solutions = group.targets.astype(dtype)
    layout = draw_layout(plan, n) or identity_layout(rows, n)
    shift_rows = shift_offsets(plan, np.full(rows, n), axis=0)
    shift_cols = shift_offsets(plan, np.full(rows, n), axis=1)
    target_src = source_cells(layout, n)
    if shift_rows is None:
        input_src = target_src.copy()  # gather_rows consumes its index array
    else:
        input_src = source_cells(layout, n, shift_rows, shift_cols)
    inputs = gather_rows(puzzles, plan.task, input_src)
    targets = gather_rows(solutions, plan.task, target_src)
    strength = plan.strength("paraphrase")
    if strength is not None:
        perm = draw_relabelling(plan.seeds, strength, np.full(rows, n), n)
        table = relabel_table(perm, width, dtype)
        row_index = np.arange(rows)
        inputs = gather_rows(table, row_index, inputs)
        targets = gather_rows(table, row_index, targets)
    content, counts = group.content_positions()
    all_edits = noise_and_mask(plan, counts[plan.task], group.num_symbols[plan.task])
    if all_edits:
        row_inv, col_inv = inverse_maps(layout.row_map), inverse_maps(layout.col_map)
    for edits in all_edits:
        cells = content[plan.task[edits.rows], edits.choice]
        landing = target_cells(
            layout, n, cells, edits.rows, row_inv, col_inv, shift_rows, shift_cols
        )
        inputs[edits.rows, landing] = edits.values
    out_inputs[...] = inputs
    out_targets[...] = targets


def _check(group: TaskGroup) -> int:
    n = group.height
    if group.width != n:
        raise ValueError(
            f"augment: sudoku task {group.task_ids[0]!r}: grid is {group.height}x{group.width},"
            " not square"
        )
    try:
        box_shape(n)
    except ValueError as error:
        raise ValueError(f"augment: sudoku task {group.task_ids[0]!r}: {error}") from None
    for name, tokens in (("input", group.inputs), ("target", group.targets)):
        bad = np.flatnonzero(((tokens < NUM_SPECIAL) | (tokens > NUM_SPECIAL + n)).any(axis=1))
        if bad.size:
            raise ValueError(
                f"augment: sudoku task {group.task_ids[bad[0]]!r}: {name} holds a token outside"
                f" the digits 0..{n} (ids {NUM_SPECIAL}..{NUM_SPECIAL + n})"
            )
    return n
