"""The field's metrics at training checkpoints: a tiny local-mode sudoku run logs exact
per puzzle and per cell to MLflow, and the final numbers are those of its checkpoint; an
ARC run with an identity per augmented copy votes over the copies."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from mlflow import MlflowClient
from train_fixtures import TINY

from refiner.checkpoints.files import read_checkpoint
from refiner.config.experiment import prepare_experiment
from refiner.distributed.trainer import run_training
from refiner.evaluate.predictors import benchmark_report, field_kind
from refiner.tracking import tracked_run

SUDOKU = [
    *(o for o in TINY if not o.startswith("task.")),
    "task.source=sudoku",
    "task.size=4",
    "task.count=120",
    "task.val_max_rows=16",
    "orchestration.augmentation_strategies=[paraphrase]",
    "orchestration.augmentation_count=2",
    "training.num_workers=0",
    "training.steps=10",
]


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("ema", [None, 0.5], ids=["live-weights", "ema"])
def test_local_run_logs_the_fields_metrics(local_ray, tmp_path, ema) -> None:
    # With an EMA of the weights, what the run logs must be the average's: the checkpoint
    # holds the average, and the numbers are compared with the checkpoint's below. (This
    # tiny run's live weights often predict the same as the average, so a loop scoring
    # the live ones is caught only sometimes here; test_weight_average covers the rest.)
    config, tasks = prepare_experiment(None, [*SUDOKU, f"orchestration.ema_decay={ema or 'null'}"])
    assert config.task.val_split == "val"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "field", "run") as tracker:
        outcome = run_training(config, tasks, "run", str(tmp_path / "storage"), tracker)
    metrics = MlflowClient(uri).get_run(tracker.run_id).data.metrics

    checkpoint_steps = [
        m.step for m in MlflowClient(uri).get_metric_history(tracker.run_id, "val_puzzle_exact")
    ]
    assert set(checkpoint_steps) == {10}  # the one checkpoint (the last update)
    for key in ("puzzle_exact", "cell_acc", "filled_cell_acc"):
        assert 0.0 <= metrics[f"val_{key}"] <= 1.0
        assert metrics[f"final_val_{key}"] == pytest.approx(outcome.summary["field"][key])
    assert "pass_at_2" not in outcome.summary["field"]  # sudoku: no voting
    assert "the field's metrics" in outcome.summary["evaluation_text"]

    # The logged numbers are the checkpoint's, on the same held-out rows.
    held_out = tasks.filter(pc.equal(tasks.column("split"), "val"))
    split = "val" if held_out.num_rows else "test"
    assert field_kind(tasks) == "exact"
    again = benchmark_report(f"{outcome.checkpoint}/checkpoint.pt", tasks, 1, split, max_rows=16)
    assert again.puzzles == min(16, tasks.filter(pc.equal(tasks.column("split"), split)).num_rows)
    assert metrics["final_val_puzzle_exact"] == pytest.approx(again.exact)
    assert metrics["final_val_cell_acc"] == pytest.approx(again.cell_accuracy)
    state = read_checkpoint(f"{outcome.checkpoint}/checkpoint.pt")["orchestrator"]
    assert (state["weight_average"] is not None) == (ema is not None)
    if ema is not None:  # the checkpoint's model is the average, not the live weights
        live = state["weight_average"]["live_model"]
        assert any(not torch.equal(live[k], v) for k, v in state["model"].items())


def test_field_kind_and_report_keep_training_mode() -> None:
    from refiner.config.sections import ModelConfig
    from refiner.evaluate.predictors import field_report
    from refiner.tasks.sources import parity, sudoku
    from refiner.train.orchestrator import UnifiedRefinerOrchestrator

    puzzles = sudoku.generate(12, size=4, seed=1)
    assert field_kind(puzzles) == "exact"
    assert field_kind(parity.generate(8, size=4)) is None  # no benchmark: no field metric
    mixed = puzzles.set_column(
        puzzles.column_names.index("source"),
        "source",
        pa.array(["sudoku"] * 11 + ["parity"]),
    )
    assert field_kind(mixed) is None

    orchestrator = UnifiedRefinerOrchestrator.from_config(
        ModelConfig(seq_len=16, d_model=16, n_heads=2, n_layers=1),
        task_type="grid",
        num_symbols=4,
        seed=0,
    )
    assert orchestrator.training
    report = field_report(orchestrator, puzzles, views=1, seq_len=16, task_type="grid")
    assert report.puzzles == 12 and 0.0 <= report.cell_accuracy <= 1.0
    assert orchestrator.training  # evaluated in eval mode, handed back in training mode
    assert field_report(orchestrator, parity.generate(8, size=4), 1, 16) is None


@pytest.mark.slow
@pytest.mark.ray
def test_a_per_copy_arc_run_votes_over_its_copies(local_ray, tmp_path) -> None:
    """ARC with an identity per augmented copy: the checkpoints' and the summary's pass@k
    vote over the puzzles' copies (3 here, though 8 views are asked for), and the
    checkpoint alone gives the same numbers through benchmark_report."""
    config, tasks = prepare_experiment(
        None,
        [
            *(o for o in TINY if not o.startswith("task.")),
            "task.source=arc",
            "task.size=6",
            "task.val_max_rows=12",
            "model.puzzle_embedding=per_augmentation",
            "orchestration.augmentation_strategies=[paraphrase,format_variation]",
            "orchestration.augmentation_count=3",
            "training.vote_views=8",
            "training.num_workers=0",
            "training.steps=6",
            "training.checkpoint_every=6",
        ],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "field", "run") as tracker:
        outcome = run_training(config, tasks, "run", str(tmp_path / "storage"), tracker)
    text = outcome.summary["evaluation_text"]
    assert "voting over 3 view(s), each puzzle's augmented copies under their identities" in text
    metrics = MlflowClient(uri).get_run(tracker.run_id).data.metrics
    again = benchmark_report(f"{outcome.checkpoint}/checkpoint.pt", tasks, 8, "test", max_rows=12)
    assert again.views == 3 and again.per_copy
    assert metrics["final_val_pass_at_2"] == pytest.approx(again.pass_at_2)
    assert metrics["final_val_vote_unreadable"] == pytest.approx(again.unreadable)
