"""Grids other than sudoku: ARC canvases and generic H×W canvases.

Two layouts are recognised per task:

- **EOS-marked** (ARC, as ``refiner.tasks.sources.arc.place_in_canvas`` writes them): each
  canvas holds one grid with its top-left at a corner shared by input and target, EOS on
  the row below it and the column right of it (within its span, where the canvas has
  room), PAD elsewhere. A transform acts on each *grid* (as HRM/TRM do before placing
  it): the grids are transformed, placed at a common new corner, and their EOS border is
  redrawn, so an augmented pair is again a valid canvas pair. (A grid moved against the
  bottom/right edge has no room for that side's EOS, exactly as ``place_in_canvas``.)
- **Plain** (no EOS anywhere): the block is the bounding box of non-PAD content over input
  and target jointly; a dihedral transform acts on the whole canvas, translation moves
  that joint block (nothing wraps, so input and target stay aligned).

Transforms (``format_variation`` components: 0 dihedral element, 1 translation):

- ``paraphrase``: colour relabelling of symbols 1..num_symbols-1 (0 = background, PAD,
  EOS and other specials never change).
- ``format_variation``: one of the 8 dihedral elements (4 shape-preserving ones when the
  canvas is not square), then a uniformly drawn placement of the block(s) among those that
  fit. Without translation EOS-marked grids keep their corner, plain blocks go where the
  canvas transform takes them.
- ``position_shift`` (input only), per axis: if the input's block spans the axis it is
  rolled cyclically, otherwise translated by up to ``K`` cells without leaving the canvas
  (EOS cells may fall off the edge, as they do in ``place_in_canvas``); ``K`` and the
  non-zero offset as in ``input_only`` (a block that fills the canvas but for its border
  may have no room to move on an axis).

Speed: per task, the (up to) 8 transformed grids are built once, small ("compact": block
plus border, rounded up to a multiple of 4; tasks are bucketed by that size). Rows are
sorted by (task, dihedral element), so colours are mapped with one ``np.take`` per run
of rows sharing a grid (at most 8 runs per task, cost growing with the grid, not the
canvas); each block is then placed with one memcpy per block row and the canvas is
cast to int32 once, straight into the output.

The parts: ``grid_geometry`` (blocks, buckets, compact transformed copies), ``grid_draws``
(each row's transform) and ``grid_placement`` (writing blocks into canvases); this module
puts them together and applies the input-only edits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from refiner.augment.batch import TaskGroup
from refiner.augment.grid_draws import GridParams, draw_params
from refiner.augment.grid_geometry import (
    GridGeometry,
    canvases_of,
    compact_variants,
    grid_geometry,
    size_buckets,
    subset_geometry,
)
from refiner.augment.grid_placement import canvas_view, place_blocks, write_blocks
from refiner.augment.input_only import noise_and_mask
from refiner.augment.rows import RowPlan
from refiner.augment.symmetry import (
    DIHEDRAL_ALL,
    DIHEDRAL_SHAPE_PRESERVING,
    dihedral_shape,
    dihedral_target,
)
from refiner.augment.tables import relabel_table, token_dtype
from refiner.data.tokenizers import NUM_SPECIAL


def augment_grids(
    group: TaskGroup, plan: RowPlan, out_inputs: np.ndarray, out_targets: np.ndarray
) -> None:
    """Write the group's augmented rows into ``out_inputs``/``out_targets`` (int32 ``[N, H*W]``)."""
    height, width = group.height, group.width
    canvases = canvases_of(group)
    geometry = grid_geometry(canvases)
    largest = max(int(canvases.max()), NUM_SPECIAL + int(group.num_symbols.max()) - 1)
    dtype = token_dtype(largest)
    canvases = canvases.astype(dtype)
    params = draw_params(plan, geometry, height, width, group.num_symbols[plan.task])
    table_width = largest + 1
    square = height == width
    elements = 1
    if plan.strength("format_variation") is not None:
        elements = DIHEDRAL_ALL if square else DIHEDRAL_SHAPE_PRESERVING
    bucket_of, sizes = size_buckets(geometry, transposes=elements == DIHEDRAL_ALL)
    canvas_out = (canvas_view(out_inputs, height, width), canvas_view(out_targets, height, width))
    row_bucket = bucket_of[plan.task]
    for bucket, (size_h, size_w) in enumerate(sizes):
        tasks = np.flatnonzero(bucket_of == bucket)
        local = np.full(len(group), -1, dtype=np.int64)
        local[tasks] = np.arange(len(tasks))
        variants = compact_variants(
            canvases[tasks],
            subset_geometry(geometry, tasks),
            elements,
            size_h,
            size_w,
            height,
            width,
        )
        _check_eos_layout(
            variants, canvases[tasks], subset_geometry(geometry, tasks), group.task_ids[tasks]
        )
        members = np.flatnonzero(row_bucket == bucket)  # whole tasks, in row order
        # Rows sorted by (task, element): each run shares one transformed grid.
        key = local[plan.task[members]] * elements + params.element[members]
        order = np.argsort(key, kind="stable")
        sorted_blocks = _coloured_blocks(
            variants, key[order], params.relabel, members[order], table_width, dtype
        )
        blocks = np.empty_like(sorted_blocks)
        blocks[order] = sorted_blocks  # back to row order
        runs = _runs(members)
        for canvas, ys, xs, wrap_y, wrap_x in (
            (1, params.anchor_y, params.anchor_x, None, None),
            (0, params.input_y, params.input_x, params.wrap_y, params.wrap_x),
        ):
            task = plan.task[members]
            block_h, block_w = dihedral_shape(
                geometry.block_h[task, canvas],
                geometry.block_w[task, canvas],
                params.element[members],
            )
            write_blocks(
                canvas_out[canvas],
                runs,
                blocks[:, canvas],
                ys[members],
                xs[members],
                np.where(geometry.eos_marked[task] & (block_w < width), block_h, 0),
                None if wrap_y is None else wrap_y[members],
                None if wrap_x is None else wrap_x[members],
            )
    _apply_edits(group, plan, geometry, params, out_inputs, elements)


