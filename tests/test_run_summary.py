"""The end-of-run summary says which checkpoint became the run's MLflow model."""

from __future__ import annotations

import pyarrow as pa

from refiner.config.experiment import ExperimentConfig
from refiner.distributed.trainer import TrainingOutcome
from refiner.runs.plan import TrainingPlan


def summary(outcome: TrainingOutcome) -> str:
    plan = TrainingPlan(
        config=ExperimentConfig(),
        tasks=pa.table({"task_id": ["a"]}),
        run_name="maze",
        address=None,
        tracking_uri="sqlite:///mlflow.db",
        experiment="e",
        storage="/runs",
    )
    return plan.summary(outcome, "run-1")


def outcome(**kw) -> TrainingOutcome:
    return TrainingOutcome(
        run_name="maze",
        run_dir="/runs/maze",
        checkpoint="/runs/maze/checkpoint_late",
        metrics={"step": 1500, "val_acc_infer": 0.76},
        summary={"step": 1500},
        elapsed_s=1717.0,
        model_uri="models:/m-1",
        **kw,
    )


def test_a_model_from_an_earlier_better_checkpoint_is_named_with_its_score() -> None:
    # A run that got worse at the end: the summary's final numbers are not the model's.
    text = summary(
        outcome(
            model_checkpoint="/runs/maze/checkpoint_early",
            model_metrics={"step": 750, "val_acc_infer": 0.91},
        )
    )
    assert (
        "checkpoint: /runs/maze/checkpoint_late (latest: update 1500, val_acc_infer 0.7600)" in text
    )
    assert (
        "model: models:/m-1, from the best checkpoint by val_acc_infer"
        " (update 750, val_acc_infer 0.9100): /runs/maze/checkpoint_early"
    ) in text


def test_a_model_from_the_latest_checkpoint_says_so() -> None:
    text = summary(
        outcome(
            model_checkpoint="/runs/maze/checkpoint_late",
            model_metrics={"step": 1500, "val_acc_infer": 0.76},
        )
    )
    assert "model: models:/m-1, from that checkpoint (the best by val_acc_infer)" in text
    assert "checkpoint_early" not in text


def test_a_model_without_a_recorded_source_claims_no_score() -> None:
    # No checkpoint reported the score: the latest became the model, and "best" would lie.
    text = summary(outcome())
    assert "model: models:/m-1, from that checkpoint\n" in text


def test_without_a_model_only_the_checkpoint_is_named() -> None:
    text = summary(TrainingOutcome("maze", "/runs/maze", None, {}, {"step": 3}, 1.0))
    assert "checkpoint: None\n" in text and "model:" not in text


def test_a_tracking_outage_and_what_it_kept_out_are_named() -> None:
    done = outcome()
    done.summary["tracking"] = {
        "outage_s": 31.4,
        "delivered_late": 84,
        "lost_points": 3,
        "lost_keys": ["loss", "step"],
        "lost_tags": [],
        "lost_artifacts": ["calibration/update_000750/frontier.png"],
    }
    text = summary(done)
    assert (
        "MLflow was unreachable for 31 s during training; "
        "84 metric points were recorded after it returned"
    ) in text
    assert (
        "not recorded in MLflow: 3 metric points (loss, step); "
        "artifacts calibration/update_000750/frontier.png"
    ) in text


def test_no_outage_adds_no_line() -> None:
    done = outcome()
    done.summary["tracking"] = {"outage_s": 0.0, "delivered_late": 0, "lost_points": 0}
    assert "MLflow was unreachable" not in summary(done)
    assert "not recorded" not in summary(done)


def test_the_logged_models_of_the_kept_checkpoints_are_counted() -> None:
    text = summary(outcome(logged_models=[(750, "models:/m-0"), (1500, "models:/m-1")]))
    assert (
        "logged models: 2, one per kept checkpoint (updates 750, 1500; training.num_to_keep 2)"
        in text
    )
    assert "logged models:" not in summary(outcome(logged_models=[(1500, "models:/m-1")]))
