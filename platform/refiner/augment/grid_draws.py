"""The transform drawn for each row of a grid group (dihedral element, placement,
input shift, colour relabelling), from the row's counter-based seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refiner.augment.counter_rng import integers_below, uniforms
from refiner.augment.grid_geometry import GridGeometry
from refiner.augment.input_only import nonzero_offsets, shift_reach
from refiner.augment.rows import RowPlan
from refiner.augment.symmetry import (
    components_drawn,
    dihedral_bits,
    dihedral_shape,
    draw_dihedral,
    draw_relabelling,
)


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
