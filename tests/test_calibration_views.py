"""Calibration views (orchestration.stopping.calibration_views): each held-out row in N
label-consistent views, every one still a correctly labelled puzzle of the same group."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from refiner.config.experiment import calibration_rows, prepare_experiment
from refiner.data.tokenizers import SymbolTokenizer
from refiner.tasks.schema import split_validation
from refiner.tasks.sources.sudoku import solves

SUDOKU = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "sudoku.yaml"


def _held_out(views: int):
    config, tasks = prepare_experiment(
        SUDOKU,
        ["task.size=4", "task.count=60", f"orchestration.stopping.calibration_views={views}"],
    )
    _, held_out = split_validation(tasks, config.task.val_split)
    return config, held_out


def test_views_are_correctly_labelled_copies_of_each_held_out_puzzle():
    config, held_out = _held_out(views=5)
    assert held_out.num_rows > 0
    rows = calibration_rows(config, held_out)

    assert rows.num_rows == 5 * held_out.num_rows
    # every puzzle appears in 5 views, under its own group
    assert Counter(rows.column("group_id").to_pylist()) == {
        g: 5 * n for g, n in Counter(held_out.column("group_id").to_pylist()).items()
    }
    decode = SymbolTokenizer(5).decode
    distinct = set()
    for row in rows.to_pylist():
        puzzle = decode(np.asarray(row["input"])).reshape(4, 4)
        target = decode(np.asarray(row["target"])).reshape(4, 4)
        assert solves(puzzle, target, 4)  # the view's answer is still right
        distinct.add(tuple(row["input"]))
    assert len(distinct) > 2 * held_out.num_rows  # views, not copies


def test_one_view_is_the_held_out_rows_themselves():
    config, held_out = _held_out(views=1)
    assert calibration_rows(config, held_out) is held_out
