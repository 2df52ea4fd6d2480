"""Label-consistent transforms keep every pair correct, and each has an exact inverse.

Depends on ``refiner.tasks.sources.sudoku_solver`` (is_valid_solution, solves) and
``refiner.tasks.sources.arc`` (place_in_canvas, extract_from_canvas), no fallbacks.
"""

from __future__ import annotations

import numpy as np
import pytest
from augment_tasks import (
    arc_rows,
    as_batch,
    parity_rows,
    plain_grid_rows,
    sequence_rows,
    sudoku_rows,
    table,
    text_rows,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.augment import AugmentationSpec, augment_batch
from refiner.augment.inverse import invert_label_consistent
from refiner.data.tokenizers import EOS, NUM_SPECIAL, PAD, ByteTokenizer, pad_to_length
from refiner.tasks.sources import arc, sudoku
from refiner.tasks.sources.parity import prefix_parity
from refiner.tasks.sources.sudoku_solver import is_valid_solution, solves

SETTINGS = settings(max_examples=12, deadline=None)
LABEL_CONSISTENT = ("paraphrase", "format_variation")
FRACTIONS = st.sampled_from([0.0, 0.3, 0.7, 1.0])
SEEDS = st.integers(0, 2**40)


def spec_for(paraphrase: float, layout: float, count: int = 24) -> AugmentationSpec:
    return AugmentationSpec(
        strategies=LABEL_CONSISTENT,
        count=count,
        intensity={"paraphrase": paraphrase, "format_variation": layout},
    )


def originals(tasks, count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each task's input/target padded to ``width``, repeated ``count`` times."""
    repeat = np.repeat(np.arange(tasks.num_rows), count)
    inputs = pad_to_length(tasks.column("input").to_pylist(), width)[repeat]
    targets = pad_to_length(tasks.column("target").to_pylist(), width)[repeat]
    return inputs, targets


def assert_inverse_recovers(tasks, spec, seed, **inverse_options):
    out = augment_batch(as_batch(tasks), spec, seed)
    restored = invert_label_consistent(out, spec, **inverse_options)
    inputs, targets = originals(tasks, spec.count, out["input"].shape[1])
    np.testing.assert_array_equal(restored["input"], inputs)
    np.testing.assert_array_equal(restored["target"], targets)
    return out


# ---- sudoku ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_sudoku():
    """Puzzles with unique solutions from the real source (4, 6 and 9)."""
    return {n: sudoku.generate(2, size=n, seed=5) for n in (4, 6, 9)}


@SETTINGS
@given(n=st.sampled_from([4, 6, 9]), seed=SEEDS, paraphrase=FRACTIONS, layout=FRACTIONS)
def test_sudoku_stays_valid_and_solved(n, seed, paraphrase, layout):
    tasks = table(sudoku_rows(n, 2, seed % 1000))
    out = assert_inverse_recovers(tasks, spec_for(paraphrase, layout), seed)
    for puzzle, solution in zip(out["input"], out["target"], strict=True):
        digits, givens = solution[: n * n] - NUM_SPECIAL, puzzle[: n * n] - NUM_SPECIAL
        assert is_valid_solution(digits, n)
        assert solves(givens, digits, n)  # every given agrees with the solution


def test_generated_sudoku_keeps_a_unique_solution(generated_sudoku):
    for n, tasks in generated_sudoku.items():
        out = assert_inverse_recovers(tasks, spec_for(1.0, 1.0, count=8), seed=n)
        blanks = np.repeat(
            [np.sum(np.asarray(p) == NUM_SPECIAL) for p in tasks.column("input").to_pylist()], 8
        )
        for puzzle, solution, blank in zip(out["input"], out["target"], blanks, strict=True):
            givens = puzzle - NUM_SPECIAL
            assert (givens == 0).sum() == blank  # blanks stay blanks, digits stay digits
            found = sudoku.solve(givens, n, limit=2)
            assert len(found) == 1 and (found[0] == solution - NUM_SPECIAL).all()


def test_six_by_six_never_transposes():
    # 2x3 boxes: a transpose would turn boxes into 3x2 ones; rows stay rows.
    tasks = table(sudoku_rows(6, 1, 3))
    out = augment_batch(as_batch(tasks), spec_for(0.0, 1.0, count=64), 1)
    original = np.asarray(tasks.column("target").to_pylist()[0]).reshape(6, 6)
    original_rows = {frozenset(row) for row in original}
    for solution in out["target"]:
        assert {frozenset(row) for row in solution.reshape(6, 6)} == original_rows


# ---- ARC and other grids -------------------------------------------------------------------


def assert_valid_canvas(canvas: np.ndarray, size: int) -> None:
    """A grid at some corner, EOS right of it and below it where room, PAD elsewhere."""
    grid = arc.extract_from_canvas(canvas)
    content = np.argwhere(canvas.reshape(size, size) >= NUM_SPECIAL)
    top, left = content.min(axis=0)
    rebuilt = arc.place_in_canvas(grid, size, offset=(int(top), int(left)))
    np.testing.assert_array_equal(rebuilt.reshape(-1), canvas)


@SETTINGS
@given(size=st.sampled_from([12, 30]), seed=SEEDS, paraphrase=FRACTIONS, layout=FRACTIONS)
def test_arc_pairs_get_one_transform_and_stay_valid(size, seed, paraphrase, layout):
    tasks = table(arc_rows(size, 6))
    out = assert_inverse_recovers(tasks, spec_for(paraphrase, layout, count=16), seed)
    for source, target in zip(out["input"], out["target"], strict=True):
        assert_valid_canvas(source, size)
        assert_valid_canvas(target, size)
        # Input and output share their corner (HRM/TRM place both grids at one offset).
        corners = [
            np.argwhere(c.reshape(size, size) >= NUM_SPECIAL).min(axis=0) for c in (source, target)
        ]
        np.testing.assert_array_equal(corners[0], corners[1])


def test_arc_colour_zero_and_specials_never_move():
    tasks = table(arc_rows(30, 6))
    out = augment_batch(as_batch(tasks), spec_for(1.0, 0.0, count=20), 3)
    inputs, _ = originals(tasks, 20, out["input"].shape[1])
    background = inputs == NUM_SPECIAL
    np.testing.assert_array_equal(out["input"] == NUM_SPECIAL, background)
    np.testing.assert_array_equal(out["input"] == EOS, inputs == EOS)
    np.testing.assert_array_equal(out["input"] == PAD, inputs == PAD)


@SETTINGS
@given(shape=st.sampled_from([(6, 6), (5, 8)]), seed=SEEDS, paraphrase=FRACTIONS, layout=FRACTIONS)
def test_plain_grids_move_input_and_target_together(shape, seed, paraphrase, layout):
    rows = plain_grid_rows(*shape, 4, seed % 1000)
    copies = [{**row, "task_id": row["task_id"] + "-copy", "target": row["input"]} for row in rows]
    tasks = table(rows + copies)
    canvases = [np.asarray(r["input"]).reshape(shape) != PAD for r in rows + copies]
    anchors = np.repeat([np.argwhere(c).min(axis=0) for c in canvases], 16, axis=0)
    out = assert_inverse_recovers(
        tasks, spec_for(paraphrase, layout, count=16), seed, anchors=anchors
    )
    copy_rows = np.array([t.endswith("-copy") for t in out["task_id"]])
    np.testing.assert_array_equal(out["input"][copy_rows], out["target"][copy_rows])


# ---- sequences and text -----------------------------------------------------------------------


@SETTINGS
@given(length=st.integers(1, 24), seed=SEEDS, paraphrase=FRACTIONS)
def test_parity_target_is_prefix_parity_of_augmented_input(length, seed, paraphrase):
    tasks = table(parity_rows(length, 3, seed % 1000))
    out = assert_inverse_recovers(tasks, spec_for(paraphrase, 1.0), seed)
    bits = out["input"][:, :length] - NUM_SPECIAL
    np.testing.assert_array_equal(out["target"][:, :length] - NUM_SPECIAL, prefix_parity(bits))
    strategies = set(out["aug_strategies"][out["aug_index"] > 0].tolist())
    assert strategies == {"paraphrase"}  # format_variation is a no-op for parity: not listed


def test_generic_sequences_have_no_label_consistent_transform():
    tasks = table(sequence_rows(3))
    out = augment_batch(as_batch(tasks), spec_for(1.0, 1.0), 0)
    inputs, targets = originals(tasks, 24, out["input"].shape[1])
    np.testing.assert_array_equal(out["input"], inputs)
    np.testing.assert_array_equal(out["target"], targets)
    assert set(out["aug_strategies"].tolist()) == {""}
    assert not out["aug_intensity"].any()


@SETTINGS
@given(seed=SEEDS, paraphrase=FRACTIONS, layout=FRACTIONS)
def test_text_relabelling_is_consistent_and_keeps_utf8(seed, paraphrase, layout):
    tasks = table(text_rows())
    out = assert_inverse_recovers(tasks, spec_for(paraphrase, layout), seed)
    tok = ByteTokenizer()
    for source, target, task_id in zip(out["input"], out["target"], out["task_id"], strict=True):
        for ids in (source, target):
            tok_bytes = (ids[ids != PAD] - NUM_SPECIAL).astype(np.uint8).tobytes()
            tok_bytes.decode("utf-8")  # strict: still valid UTF-8
        if task_id == "text-2":  # a copy task stays a copy
            assert tok.decode(source) == tok.decode(target)
