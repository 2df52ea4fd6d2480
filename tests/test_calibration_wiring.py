"""Calibrated stopping wired through training, evaluation and prediction (issue 14).

One tiny local-mode training run (num_workers=0): its checkpoint holds the calibration
chosen at the last validation checkpoint, its MLflow run the settings and the frontier;
`jobs/evaluate.py --calibrate` and the Predictor report the settings and their origin.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from ray_cluster import ray_cluster
from sweep_fixtures import job
from train_fixtures import TINY

from refiner.checkpoints.files import read_checkpoint
from refiner.config.experiment import prepare_experiment
from refiner.distributed.trainer import run_training
from refiner.infer.prediction import Predictor, inputs_from_ids, summarize
from refiner.tracking import tracked_run

pytestmark = [pytest.mark.slow, pytest.mark.ray]

STEPS = 10  # one checkpoint (checkpoint_every=10), validated and calibrated
LOCAL = [
    *TINY,
    "training.num_workers=0",
    "orchestration.augmentation_count=2",
    "orchestration.stopping.calibration_views=2",  # each validation row in 2 views
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrated-run")
    with ray_cluster(num_cpus=2):
        config, tasks = prepare_experiment(None, [*LOCAL, f"training.steps={STEPS}"])
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        with tracked_run(uri, "calibration", "run") as tracker:
            outcome = run_training(config, tasks, "run", str(tmp / "storage"), tracker)
    return outcome, MlflowClient(uri), tracker.run_id


def test_training_stores_uses_and_logs_the_calibration(trained) -> None:
    outcome, client, run_id = trained
    calibration = read_checkpoint(f"{outcome.checkpoint}/checkpoint.pt")["orchestrator"][
        "calibration"
    ]
    assert calibration is not None and calibration["update"] == STEPS
    rows = calibration["rows"]
    run = client.get_run(run_id)
    val_rows = int(run.data.tags["refiner.val_rows"])  # at most task.val_max_rows=64
    assert 0 < val_rows <= 64 and rows == 2 * val_rows  # calibrated on 2 views of each
    assert calibration["max_steps"] == 2  # orchestration.max_steps_infer
    assert 100 * (calibration["accuracy_at_limit"] - calibration["accuracy"]) <= 0.5 + 1e-9

    origin = f"calibrated at update {STEPS} on {rows} rows"
    # The held-out infer-few numbers and the end-of-run summary ran with it.
    assert outcome.summary["stopping"]["origin"] == origin
    assert outcome.summary["stopping"]["max_steps"] == calibration["settings"]["max_steps"]
    assert f"({origin})" in outcome.summary["evaluation_text"]

    assert run.data.tags["refiner.stopping.origin"] == origin
    act = calibration["settings"]["act_threshold"]
    assert run.data.tags["refiner.stopping.act_threshold"] == ("off" if act is None else f"{act:g}")
    assert run.data.tags["refiner.stopping.max_steps"] == str(calibration["settings"]["max_steps"])
    assert run.data.metrics["calib_max_steps"] == calibration["settings"]["max_steps"]
    logged = {a.path for a in client.list_artifacts(run_id, f"calibration/update_{STEPS:06d}")}
    folder = f"calibration/update_{STEPS:06d}"
    assert logged == {
        f"{folder}/{name}" for name in ("calibration.json", "frontier.csv", "frontier.png")
    }


def test_evaluate_calibrate_reports_settings_and_origin(trained, capsys) -> None:
    outcome, client, run_id = trained
    checkpoint = f"{outcome.checkpoint}/checkpoint.pt"
    evaluate = job("evaluate")

    assert evaluate.main(["--checkpoint", checkpoint, "--task", "parity"]) == 0
    stored = capsys.readouterr().out
    assert "stopping: " in stored and f"(calibrated at update {STEPS} on" in stored

    code = evaluate.main(["--checkpoint", checkpoint, "--task", "parity", "--calibrate"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "calibration: stopping ACT" in out
    # before: the checkpoint's stored calibration; after: the new one (update unchanged)
    before = next(line for line in out.splitlines() if line.strip().startswith("before:"))
    after = next(line for line in out.splitlines() if line.strip().startswith("after:"))
    assert f"calibrated at update {STEPS} on" in before
    assert f"calibrated at update {STEPS} on" in after
    # anew on the views the run calibrated on: 2 of each validation row
    val_rows = int(client.get_run(run_id).data.tags["refiner.val_rows"])
    assert f"on {2 * val_rows} rows" in after
    assert "the same rows" in out


def test_predictor_uses_the_stored_calibration(trained) -> None:
    outcome, _, _ = trained
    predictor = Predictor.from_checkpoint(f"{outcome.checkpoint}/checkpoint.pt")
    stopping = predictor.stopping()
    assert stopping["origin"].startswith(f"calibrated at update {STEPS} on")
    assert predictor.stopping(early_stopping=False)["origin"] == "early stopping off"

    predictions = predictor.predict(inputs_from_ids([[1, 2, 1, 2, 1, 1, 2, 2]] * 3))
    limit = predictor.orchestrator.calibration.settings.max_steps
    assert max(predictions.column("steps_taken").to_pylist()) <= limit
    lines = summarize(predictions, stopping).lines()
    assert any(
        line.startswith("stopping: ") and f"calibrated at update {STEPS}" in line for line in lines
    )
