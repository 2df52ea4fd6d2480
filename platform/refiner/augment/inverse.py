"""Inverses of the label-consistent transforms: recover a task from an augmented row.

Only the augmented row is needed (its ``aug_seed`` and ``aug_intensity`` recompute the
transform it got): the dihedral element, colour/digit/letter relabelling, sudoku
layout, parity flips and text byte map are all bijections. The target is always
recovered; the input too when the row had no input-only strategy (noise and masking
destroy information by design).

One thing a grid row does not carry is where its content sat before a translation:
``anchors`` (top-left of the grid, or of the joint content box for plain grids) default
to (0, 0), which is right for ARC canvases and for grids that fill their canvas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from refiner.augment.batch import task_kind
from refiner.augment.counter_rng import group_copy_seeds
from refiner.augment.grid_draws import draw_colours, draw_element
from refiner.augment.grid_geometry import BUCKET, compact_variants, grid_geometry
from refiner.augment.grid_placement import place_blocks
from refiner.augment.rows import RowPlan, plan_rows
from refiner.augment.sequence import apply_parity_flips, parity_flips
from refiner.augment.spec import AugmentationSpec
from refiner.augment.strategies import (
    GRID,
    LABEL_CONSISTENT_STRATEGIES,
    PARITY,
    STRATEGIES,
    SUDOKU,
    TEXT,
)
from refiner.augment.sudoku import draw_layout, identity_layout, source_cells
from refiner.augment.symmetry import (
    DIHEDRAL_ALL,
    DIHEDRAL_SHAPE_PRESERVING,
    dihedral_inverse,
    draw_relabelling,
)
from refiner.augment.tables import gather_rows, invert_relabel, relabel_table
from refiner.augment.text import apply_byte_map, draw_byte_map, invert_byte_map
from refiner.data.tokenizers import EOS, NUM_SPECIAL, PAD


def invert_label_consistent(
    augmented: Mapping[str, np.ndarray],
    spec: AugmentationSpec | None = None,
    anchors: np.ndarray | None = None,
    eos_marked: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``{"input", "target"}`` (int32, the augmented width) with paraphrase and
    format_variation undone, for rows as ``augment_batch`` returns them.

    ``spec`` gives the exact intensities (``aug_intensity`` holds them as float32, which
    can differ from the configured value in the last bits); ``anchors`` is ``[N, 2]``.
    ``eos_marked`` says which grid rows use EOS borders: a grid moved into the bottom-right
    corner has none left, so by default a row counts as marked when it holds an EOS or its
    source is ARC ("arc..."), as the built-in ARC source always marks.
    """
    inputs = np.array(augmented["input"], dtype=np.int32)
    targets = np.array(augmented["target"], dtype=np.int32)
    rows = len(inputs)
    sources = augmented.get("source", np.full(rows, "", dtype=object))
    kinds = np.array(
        [task_kind(str(t), str(s)) for t, s in zip(augmented["task_type"], sources, strict=True)]
    )
    anchors = np.zeros((rows, 2), dtype=np.int64) if anchors is None else np.asarray(anchors)
    if eos_marked is None:
        from_source = np.array([str(s).startswith("arc") for s in sources], dtype=bool)
        eos_marked = from_source | (inputs == EOS).any(axis=1) | (targets == EOS).any(axis=1)
    plan = _plan(augmented, spec)
    heights = np.nan_to_num(
        np.asarray(augmented.get("height", np.zeros(rows)), dtype=np.float64)
    ).astype(int)
    widths = np.nan_to_num(
        np.asarray(augmented.get("width", np.zeros(rows)), dtype=np.float64)
    ).astype(int)
    num_symbols = np.asarray(augmented.get("num_symbols", np.full(rows, 256)), dtype=np.int64)
    for key in sorted(set(zip(kinds.tolist(), heights.tolist(), widths.tolist(), strict=True))):
        kind, height, width = key
        members = np.flatnonzero((kinds == kind) & (heights == height) & (widths == width))
        sub = plan.select(members)
        if kind == SUDOKU:
            _invert_sudoku(sub, inputs, targets, members, height)
        elif kind == GRID:
            _invert_grid(
                sub,
                inputs,
                targets,
                members,
                height,
                width,
                num_symbols[members],
                anchors[members],
                np.asarray(eos_marked, dtype=bool)[members],
            )
        elif kind == PARITY:
            lengths = _lengths(inputs[members])
            flips = parity_flips(sub, lengths, inputs.shape[1])
            if flips is not None:
                inputs[members], targets[members] = apply_parity_flips(
                    inputs[members], targets[members], flips
                )
        elif kind == TEXT:
            byte_map = draw_byte_map(sub)
            if byte_map is not None:
                inverse = invert_byte_map(byte_map)
                inputs[members] = apply_byte_map(inverse, inputs[members])
                targets[members] = apply_byte_map(inverse, targets[members])
    return {"input": inputs, "target": targets}