def _coloured_blocks(
    variants: np.ndarray,
    key: np.ndarray,
    relabel: np.ndarray | None,
    rows: np.ndarray,
    table_width: int,
    dtype: DTypeLike,
) -> np.ndarray:
    """``[R, 2, h, w]`` compact grids of rows sorted by ``key`` (task * elements + element).

    Colours: one ``np.take(row_tables, grid, axis=1)`` per run of rows sharing a grid (at
    most 8 per task), instead of a per-cell index array for every row.
    """
    tasks, elements, _, size_h, size_w = variants.shape
    flat = variants.reshape(tasks * elements, 2 * size_h * size_w)
    if relabel is None:
        return flat[key].reshape(len(key), 2, size_h, size_w)
    tables = relabel_table(relabel[rows], table_width, dtype)
    grids = flat.astype(np.intp)
    blocks = np.empty((len(key), 2 * size_h * size_w), dtype=dtype)
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate(([0], bounds))
    stops = np.concatenate((bounds, [len(key)]))
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        np.take(tables[start:stop], grids[key[start]], axis=1, out=blocks[start:stop], mode="clip")
    return blocks.reshape(len(key), 2, size_h, size_w)


def _runs(members: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, offset in members) of each run of consecutive row indices."""
    breaks = np.flatnonzero(np.diff(members) != 1) + 1
    firsts = np.concatenate(([0], breaks)).tolist()
    lasts = np.concatenate((breaks, [len(members)])).tolist()
    return [
        (int(members[f]), int(members[f]) + (last - f), f)
        for f, last in zip(firsts, lasts, strict=True)
    ]


def _check_eos_layout(
    variants: np.ndarray, canvases: np.ndarray, geometry: GridGeometry, task_ids: np.ndarray
) -> None:
    """EOS-marked tasks must be rebuilt exactly from their blocks (else the layout is unknown)."""
    marked = np.flatnonzero(geometry.eos_marked)
    if not marked.size:
        return
    _, _, height, width = canvases.shape
    for canvas in (0, 1):
        rebuilt = place_blocks(
            variants[marked, 0, canvas], geometry.top[marked], geometry.left[marked], height, width
        )
        bad = np.flatnonzero((rebuilt != canvases[marked, canvas]).any(axis=(1, 2)))
        if bad.size:
            raise ValueError(
                f"augment: grid task {task_ids[marked[bad[0]]]!r} has EOS tokens but is not an"
                " EOS-marked grid pair (grids sharing a top-left corner, EOS on the row below and"
                " the column right, PAD elsewhere, as arc.place_in_canvas writes)"
            )


def _apply_edits(
    group: TaskGroup,
    plan: RowPlan,
    geometry: GridGeometry,
    params: GridParams,
    inputs: np.ndarray,
    elements: int,
) -> None:
    """Noise, then masking, at the input content cells' places in the augmented input."""
    content, counts = group.content_positions()
    edits = noise_and_mask(plan, counts[plan.task], group.num_symbols[plan.task])
    if not edits:
        return
    rows = np.concatenate([e.rows for e in edits])  # noise first: masking overwrites it
    choice = np.concatenate([e.choice for e in edits])
    values = np.concatenate([e.values for e in edits])
    landing = _landing_table(content, geometry, group.width, elements)
    packed = landing[plan.task[rows], params.element[rows], choice]
    y = (params.input_y[rows] + (packed >> _PACK_BITS)) % group.height
    x = (params.input_x[rows] + (packed & _PACK_MASK)) % group.width
    inputs[rows, y * group.width + x] = values


_PACK_BITS = 16
_PACK_MASK = (1 << _PACK_BITS) - 1


def _landing_table(
    content: np.ndarray, geometry: GridGeometry, width: int, elements: int
) -> np.ndarray:
    """int64 ``[T, elements, C]``: where content cell k of a task's input lands inside the
    transformed input block, packed as ``i << 16 | j`` (one gather per edit later)."""
    cell_y, cell_x = np.divmod(content, width)
    block_y = (cell_y - geometry.top[:, None])[:, None, :]
    block_x = (cell_x - geometry.left[:, None])[:, None, :]
    element = np.arange(elements)[None, :, None]
    i, j = dihedral_target(
        block_y,
        block_x,
        geometry.block_h[:, 0, None, None],
        geometry.block_w[:, 0, None, None],
        element,
    )
    return (i << _PACK_BITS) | j
