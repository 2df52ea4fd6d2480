"""Where each grid task's blocks are, and the compact transformed copies of them.

Per task (see refiner.augment.grid for the two layouts): the block of each canvas
(input, target), its corner and whether the task is EOS-marked; tasks bucketed by their
compact size (block plus border, rounded up to a multiple of BUCKET); and each block under
each dihedral element, small, with its EOS border redrawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refiner.augment.batch import TaskGroup
from refiner.augment.symmetry import dihedral_bits, dihedral_shape
from refiner.data.tokenizers import EOS, PAD

BUCKET = 4  # compact grid sides are rounded up to this


@dataclass
class GridGeometry:
    """Per task: layout and where the block of each canvas (0 input, 1 target) is."""

    eos_marked: np.ndarray  # bool [T]
    top: np.ndarray  # int64 [T], shared by both canvases
    left: np.ndarray  # int64 [T]
    block_h: np.ndarray  # int64 [T, 2]
    block_w: np.ndarray  # int64 [T, 2]


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


def size_buckets(
    geometry: GridGeometry, transposes: bool
) -> tuple[np.ndarray, list[tuple[int, int]]]:
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


def subset_geometry(geometry: GridGeometry, tasks: np.ndarray) -> GridGeometry:
    """The geometry of `tasks` only."""
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
