"""Writing blocks into canvases fast: one memcpy per block row into zeroed per-thread
scratch buffers, with rolls (the input's position_shift on a full axis) folded back."""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import DTypeLike

from refiner.data.tokenizers import PAD


def canvas_view(out: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` view of ``[N, H*W]`` rows (writes must reach ``out``)."""
    canvases = out.reshape(len(out), height, width)
    if not np.shares_memory(canvases, out):
        raise AssertionError("grid output rows must be viewable as canvases")
    return canvases


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
