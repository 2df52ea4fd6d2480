"""Per-row lookup tables applied with one flat ``np.take`` (no per-row Python loop)."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from refiner.data.tokenizers import NUM_SPECIAL


def token_dtype(largest: int) -> np.dtype:
    """The smallest unsigned dtype holding token ids up to ``largest`` (less memory traffic)."""
    for dtype in (np.uint8, np.uint16):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def relabel_table(perm: np.ndarray, width: int, dtype: DTypeLike) -> np.ndarray:
    """``[N, width]`` token map: symbol s in 1..m goes to ``1 + perm[s-1]``; others fixed.

    Symbol 0 (background colour, blank cell) and the special tokens never move.
    """
    rows, m = perm.shape
    table = np.broadcast_to(np.arange(width, dtype=dtype), (rows, width)).copy()
    table[:, NUM_SPECIAL + 1 : NUM_SPECIAL + 1 + m] = NUM_SPECIAL + 1 + perm
    return table


def invert_relabel(perm: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(perm)
    np.put_along_axis(inverse, perm, np.arange(perm.shape[1])[None, :], axis=1)
    return inverse


def gather_rows(table: np.ndarray, row_of: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``table[row_of[r], cells[r, ...]]`` for every r, as one flat take.

    ``cells`` is consumed when it already is an intp array (the offsets are added in place).
    """
    offsets = (row_of.astype(np.intp) * table.shape[1]).reshape((-1,) + (1,) * (cells.ndim - 1))
    flat = cells if cells.dtype == np.intp else cells.astype(np.intp)
    flat += offsets
    return np.take(table.reshape(-1), flat)
