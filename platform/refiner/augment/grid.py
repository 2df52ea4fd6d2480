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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from refiner.augment.batch import TaskGroup
from refiner.augment.counter_rng import integers_below, uniforms
from refiner.augment.input_only import noise_and_mask, nonzero_offsets, shift_reach
from refiner.augment.rows import RowPlan
from refiner.augment.symmetry import (
    DIHEDRAL_ALL,
    DIHEDRAL_SHAPE_PRESERVING,
    components_drawn,
    dihedral_bits,
    dihedral_shape,
    dihedral_target,
    draw_dihedral,
    draw_relabelling,
)
from refiner.augment.tables import relabel_table, token_dtype
from refiner.data.tokenizers import EOS, NUM_SPECIAL, PAD

BUCKET = 4  # compact grid sides are rounded up to this


@dataclass
class GridGeometry:
    """Per task: layout and where the block of each canvas (0 input, 1 target) is."""

    eos_marked: np.ndarray  # bool [T]
    top: np.ndarray  # int64 [T], shared by both canvases
    left: np.ndarray  # int64 [T]
    block_h: np.ndarray  # int64 [T, 2]
    block_w: np.ndarray  # int64 [T, 2]


@dataclass
class GridParams:
    """Per row: the transform drawn for it."""

    element: np.ndarray  # dihedral element [N]
    anchor_y: np.ndarray  # top-left of the transformed block(s) [N]
    anchor_x: np.ndarray
    input_y: np.ndarray  # top-left of the input block after position_shift (mod H/W)
    input_x: np.ndarray
    wrap_y: np.ndarray  # bool [N]: the input rolls on this axis
    wrap_x: np.ndarray
    relabel: np.ndarray | None  # [N, m] permutation of colours 1..m


def canvases_of(group: TaskGroup) -> np.ndarray:
    """``[T, 2, H, W]`` token canvases (input, target)."""
    tasks = len(group)
    shape = (tasks, group.height, group.width)
    return np.stack([group.inputs.reshape(shape), group.targets.reshape(shape)], axis=1)


def grid_geometry(canvases: np.ndarray) -> GridGeometry:
    """Blocks of every task's canvases (see the module docstring for the two layouts)."""
    tasks, _, height, width = canvases.shape
    marks = (canvases != PAD) & (canvases != EOS)
    rows_any, cols_any = marks.any(axis=3), marks.any(axis=2)
    has = rows_any.any(axis=2)
    first_row = np.where(has, rows_any.argmax(axis=2), height)
    last_row = np.where(has, height - 1 - rows_any[..., ::-1].argmax(axis=2), -1)
    first_col = np.where(has, cols_any.argmax(axis=2), width)
    last_col = np.where(has, width - 1 - cols_any[..., ::-1].argmax(axis=2), -1)
    any_content = has.any(axis=1)
    top = np.where(any_content, first_row.min(axis=1), 0)
    left = np.where(any_content, first_col.min(axis=1), 0)
    eos_marked = (canvases == EOS).any(axis=(1, 2, 3))
    joint_h = np.maximum(last_row.max(axis=1) - top + 1, 0)
    joint_w = np.maximum(last_col.max(axis=1) - left + 1, 0)
    own_h = np.where(has, last_row - top[:, None] + 1, 0)
    own_w = np.where(has, last_col - left[:, None] + 1, 0)
    block_h = np.where(eos_marked[:, None], own_h, joint_h[:, None])
    block_w = np.where(eos_marked[:, None], own_w, joint_w[:, None])
    return GridGeometry(
        eos_marked,
        top.astype(np.int64),
        left.astype(np.int64),
        block_h.astype(np.int64),
        block_w.astype(np.int64),
    )


def draw_element(plan: RowPlan, square: bool) -> tuple[np.ndarray, np.ndarray]:
    """Dihedral element per row and whether translation (component 1) is drawn."""
    strength = plan.strength("format_variation")
    if strength is None:
        rows = len(plan)
        return np.zeros(rows, dtype=np.int64), np.zeros(rows, dtype=bool)
    drawn = components_drawn(plan.seeds, strength, 2)
    return draw_dihedral(plan.seeds, drawn[:, 0], square), drawn[:, 1]


