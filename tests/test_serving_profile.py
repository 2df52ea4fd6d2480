"""The served model's view of its training rows (refiner.infer.serving): alphabet, lengths and
grid shapes seen, the input example, how answers are cut and when a row gets a warning."""

from __future__ import annotations

import pyarrow as pa
import pytest

from refiner.data.tokenizers import PAD
from refiner.infer.prediction import prediction_inputs
from refiner.infer.serving import ServingProfile, answer_lengths, cut_answer, serving_profile
from refiner.tasks.problems import TaskFileError
from refiner.tasks.sources import parity, sudoku


def test_profile_of_parity_rows_and_its_checks(tmp_path):
    train = parity.generate(64, size=8, seed=0, val_fraction=0.0)
    profile = serving_profile(train)
    assert (profile.task_type, profile.num_symbols) == ("sequence", 2)
    assert profile.lengths == [8] and profile.shapes == [] and profile.same_length
    assert profile.example[0]["input"] == train.column("input")[0].as_py()
    (tmp_path / "p.json").write_text(profile.to_json())
    assert ServingProfile.read(tmp_path / "p.json") == profile

    request = prediction_inputs(pa.table({"input": [[4, 5, 4, 5, 4, 5, 4, 5], [4, 5, 4]]}))
    assert profile.warnings(request) == [
        None,
        "input length 3 never seen in training (trained on 8 tokens)",
    ]
    assert answer_lengths(request, profile) == [8, 3]
    bad = prediction_inputs(pa.table({"input": [[4, 5], [4, 7]]}))
    with pytest.raises(TaskFileError, match=r"row 1 .*'input': token 7 is outside"):
        profile.check_tokens(bad)


def test_grids_are_cut_to_their_shape_and_unseen_shapes_warned():
    train = sudoku.generate(8, size=4, seed=0)
    profile = serving_profile(train)
    assert profile.shapes == [[4, 4]]
    six = sudoku.generate(2, size=6, seed=0)
    assert answer_lengths(six, profile) == [36, 36]
    assert profile.warnings(six)[0] == "grid 6x6 never seen in training (4x4)"
    assert profile.warnings(train.slice(0, 1)) == [None]


def test_cut_answer_without_a_length_stops_at_the_padding():
    assert cut_answer([7, 8, PAD, PAD], None) == [7, 8]
    assert cut_answer([7, 8, 9, PAD], 2) == [7, 8]
