"""Input-only strategies perturb inputs within their stated bounds and never touch targets."""

from __future__ import annotations

import numpy as np
from augment_tasks import (
    arc_rows,
    as_batch,
    mixed_table,
    parity_rows,
    plain_grid_rows,
    sequence_rows,
    sudoku_rows,
    table,
    text_rows,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.augment import INPUT_ONLY_STRATEGIES, STRATEGIES, AugmentationSpec, augment_batch
from refiner.data.tokenizers import MASK, NUM_SPECIAL, PAD, pad_to_length

SETTINGS = settings(max_examples=10, deadline=None)
SEEDS = st.integers(0, 2**40)
COUNT = 20


def originals(tasks, width: int) -> tuple[np.ndarray, np.ndarray]:
    repeat = np.repeat(np.arange(tasks.num_rows), COUNT)
    return (
        pad_to_length(tasks.column("input").to_pylist(), width)[repeat],
        pad_to_length(tasks.column("target").to_pylist(), width)[repeat],
    )


@SETTINGS
@given(
    seed=SEEDS,
    strategies=st.lists(st.sampled_from(INPUT_ONLY_STRATEGIES), min_size=1, unique=True),
    strength=st.floats(0.05, 1.0),
)
def test_input_only_strategies_never_touch_targets(seed, strategies, strength):
    tasks = mixed_table()
    spec = AugmentationSpec(
        strategies=tuple(strategies), count=COUNT, intensity=dict.fromkeys(strategies, strength)
    )
    out = augment_batch(as_batch(tasks), spec, seed)
    _, targets = originals(tasks, out["input"].shape[1])
    np.testing.assert_array_equal(out["target"], targets)


@SETTINGS
@given(seed=SEEDS)
def test_targets_do_not_depend_on_input_only_strategies(seed):
    # Every strategy draws from its own streams: adding noise leaves the pair's transform alone.
    tasks = mixed_table()
    full = augment_batch(as_batch(tasks), AugmentationSpec(count=COUNT), seed)
    label_only = AugmentationSpec(strategies=("paraphrase", "format_variation"), count=COUNT)
    np.testing.assert_array_equal(
        full["target"], augment_batch(as_batch(tasks), label_only, seed)["target"]
    )


@SETTINGS
@given(seed=SEEDS, strength=st.sampled_from([0.1, 0.5, 1.0]))
def test_token_noise_replaces_at_most_the_fraction_with_alphabet_symbols(seed, strength):
    tasks = mixed_table()
    spec = AugmentationSpec(
        strategies=("token_noise",), count=COUNT, intensity={"token_noise": strength}
    )
    out = augment_batch(as_batch(tasks), spec, seed)
    inputs, _ = originals(tasks, out["input"].shape[1])
    alphabet = np.repeat(tasks.column("num_symbols").to_numpy(), COUNT)
    content = inputs >= NUM_SPECIAL
    changed = out["input"] != inputs
    assert not (changed & ~content).any()  # specials and padding untouched
    row_f = out["aug_intensity"][:, STRATEGIES.index("token_noise")]
    assert (row_f <= strength + 1e-6).all()
    assert (changed.sum(axis=1) <= np.floor(row_f * content.sum(axis=1) + 0.5) + 1e-9).all()
    new = np.where(changed, out["input"], NUM_SPECIAL)
    assert ((new >= NUM_SPECIAL) & (new < NUM_SPECIAL + alphabet[:, None])).all()


@SETTINGS
@given(seed=SEEDS, strength=st.sampled_from([0.1, 0.6, 1.0]))
def test_masking_only_writes_mask_on_content(seed, strength):
    tasks = mixed_table()
    spec = AugmentationSpec(strategies=("masking",), count=COUNT, intensity={"masking": strength})
    out = augment_batch(as_batch(tasks), spec, seed)
    inputs, _ = originals(tasks, out["input"].shape[1])
    changed = out["input"] != inputs
    assert (out["input"][changed] == MASK).all()
    assert (inputs[changed] >= NUM_SPECIAL).all()
    if strength >= 0.6:
        assert changed.any()


@SETTINGS
@given(seed=SEEDS)
def test_position_shift_rotates_sequences(seed):
    rows = parity_rows(11, 2, 1) + sequence_rows(2, 2) + text_rows()
    tasks = table(rows)
    spec = AugmentationSpec(
        strategies=("position_shift",), count=COUNT, intensity={"position_shift": 1.0}
    )
    out = augment_batch(as_batch(tasks), spec, seed)
    for row, source in enumerate(out["input"]):
        original = np.asarray(rows[row // COUNT]["input"])
        n = len(original)
        assert (source[n:] == PAD).all()
        rotations = [np.roll(original, k) for k in range(n)]
        assert any((source[:n] == r).all() for r in rotations)


@SETTINGS
@given(seed=SEEDS)
def test_position_shift_moves_grids_inside_the_canvas(seed):
    rows = arc_rows(12, 4) + plain_grid_rows(6, 6, 3, 2)
    tasks = table(rows)
    spec = AugmentationSpec(
        strategies=("position_shift",), count=COUNT, intensity={"position_shift": 0.5}
    )
    out = augment_batch(as_batch(tasks), spec, seed)
    for row, source in enumerate(out["input"]):
        task = rows[row // COUNT]
        side = task["height"]
        original = np.asarray(task["input"]).reshape(side, side)
        shifted = source[: side * side].reshape(side, side)
        # All content survives (nothing wraps unless the content spans that axis) and moves
        # by at most intensity * side; EOS cells may fall off an edge.
        assert sorted(shifted[shifted >= NUM_SPECIAL]) == sorted(original[original >= NUM_SPECIAL])
        assert any(
            _content_moved_by(original, shifted, dy, dx)
            for dy, dx in _candidate_moves(original, shifted, side)
        )


def _content_moved_by(original, shifted, dy, dx) -> bool:
    ys, xs = np.nonzero(original >= NUM_SPECIAL)
    side = original.shape[0]
    return bool((shifted[(ys + dy) % side, (xs + dx) % side] == original[ys, xs]).all())


def _candidate_moves(original, shifted, side):
    """Moves consistent with the bounding boxes; a full axis may have rolled by anything."""
    reach = side // 2
    moves = []
    for axis in (0, 1):
        spans = (original >= NUM_SPECIAL).any(axis=1 - axis)
        now = (shifted >= NUM_SPECIAL).any(axis=1 - axis)
        if spans.all():
            moves.append(range(-reach, reach + 1))
        else:
            moves.append([int(np.argmax(now) - np.argmax(spans))])
            assert abs(moves[-1][0]) <= reach
    return [(dy, dx) for dy in moves[0] for dx in moves[1]]


@SETTINGS
@given(seed=SEEDS)
def test_position_shift_rolls_sudoku(seed):
    rows = sudoku_rows(9, 2, 4)
    tasks = table(rows)
    spec = AugmentationSpec(
        strategies=("position_shift",), count=COUNT, intensity={"position_shift": 1.0}
    )
    out = augment_batch(as_batch(tasks), spec, seed)
    for row, source in enumerate(out["input"]):
        original = np.asarray(rows[row // COUNT]["input"]).reshape(9, 9)
        grid = source.reshape(9, 9)
        assert any(
            (np.roll(original, (dy, dx), axis=(0, 1)) == grid).all()
            for dy in range(9)
            for dx in range(9)
        )


@SETTINGS
@given(seed=SEEDS)
def test_position_shift_moves_short_inputs_at_default_intensity(seed):
    """Issue 10, point 9: at the default intensity (0.1) floor(f * 9) is 0, so a 9x9
    sudoku or an 8-token sequence was never shifted, yet every row was labelled
    position_shift. An applied shift now moves at least one position (here exactly one,
    the reach being capped below by 1), on every axis it applies to."""
    n = 8
    distinct = {  # all tokens different: a roll by k != 0 always changes the row
        "task_id": "distinct",
        "task_type": "sequence",
        "input": list(range(NUM_SPECIAL, NUM_SPECIAL + n)),
        "target": list(range(NUM_SPECIAL, NUM_SPECIAL + n)),
        "num_symbols": n,
    }
    rows = sudoku_rows(9, 2, 4) + [distinct]
    spec = AugmentationSpec(strategies=("position_shift",), count=COUNT)
    out = augment_batch(as_batch(table(rows)), spec, seed)
    for row, source in enumerate(out["input"]):
        task = rows[row // COUNT]
        original = np.asarray(task["input"])
        if out["aug_index"][row] == 0:  # the original row stays the task
            assert out["aug_strategies"][row] == "" and (source[: len(original)] == original).all()
            continue
        assert out["aug_strategies"][row] == "position_shift"
        if task["task_id"] == "distinct":
            assert any((source[:n] == np.roll(original, k)).all() for k in (-1, 1))
        else:
            grid, puzzle = source.reshape(9, 9), original.reshape(9, 9)
            assert any(
                (np.roll(puzzle, (dy, dx), axis=(0, 1)) == grid).all()
                for dy in (-1, 1)
                for dx in (-1, 1)
            )


def test_every_kind_is_covered_by_the_mixed_table():
    kinds = {
        (t, s)
        for t, s in zip(
            mixed_table().column("task_type").to_pylist(),
            mixed_table().column("source").to_pylist(),
            strict=True,
        )
    }
    assert {"grid", "sequence", "text"} == {t for t, _ in kinds}
    assert {"sudoku", "parity", "arc-agi-1"} <= {s for _, s in kinds}