def draw_colours(plan: RowPlan, num_symbols: np.ndarray) -> np.ndarray | None:
    """Colour permutations ``[N, m]`` (m = largest alphabet - 1), None when paraphrase is off."""
    strength = plan.strength("paraphrase")
    colours = int(num_symbols.max()) - 1
    if strength is None or colours < 1:
        return None
    return draw_relabelling(plan.seeds, strength, num_symbols - 1, colours)


def draw_params(
    plan: RowPlan, geometry: GridGeometry, height: int, width: int, num_symbols: np.ndarray
) -> GridParams:
    task = plan.task
    element, translate = draw_element(plan, height == width)
    block_h, block_w = dihedral_shape(
        geometry.block_h[task], geometry.block_w[task], element[:, None]
    )
    # A canvas without content (only PAD/EOS) has an empty block: place it as one cell,
    # so that every position drawn below stays inside the canvas.
    block_h, block_w = np.maximum(block_h, 1), np.maximum(block_w, 1)
    span_h, span_w = block_h.max(axis=1), block_w.max(axis=1)
    room_y, room_x = height - span_h, width - span_w
    top, left = geometry.top[task], geometry.left[task]
    # Without translation: EOS-marked grids keep their corner; plain blocks go where the
    # canvas transform takes them (transpose swaps the axes, flips mirror the position).
    transpose, flip_rows, flip_cols = dihedral_bits(element)
    image_y = np.where(transpose == 1, left, top)
    image_x = np.where(transpose == 1, top, left)
    image_y = np.where(flip_rows == 1, height - image_y - span_h, image_y)
    image_x = np.where(flip_cols == 1, width - image_x - span_w, image_x)
    marked = geometry.eos_marked[task]
    stay_y = np.where(marked, np.minimum(top, room_y), image_y)
    stay_x = np.where(marked, np.minimum(left, room_x), image_x)
    anchor_y, anchor_x = stay_y, stay_x
    if plan.strength("format_variation") is not None:
        u = uniforms(plan.seeds, "format_variation/translate", 2)
        anchor_y = np.where(translate, integers_below(u[:, 0], room_y + 1), stay_y)
        anchor_x = np.where(translate, integers_below(u[:, 1], room_x + 1), stay_x)
    strength = plan.strength("position_shift")
    if strength is None:
        input_y, input_x, wrap_y, wrap_x = (
            anchor_y,
            anchor_x,
            np.zeros_like(translate),
            np.zeros_like(translate),
        )
    else:
        u = uniforms(plan.seeds, "position_shift/offset", 2)
        input_y, wrap_y = _input_shift(strength, u[:, 0], anchor_y, block_h[:, 0], height)
        input_x, wrap_x = _input_shift(strength, u[:, 1], anchor_x, block_w[:, 0], width)
    return GridParams(
        element,
        anchor_y,
        anchor_x,
        input_y,
        input_x,
        wrap_y,
        wrap_x,
        draw_colours(plan, num_symbols),
    )


