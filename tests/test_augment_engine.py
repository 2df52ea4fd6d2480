"""The batch function's contract: columns, metadata, padding, errors, dedup, input forms."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from augment_tasks import (
    arc_rows,
    as_batch,
    mixed_table,
    parity_rows,
    plain_grid_rows,
    sudoku_rows,
    table,
    text_rows,
)
from oracles.augment_reference import reference_augment_table

from refiner.augment import (
    LABEL_CONSISTENT_STRATEGIES,
    STRATEGIES,
    AugmentationSpec,
    Augmenter,
    augment_batch,
)
from refiner.data.tokenizers import NUM_SPECIAL, PAD, pad_to_length

SPEC = AugmentationSpec(count=6)
KIND_STRATEGIES = {
    "sudoku": ",".join(STRATEGIES),
    "arc-agi-1": ",".join(STRATEGIES),
    "synthetic": ",".join(STRATEGIES),  # plain grids
    "parity": "token_noise,position_shift,masking,paraphrase",
    "": "token_noise,position_shift,masking",  # generic sequences
    "text": ",".join(STRATEGIES),
}


def test_columns_and_metadata():
    tasks = mixed_table()
    out = augment_batch(as_batch(tasks), SPEC, 11, epoch=4)
    rows = tasks.num_rows * SPEC.count
    assert set(out) == set(tasks.column_names) | {
        "aug_index",
        "aug_seed",
        "aug_epoch",
        "aug_strategies",
        "aug_intensity",
    }
    assert all(len(values) == rows for values in out.values())
    assert out["input"].dtype == out["target"].dtype == np.int32
    assert out["aug_index"].dtype == np.int32 and out["aug_epoch"].dtype == np.int32
    assert out["aug_seed"].dtype == np.int64
    assert out["aug_intensity"].dtype == np.float32 and out["aug_intensity"].shape == (rows, 5)
    np.testing.assert_array_equal(out["aug_index"], np.tile(np.arange(SPEC.count), tasks.num_rows))
    assert (out["aug_epoch"] == 4).all()
    np.testing.assert_array_equal(
        out["task_id"], np.repeat(tasks.column("task_id").to_numpy(), SPEC.count)
    )
    original = out["aug_index"] == 0
    assert (out["aug_strategies"][original] == "").all() and not out["aug_intensity"][
        original
    ].any()
    for source, strategies in zip(
        out["source"][~original], out["aug_strategies"][~original], strict=True
    ):
        assert strategies == KIND_STRATEGIES[source]
    intensity = out["aug_intensity"][~original]
    for k, name in enumerate(STRATEGIES):
        listed = np.array([name in s.split(",") for s in out["aug_strategies"][~original]])
        assert not intensity[~listed, k].any()  # 0 where not applied
        assert (intensity[listed, k] <= SPEC.intensity[name] + 1e-6).all()
        if name in LABEL_CONSISTENT_STRATEGIES:  # fixed: the configured value
            np.testing.assert_allclose(intensity[listed, k], SPEC.intensity[name])


def test_original_row_is_the_task_itself():
    tasks = mixed_table()
    out = augment_batch(as_batch(tasks), SPEC, 0)
    width = out["input"].shape[1]
    np.testing.assert_array_equal(
        out["input"][:: SPEC.count], pad_to_length(tasks.column("input").to_pylist(), width)
    )
    np.testing.assert_array_equal(
        out["target"][:: SPEC.count], pad_to_length(tasks.column("target").to_pylist(), width)
    )


def test_without_original_every_row_is_augmented():
    tasks = table(sudoku_rows(9, 2))
    out = augment_batch(as_batch(tasks), AugmentationSpec(count=4, include_original=False), 0)
    assert (out["aug_strategies"] != "").all()
    assert (
        (out["input"][::4] != pad_to_length(tasks.column("input").to_pylist(), 81))
        .any(axis=1)
        .all()
    )


def test_padding_to_batch_max_and_to_pad_to():
    tasks = table(parity_rows(5, 1) + text_rows()[:2])
    longest = max(
        len(r) for r in tasks.column("input").to_pylist() + tasks.column("target").to_pylist()
    )
    out = augment_batch(as_batch(tasks), SPEC, 0)
    assert out["input"].shape == (3 * SPEC.count, longest)
    padded = augment_batch(as_batch(tasks), SPEC, 0, pad_to=64)
    assert padded["input"].shape == (3 * SPEC.count, 64)
    np.testing.assert_array_equal(padded["input"][:, :longest], out["input"])
    assert (padded["input"][:, longest:] == PAD).all() and (
        padded["target"][:, longest:] == PAD
    ).all()
    assert (padded["input"][: SPEC.count, 5:] == PAD).all()  # the parity row is 5 long


def test_pad_to_too_small_names_the_task():
    tasks = table(parity_rows(5, 1) + text_rows()[:1])
    with pytest.raises(ValueError, match=r"task 'text-0': input has 11 tokens, more than pad_to=8"):
        augment_batch(as_batch(tasks), SPEC, 0, pad_to=8)
    with pytest.raises(ValueError, match="pad_to must be a positive integer"):
        augment_batch(as_batch(tasks), SPEC, 0, pad_to=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("target"), "lacks required column"),
        (
            lambda b: b.__setitem__(
                "task_type", np.array(["maze"] * len(b["task_id"]), dtype=object)
            ),
            "unknown task_type 'maze'",
        ),
        (lambda b: b.__setitem__("height", np.full(len(b["task_id"]), 8)), "input has 81 tokens"),
        (lambda b: b["input"].__setitem__(0, np.array([], dtype=np.int32)), "input is empty"),
        (lambda b: b["input"].__setitem__(0, np.array([-1] * 81)), "negative token"),
        (
            lambda b: b["target"].__setitem__(0, np.array([NUM_SPECIAL + 12] * 81)),
            "outside the digits",
        ),
        (lambda b: b.__setitem__("epoch", np.array([0.5] * len(b["task_id"]))), "epoch column"),
    ],
)
def test_bad_batches_raise_clear_errors(change, message):
    batch = as_batch(table(sudoku_rows(9, 2)))
    change(batch)
    with pytest.raises(ValueError, match=message):
        augment_batch(batch, SPEC, 0)


def test_bad_eos_layout_names_the_task():
    rows = arc_rows(12, 1)
    canvas = np.asarray(rows[0]["target"])
    canvas[-1] = 3  # a stray EOS in the corner
    rows[0]["target"] = canvas.tolist()
    with pytest.raises(ValueError, match=r"grid task 'arc/.*' has EOS tokens but is not"):
        augment_batch(as_batch(table(rows)), SPEC, 0)


def test_bad_arguments():
    batch = as_batch(table(sudoku_rows(4, 1)))
    with pytest.raises(TypeError, match="AugmentationSpec"):
        augment_batch(batch, {"count": 3}, 0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        Augmenter(SPEC, seed="1")


def test_dedup_drops_repeated_pairs_and_keeps_order():
    # A 2x2 one-colour grid has few distinct images: most augmented rows repeat.
    row = {
        "task_id": "tiny",
        "task_type": "grid",
        "source": "synthetic",
        "height": 2,
        "width": 2,
        "num_symbols": 3,
        "input": [NUM_SPECIAL + 1] * 4,
        "target": [NUM_SPECIAL + 2] * 4,
    }
    tasks = table([row] + sudoku_rows(4, 1))
    spec = AugmentationSpec(strategies=("paraphrase", "format_variation"), count=40, dedup=True)
    out = augment_batch(as_batch(tasks), spec, 0)
    tiny = out["task_id"] == "tiny"
    pairs = {
        (a.tobytes(), b.tobytes())
        for a, b in zip(out["input"][tiny], out["target"][tiny], strict=True)
    }
    assert len(pairs) == tiny.sum() == 2  # colour 1 -> {1, 2} relabels; layout moves nothing
    assert (np.diff(out["aug_index"][tiny]) > 0).all() and out["aug_index"][tiny][0] == 0
    reference = reference_augment_table(tasks, spec, 0)
    np.testing.assert_array_equal(out["input"], reference["input"])
    np.testing.assert_array_equal(out["aug_index"], reference["aug_index"])


def test_ragged_and_2d_inputs_and_missing_shapes_agree():
    for rows in (sudoku_rows(9, 2), arc_rows(12, 2)):  # Ray gives equal-length lists as 2-D
        ragged = as_batch(table(rows))
        fixed = {**ragged, "input": np.stack(ragged["input"]), "target": np.stack(ragged["target"])}
        np.testing.assert_array_equal(
            augment_batch(ragged, SPEC, 1)["input"], augment_batch(fixed, SPEC, 1)["input"]
        )
    text = as_batch(table(text_rows()[:2] + parity_rows(4, 1)))
    as_objects = {**text, "height": np.array([None] * 3, dtype=object), "width": np.full(3, np.nan)}
    np.testing.assert_array_equal(
        augment_batch(text, SPEC, 1)["input"], augment_batch(as_objects, SPEC, 1)["input"]
    )


def test_augmenter_pickles_and_matches_augment_batch():
    batch = as_batch(table(plain_grid_rows(5, 5, 2) + sudoku_rows(6, 1)))
    augmenter = pickle.loads(pickle.dumps(Augmenter(SPEC, seed=9, epoch=2, pad_to=40)))
    out = augmenter(batch)
    expected = augment_batch(batch, SPEC, 9, epoch=2, pad_to=40)
    for name in expected:
        np.testing.assert_array_equal(out[name], expected[name])
