"""Group elements shared by the kinds: symbol relabellings and the 8 dihedral transforms.

Everything is vectorised over rows and drawn from ``counter_rng`` streams, so the engine
and ``inverse`` recompute the same element from a row seed.

Dihedral element ``d`` in 0..7 has three bits: transpose (4), then flip the rows
(upside down, 1), then flip the columns (left-right, 2). Elements 0..3 keep a
non-square shape; 4..7 swap height and width.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from refiner.augment.counter_rng import integers_below, uniforms

# The dihedral helpers take one element (ints) or one per row (int arrays).
E = TypeVar("E", int, np.ndarray)

DIHEDRAL_ALL = 8
DIHEDRAL_SHAPE_PRESERVING = 4


def subset_permutations(pick: np.ndarray, order: np.ndarray) -> np.ndarray:
    """int64 ``[N, m]`` permutations: the picked elements shuffled among themselves by ``order``.

    ``perm[r, i]`` is the image of element i. Unpicked elements stay fixed; the picked
    ones, in index order, receive the picked ones sorted by ``order`` (ties by index).
    """
    m = pick.shape[1]
    index = np.arange(m)
    positions = np.argsort(~pick, axis=1, kind="stable")  # picked first, in index order
    images = np.argsort(np.where(pick, order, 1.0 + index), axis=1, kind="stable")
    perm = np.empty_like(positions)
    np.put_along_axis(perm, positions, images, axis=1)
    return perm


def draw_relabelling(
    seeds: np.ndarray, fraction: np.ndarray, alphabet: np.ndarray, width: int
) -> np.ndarray:
    """``[N, width]`` permutations of each row's first ``alphabet[r]`` symbols.

    Each symbol is picked with probability ``fraction[r]`` (streams "paraphrase/pick" and
    "paraphrase/order"); fraction 1 gives a uniformly random permutation.
    """
    order = uniforms(seeds, "paraphrase/order", width)
    everything = (fraction >= 1.0) & (alphabet >= width)
    nothing = fraction <= 0.0
    if np.all(everything | nothing):  # the common case, e.g. originals plus f = 1 rows
        # Every symbol picked gives argsort(order), none picked the identity: no pick draws.
        perm = np.argsort(order, axis=1, kind="stable")
        return np.where(nothing[:, None], np.arange(width)[None, :], perm)
    pick = uniforms(seeds, "paraphrase/pick", width) < fraction[:, None]
    pick &= np.arange(width)[None, :] < alphabet[:, None]
    return subset_permutations(pick, order)


def components_drawn(seeds: np.ndarray, probability: np.ndarray, count: int) -> np.ndarray:
    """bool ``[N, count]``: which layout components are drawn (not the identity) per row.

    Component c uses draw c of the stream "format_variation/apply"; the numbering per
    kind is in its module.
    """
    return uniforms(seeds, "format_variation/apply", count) < probability[:, None]


def permutations_or_identity(
    seeds: np.ndarray, drawn: np.ndarray, stream: str, size: int
) -> np.ndarray:
    """int64 ``[N, size]``: a uniform permutation where ``drawn``, else the identity."""
    perm = np.argsort(uniforms(seeds, stream, size), axis=1, kind="stable")
    return np.where(drawn[:, None], perm, np.arange(size)[None, :])


def draw_dihedral(seeds: np.ndarray, drawn: np.ndarray, square: bool) -> np.ndarray:
    """int64 dihedral element per row: uniform over 8 (square) or 4 (shape-preserving)."""
    elements = DIHEDRAL_ALL if square else DIHEDRAL_SHAPE_PRESERVING
    element = integers_below(uniforms(seeds, "format_variation/dihedral", 1)[:, 0], elements)
    return np.where(drawn, element, 0)


def dihedral_bits(d: E) -> tuple[E, E, E]:
    """(transpose, flip_rows, flip_cols) of element(s) d, as 0/1."""
    return (d >> 2) & 1, d & 1, (d >> 1) & 1


def dihedral_inverse(d: E) -> E:
    """The element undoing d: flips are involutions; after a transpose they trade places."""
    transpose, flip_rows, flip_cols = dihedral_bits(d)
    swapped = (transpose << 2) | flip_cols | (flip_rows << 1)
    return (
        np.where(transpose == 1, swapped, d)
        if isinstance(d, np.ndarray)
        else (swapped if transpose else d)
    )


def dihedral_shape(height: E, width: E, d: E) -> tuple[E, E]:
    """Shape of a height×width block after element d."""
    transpose = (d >> 2) & 1
    if isinstance(transpose, np.ndarray):
        return np.where(transpose == 1, width, height), np.where(transpose == 1, height, width)
    return (width, height) if transpose else (height, width)


def dihedral_source(i: E, j: E, height: E, width: E, d: E) -> tuple[np.ndarray, np.ndarray]:
    """Block coordinates that output cell (i, j) of ``d(block)`` comes from."""
    transpose, flip_rows, flip_cols = dihedral_bits(d)
    out_h, out_w = dihedral_shape(height, width, d)
    i1 = np.where(flip_rows == 1, out_h - 1 - i, i)
    j1 = np.where(flip_cols == 1, out_w - 1 - j, j)
    return np.where(transpose == 1, j1, i1), np.where(transpose == 1, i1, j1)


def dihedral_target(si: E, sj: E, height: E, width: E, d: E) -> tuple[np.ndarray, np.ndarray]:
    """Where block cell (si, sj) lands in ``d(block)``."""
    transpose, flip_rows, flip_cols = dihedral_bits(d)
    out_h, out_w = dihedral_shape(height, width, d)
    i1 = np.where(transpose == 1, sj, si)
    j1 = np.where(transpose == 1, si, sj)
    return np.where(flip_rows == 1, out_h - 1 - i1, i1), np.where(
        flip_cols == 1, out_w - 1 - j1, j1
    )


def apply_dihedral_2d(block: np.ndarray, d: int) -> np.ndarray:
    """One 2-D block transformed by element d (plain numpy; reference and tests)."""
    transpose, flip_rows, flip_cols = dihedral_bits(int(d))
    out = block.T if transpose else block
    if flip_rows:
        out = out[::-1, :]
    if flip_cols:
        out = out[:, ::-1]
    return out