def _input_shift(
    strength: np.ndarray, u: np.ndarray, anchor: np.ndarray, extent: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Input position on one axis after position_shift, and whether it wraps (rolls)."""
    reach = shift_reach(strength, side)
    full = extent == side
    rolled = nonzero_offsets(u, -reach, reach) % side
    low = np.maximum(-anchor, -reach)
    high = np.minimum(side - anchor - extent, reach)
    moved = anchor + nonzero_offsets(u, low, high)
    return np.where(full, rolled, moved), full


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
    bucket_of, sizes = _buckets(geometry, transposes=elements == DIHEDRAL_ALL)
    canvas_out = (_canvas_view(out_inputs, height, width), _canvas_view(out_targets, height, width))
    row_bucket = bucket_of[plan.task]
    for bucket, (size_h, size_w) in enumerate(sizes):
        tasks = np.flatnonzero(bucket_of == bucket)
        local = np.full(len(group), -1, dtype=np.int64)
        local[tasks] = np.arange(len(tasks))
        variants = compact_variants(
            canvases[tasks], _subset(geometry, tasks), elements, size_h, size_w, height, width
        )
        _check_eos_layout(
            variants, canvases[tasks], _subset(geometry, tasks), group.task_ids[tasks]
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


def _canvas_view(out: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` view of ``[N, H*W]`` rows (writes must reach ``out``)."""
    canvases = out.reshape(len(out), height, width)
    if not np.shares_memory(canvases, out):
        raise AssertionError("grid output rows must be viewable as canvases")
    return canvases


def _buckets(geometry: GridGeometry, transposes: bool) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Bucket index per task and the (rounded) compact size of each bucket."""
    need_h = geometry.block_h.max(axis=1) + 1  # + the EOS border
    need_w = geometry.block_w.max(axis=1) + 1
    if transposes:
        need_h = need_w = np.maximum(need_h, need_w)
    size_h = -(-need_h // BUCKET) * BUCKET
    size_w = -(-need_w // BUCKET) * BUCKET
    keys = sorted(set(zip(size_h.tolist(), size_w.tolist(), strict=True)))
    index = {key: i for i, key in enumerate(keys)}
    bucket_of = np.array(
        [index[k] for k in zip(size_h.tolist(), size_w.tolist(), strict=True)], dtype=np.int64
    )
    return bucket_of, keys


def _subset(geometry: GridGeometry, tasks: np.ndarray) -> GridGeometry:
    return GridGeometry(
        geometry.eos_marked[tasks],
        geometry.top[tasks],
        geometry.left[tasks],
        geometry.block_h[tasks],
        geometry.block_w[tasks],
    )


def compact_variants(
    canvases: np.ndarray,
    geometry: GridGeometry,
    elements: int,
    size_h: int,
    size_w: int,
    height: int,
    width: int,
) -> np.ndarray:
    """``[T, elements, 2, size_h, size_w]``: each block under each dihedral element, at the
    origin, with its EOS border for EOS-marked tasks (only where the canvas has room)."""
    tasks = len(canvases)
    i = np.arange(size_h)[:, None]
    j = np.arange(size_w)[None, :]
    element = np.arange(elements)[None, :, None, None, None]
    block_h = geometry.block_h[:, None, :, None, None]
    block_w = geometry.block_w[:, None, :, None, None]
    transpose, flip_rows, flip_cols = dihedral_bits(element)
    out_h, out_w = dihedral_shape(block_h, block_w, element)
    # Output (i, j) reads block cell (i1, j1), or (j1, i1) after a transpose; each part
    # depends on one axis only, so only the final combinations are full-size.
    i1 = np.where(flip_rows == 1, out_h - 1 - i, i)
    j1 = np.where(flip_cols == 1, out_w - 1 - j, j)
    corner = (
        (np.arange(tasks)[:, None, None, None, None] * 2 + np.arange(2)[None, None, :, None, None])
        * (height * width)
        + geometry.top[:, None, None, None, None] * width
        + geometry.left[:, None, None, None, None]
    )
    cells = np.where(transpose == 1, j1 * width + i1, i1 * width + j1) + corner
    values = np.take(canvases.reshape(-1), cells, mode="clip")  # outside cells: fixed below
    inside = (i < out_h) & (j < out_w)
    marked = geometry.eos_marked[:, None, None, None, None]
    border = marked & (
        ((i == out_h) & (j < out_w) & (out_h < height))
        | ((j == out_w) & (i < out_h) & (out_w < width))
    )
    return np.where(inside, values, np.where(border, EOS, PAD)).astype(canvases.dtype)


def write_blocks(
    out: np.ndarray,
    runs: list[tuple[int, int, int]],
    blocks: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    eos_column: np.ndarray,
    wrap_y: np.ndarray | None = None,
    wrap_x: np.ndarray | None = None,
) -> None:
    """Fill the ``runs`` of ``out`` (int32 ``[N, H, W]``) with PAD and block r at (ys[r], xs[r]).

    ``eos_column[r]`` is the height of block r's EOS column (0 if it has none). Rows whose
    input rolls take ``place_blocks``; the others ``place_in_rows``, whose canvases are
    contiguous, so the final int32 cast runs at full speed.
    """
    _, height, width = out.shape
    rolls = np.zeros(len(blocks), dtype=bool)
    for wrap in (wrap_y, wrap_x):
        if wrap is not None:
            rolls |= wrap
    placed = place_in_rows(blocks, ys, xs, height, width, eos_column)
    if rolls.any():
        assert wrap_y is not None and wrap_x is not None  # both exist whenever one does
        rolled = np.flatnonzero(rolls)
        placed[rolled] = place_blocks(
            blocks[rolled], ys[rolled], xs[rolled], height, width, wrap_y[rolled], wrap_x[rolled]
        )  # (both wraps come from the input's shift)
    for start, stop, first in runs:
        np.copyto(out[start:stop], placed[first : first + stop - start])


def place_in_rows(
    blocks: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    height: int,
    width: int,
    eos_column: np.ndarray,
) -> np.ndarray:
    """``[N, H, W]`` view (valid until the next call), each canvas contiguous: block r
    with its top-left at (ys[r], xs[r]), nothing wrapping.

    Canvases are laid out row after row with spare rows below each, and a block row is
    one memcpy that may run past the right edge into the start of the next canvas row.
    What runs over is the block's padding (PAD, left of where that row's content starts,
    so harmless) or, for a grid touching the right edge, its EOS column, which is
    cleared afterwards; what passes the bottom lands in the spare rows.
    """
    rows, size_h, size_w = blocks.shape
    if size_w > width:  # then the part past the edge is padding: never written
        blocks = blocks[:, :, :width]
        size_w = width
    spare = size_h + 1
    canvases = _zeroed_scratch("rows", (rows, height + spare, width), blocks.dtype)
    s_row, s_y, s_x = canvases.strides
    row_item = np.dtype((np.void, size_w * blocks.itemsize))
    windows = np.ndarray(
        (rows, height + 1, width, size_h),
        dtype=row_item,
        buffer=canvases,
        strides=(s_row, s_y, s_x, s_y),
    )
    windows[np.arange(rows), ys, xs] = np.ascontiguousarray(blocks).view(row_item)[..., 0]
    spilled = np.flatnonzero((eos_column > 0) & (xs + size_w > width) & (xs > 0))
    if spilled.size:
        # The EOS column at x + w == W spilled to column 0 of the rows below: clear it.
        lines = np.arange(height + spare)[None, :]
        top = ys[spilled, None]
        below = (lines > top) & (lines <= top + eos_column[spilled, None])
        canvases[spilled, :, 0] = np.where(below, PAD, canvases[spilled, :, 0])
    return canvases[:, :height, :]


def place_blocks(
    blocks: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    height: int,
    width: int,
    wrap_y: np.ndarray | None = None,
    wrap_x: np.ndarray | None = None,
) -> np.ndarray:
    """``[N, H, W]`` view (valid until the next call): block r with its top-left at
    (ys[r], xs[r]); what passes the bottom or right edge is dropped, or, on rows that
    wrap, folded back (a roll)."""
    rows, size_h, size_w = blocks.shape
    extended = _zeroed_scratch("blocks", (rows, height + size_h, width + size_w), blocks.dtype)
    s_row, s_y, s_x = extended.strides
    # Block rows as single (void) items: one memcpy per block row, not per cell.
    row_item = np.dtype((np.void, size_w * blocks.itemsize))
    windows = np.ndarray(
        (rows, height + 1, width + 1, size_h),
        dtype=row_item,
        buffer=extended,
        strides=(s_row, s_y, s_x, s_y),
    )
    windows[np.arange(rows), ys, xs] = np.ascontiguousarray(blocks).view(row_item)[..., 0]
    if wrap_x is not None and wrap_x.any():
        fold, k = np.flatnonzero(wrap_x), min(size_w, width)
        extended[fold, :, :k] |= extended[fold, :, width : width + k]
    if wrap_y is not None and wrap_y.any():
        fold, k = np.flatnonzero(wrap_y), min(size_h, height)
        extended[fold, :k, :width] |= extended[fold, height : height + k, :width]
    return extended[:, :height, :width]


_SCRATCH = threading.local()


def _zeroed_scratch(slot: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """A zero-filled array in a per-thread buffer reused across calls.

    Placement needs a large zeroed buffer per call; fresh allocations of that size cost a
    page fault per 4 KiB on every call, refilling a warm buffer does not. The result is
    only valid until the next call for the same ``slot`` (results are copied out at once).
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < size:
        buffer = buffers[slot] = np.empty(size, dtype=np.uint8)
    view = buffer[:size].view(dtype).reshape(shape)
    view.fill(0)
    return view


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
