"""Voting evaluation: inverse views round-trip, a vote that flips the answer, pass@2 per
puzzle, exact match per puzzle/cell, and jobs/evaluate.py --vote on a saved checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from refiner_fixtures import tiny_orchestrator
from sweep_fixtures import job

from refiner.augment.symmetry import DIHEDRAL_ALL
from refiner.checkpoints.files import save_checkpoint
from refiner.data.tokenizers import PAD
from refiner.evaluate.voting import (
    View,
    arc_views,
    exact_match,
    exact_rows,
    top_answers,
    vote_arc,
)
from refiner.tasks.schema import TASK_SCHEMA
from refiner.tasks.sources.arc import place_in_canvas

SIZE = 6


def arc_rows(pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> pa.Table:
    """Test rows (group id, input grid, output grid) as the ARC source builds them."""
    rows = len(pairs)
    return pa.table(
        {
            "task_id": [f"{g}/test/{i}" for i, (g, _, _) in enumerate(pairs)],
            "task_type": ["grid"] * rows,
            "source": ["arc-agi-1"] * rows,
            "group_id": [g for g, _, _ in pairs],
            "split": ["test"] * rows,
            "input": [place_in_canvas(x, SIZE).reshape(-1) for _, x, _ in pairs],
            "target": [place_in_canvas(y, SIZE).reshape(-1) for _, _, y in pairs],
            "height": [SIZE] * rows,
            "width": [SIZE] * rows,
            "num_symbols": [10] * rows,
        },
        schema=TASK_SCHEMA,
    )


def lookup_predictor(answers: dict[bytes, np.ndarray]):
    """A fake model: a canvas it knows maps to a fixed output canvas, others to all PAD."""

    def predict(ids: np.ndarray, groups: object = None, copies: object = None) -> np.ndarray:
        out = np.full_like(ids, PAD)
        for r, row in enumerate(ids):
            if row.astype(np.int32).tobytes() in answers:
                out[r] = answers[row.astype(np.int32).tobytes()]
        return out

    return predict


def canvas(grid: np.ndarray) -> np.ndarray:
    return place_in_canvas(grid, SIZE).reshape(-1).astype(np.int32)


def grid(seed: int, shape=(3, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, size=shape)


def teach(answers: dict, views: list[View], x: np.ndarray, y_by_view: dict[int, np.ndarray]):
    """For view v, the model answers y_by_view[v] in the ORIGINAL frame (seen transformed)."""
    for v, y in y_by_view.items():
        answers[canvas(views[v].apply(x)).tobytes()] = canvas(views[v].apply(y))


def test_every_view_inverts_exactly():
    views = arc_views(24, seed=3)
    assert views[0] == View() and {v.dihedral for v in views} == set(range(DIHEDRAL_ALL))
    assert sum(v.colours is not None for v in views) == 16
    for seed in range(5):
        g = grid(seed, shape=(2 + seed, 5))
        for view in views:
            moved = view.apply(g)
            assert (view.invert(moved) == g).all()
            assert (moved == 0).sum() == (g == 0).sum()  # background never recoloured


def test_the_vote_flips_a_wrong_untransformed_answer():
    views = arc_views(8)
    x, y, wrong = grid(0), grid(1), grid(2)
    answers: dict = {}
    # The plain view is wrong; four transformed views are right; three are unreadable.
    teach(answers, views, x, {0: wrong, 1: y, 2: y, 3: y, 4: y})
    tasks = arc_rows([("p1", x, y)])
    alone = vote_arc(tasks, lookup_predictor(answers), views[:1])
    assert (alone.pass_at_1, alone.pass_at_2) == (0.0, 0.0)
    voted = vote_arc(tasks, lookup_predictor(answers), views)
    assert (voted.pass_at_1, voted.pass_at_2) == (1.0, 1.0)
    assert voted.unreadable == pytest.approx(3 / 8)


def test_pass_at_2_counts_the_two_most_voted_per_puzzle():
    views = arc_views(8)
    x1, y1, x2, y2, x3, y3 = (grid(s) for s in range(10, 16))
    w1, w2 = grid(20), grid(21)
    answers: dict = {}
    # Puzzle a, pair 0: right answer second most voted (3 vs 4) -> pass@2 only.
    teach(answers, views, x1, {0: w1, 1: w1, 2: w1, 3: w1, 4: y1, 5: y1, 6: y1})
    # Puzzle a, pair 1: right answer third (w1 3, w2 2, y2 1) -> fails both; so does a.
    teach(answers, views, x2, {0: w1, 1: w1, 2: w1, 3: w2, 4: w2, 5: y2})
    # Puzzle b: tie 2-2 between w2 (seen first) and y3 -> pass@2, not pass@1.
    teach(answers, views, x3, {0: w2, 1: y3, 2: w2, 3: y3})
    report = vote_arc(
        arc_rows([("a", x1, y1), ("a", x2, y2), ("b", x3, y3)]), lookup_predictor(answers), views
    )
    assert (report.puzzles, report.pairs) == (2, 3)
    assert report.pair_pass_at_1 == 0.0 and report.pair_pass_at_2 == pytest.approx(2 / 3)
    assert report.pass_at_1 == 0.0 and report.pass_at_2 == 0.5
    assert report.passed_puzzles == ["b"]
    assert top_answers(["w", "y", "w", "y", "z"]) == ["w", "y"]


def test_exact_match_per_puzzle_and_per_cell():
    inputs = [[5, 0, 6, 0], [5, 6, 0, 0]]
    targets = [[5, 6, 6, 5], [5, 6, 5, 6]]
    table = pa.table(
        {
            "task_id": ["a", "b"],
            "task_type": ["grid"] * 2,
            "source": ["sudoku"] * 2,
            "group_id": ["a", "b"],
            "split": ["test"] * 2,
            "input": inputs,
            "target": targets,
            "height": [2, 2],
            "width": [2, 2],
            "num_symbols": [3, 3],
        },
        schema=TASK_SCHEMA,
    )
    predicted = np.array([[5, 6, 6, 5], [5, 6, 6, 6]])
    report = exact_match(table, lambda ids, groups, copies: predicted[: len(ids)])
    assert report.exact == 0.5
    assert report.cell_accuracy == pytest.approx(7 / 8)
    assert report.filled_cell_accuracy == pytest.approx(3 / 4)
    # per row, the same rule; PAD targets are not scored, extra predicted columns ignored
    assert exact_rows(table, predicted).tolist() == [True, False]
    short = table.set_column(6, "target", pa.array([[5, 6, 6, 5], [5, 6, 6]], pa.list_(pa.int64())))
    wider = np.array([[5, 6, 6, 5, 9], [5, 6, 6, 9, 9]])
    assert exact_rows(short, wider).tolist() == [True, True]


def test_predict_with_a_wrong_shape_is_an_error():
    views = arc_views(2)
    tasks = arc_rows([("p", grid(0), grid(1))])
    with pytest.raises(ValueError, match="predict returned shape"):
        vote_arc(tasks, lambda ids, groups, copies: ids[:1], views)


def test_evaluate_job_votes_on_a_saved_checkpoint(tmp_path: Path, capsys):
    from refiner.tasks.io import write_tasks

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, tiny_orchestrator(seq_len=SIZE * SIZE))
    tasks = tmp_path / "arc.parquet"
    write_tasks(arc_rows([("a", grid(0), grid(1)), ("b", grid(2), grid(3))]), tasks)
    code = job("evaluate").main(
        ["--checkpoint", str(path), "--task", str(tasks), "--vote", "8", "--max-steps", "1"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "voting over 8 view(s), 2 puzzles (2 test pairs): pass@1" in out


def test_each_view_is_predicted_with_its_puzzles_group():
    """A puzzle-conditioned model needs each canvas's puzzle: every view of a row carries
    the row's group_id to the predictor."""
    views = arc_views(3)
    x, y = grid(1), grid(2)
    seen: list[str] = []

    def predict(ids: np.ndarray, groups: object = None, copies: object = None) -> np.ndarray:
        seen.extend(groups)
        return ids

    vote_arc(arc_rows([("a", x, y), ("b", x, y)]), predict, views)
    assert seen == ["a"] * 3 + ["b"] * 3


def test_a_prediction_with_a_symbol_outside_the_arc_colours_casts_no_vote():
    """A model may emit any id of its vocabulary: such a grid is unreadable, not a crash
    (and not an answer), also in views that permute the colours."""
    views = arc_views(10)  # views 8 and 9 permute colours
    x, y = grid(0), grid(1)
    bad = canvas(y)
    bad[0] += 12  # colour 12 + y[0, 0]: no ARC colour
    report = vote_arc(
        arc_rows([("p", x, y)]), lambda ids, groups, copies: np.stack([bad] * len(ids)), views
    )
    assert report.unreadable == 1.0 and report.pass_at_2 == 0.0