def grid_copy_transforms(
    group_ids: Sequence[str],
    spec: AugmentationSpec,
    seed: int,
    copies: int,
    num_symbols: int,
    square: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The transform copy ``i`` of every grid of a puzzle gets under ``spec.seed_by_group``:
    the dihedral element ``[G, copies]`` and the colour permutation ``[G, copies, m]`` (None
    without paraphrase), for copies ``0 .. copies-1`` of each group in ``group_ids``.

    With per-augmentation puzzle identities (``refiner.model.puzzles``) identity ``i`` of a puzzle
    was trained on exactly this transform of its pairs, so a test input shown under
    identity ``i`` must be shown in this frame (``refiner.evaluate.voting.copy_views``). Where the
    grid sits in the canvas (translation) is left out: it does not change the grid.
    """
    if not spec.seed_by_group:
        raise ValueError("copy transforms are fixed per puzzle only with seed_by_group")
    groups = len(group_ids)
    plan = plan_rows(group_copy_seeds(seed, group_ids, copies), spec)
    element, _ = draw_element(plan, square)
    perm = draw_colours(plan, np.full(len(plan), num_symbols, dtype=np.int64))
    return (
        element.reshape(groups, copies),
        None if perm is None else perm.reshape(groups, copies, -1),
    )


def _plan(augmented: Mapping[str, np.ndarray], spec: AugmentationSpec | None) -> RowPlan:
    """A plan carrying each row's seed and label-consistent intensities (0 = not applied)."""
    seeds = np.asarray(augmented["aug_seed"]).astype(np.int64).view(np.uint64)
    intensity = np.asarray(augmented["aug_intensity"], dtype=np.float64)
    rows = len(seeds)
    strengths: dict[str, np.ndarray] = {}
    for name in LABEL_CONSISTENT_STRATEGIES:
        recorded = intensity[:, STRATEGIES.index(name)]
        strengths[name] = (
            recorded if spec is None else np.where(recorded > 0, spec.intensity[name], 0.0)
        )
    return RowPlan(
        np.arange(rows), np.zeros(rows, dtype=np.int64), seeds, np.ones(rows, dtype=bool), strengths
    )


def _lengths(tokens: np.ndarray) -> np.ndarray:
    filled = tokens != PAD
    return np.where(filled.any(axis=1), tokens.shape[1] - filled[:, ::-1].argmax(axis=1), 0)


def _invert_sudoku(
    plan: RowPlan, inputs: np.ndarray, targets: np.ndarray, members: np.ndarray, n: int
) -> None:
    layout = draw_layout(plan, n) or identity_layout(len(plan), n)
    sources = source_cells(layout, n)
    strength = plan.strength("paraphrase")  # None: the digits were not relabelled
    table = None
    if strength is not None:
        perm = draw_relabelling(plan.seeds, strength, np.full(len(plan), n), n)
        table = relabel_table(invert_relabel(perm), NUM_SPECIAL + n + 1, np.int32)
    for tokens in (inputs, targets):
        cells = tokens[members, : n * n]
        restored = np.empty_like(cells)
        np.put_along_axis(restored, sources, cells, axis=1)  # output cell k came from sources[k]
        if table is not None:
            restored = gather_rows(table, np.arange(len(plan)), restored)
        tokens[members, : n * n] = restored


def _invert_grid(
    plan: RowPlan,
    inputs: np.ndarray,
    targets: np.ndarray,
    members: np.ndarray,
    height: int,
    width: int,
    num_symbols: np.ndarray,
    anchors: np.ndarray,
    eos_marked: np.ndarray,
) -> None:
    cells = height * width
    canvases = np.stack([inputs[members, :cells], targets[members, :cells]], axis=1)
    canvases = canvases.reshape(len(members), 2, height, width)
    element, _ = draw_element(plan, height == width)
    perm = draw_colours(plan, num_symbols)
    geometry = grid_geometry(canvases)  # the augmented blocks, at their new corner
    geometry.eos_marked = eos_marked
    elements = DIHEDRAL_ALL if height == width else DIHEDRAL_SHAPE_PRESERVING
    side = int(max(geometry.block_h.max(initial=0), geometry.block_w.max(initial=0))) + 1
    size = -(-side // BUCKET) * BUCKET
    variants = compact_variants(canvases, geometry, elements, size, size, height, width)
    blocks = variants[np.arange(len(members)), dihedral_inverse(element)]
    if perm is not None:
        largest = max(int(canvases.max()), NUM_SPECIAL + int(num_symbols.max()) - 1)
        table = relabel_table(invert_relabel(perm), largest + 1, np.int32)
        blocks = gather_rows(table, np.arange(len(members)), blocks)
    for canvas, tokens in ((0, inputs), (1, targets)):
        placed = place_blocks(blocks[:, canvas], anchors[:, 0], anchors[:, 1], height, width)
        tokens[members, :cells] = placed.reshape(len(members), cells)
