"""The training loop in Ray Train's local mode (num_workers=0): cadence, checkpoints, resume."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from tiny_runs import TINY

from refiner.checkpoints.files import read_checkpoint
from refiner.checkpoints.storage import list_checkpoints
from refiner.config.experiment import prepare_experiment
from refiner.distributed.trainer import run_training
from refiner.tracking import tracked_run

pytestmark = [pytest.mark.slow, pytest.mark.ray]

LOCAL = [*TINY, "training.num_workers=0", "orchestration.augmentation_count=2"]


def train(tmp_path, steps: int, *overrides: str):
    config, tasks = prepare_experiment(None, [*LOCAL, f"training.steps={steps}", *overrides])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "local", "run") as tracker:
        outcome = run_training(config, tasks, "run", str(tmp_path / "storage"), tracker)
    return outcome, MlflowClient(uri), tracker.run_id


def test_local_mode_reports_checkpoints_and_resumes(local_ray, tmp_path) -> None:
    outcome, client, run_id = train(tmp_path, steps=35)

    # 230 training tasks x 2 augmentations = 460 rows = 28.75 updates of 16 per epoch.
    rows_per_epoch = 230 * 2
    epoch_end = math.ceil(rows_per_epoch / 16)
    assert epoch_end == 29
    logged = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert logged == sorted({*range(5, 36, 5), epoch_end, 35})
    epochs = {m.step: m.value for m in client.get_metric_history(run_id, "epoch")}
    assert epochs[25] == 0 and epochs[epoch_end] == 0 and epochs[30] == 1
    assert "val_acc_infer" in outcome.metrics and outcome.summary["step"] == 35

    # Checkpoints every 10 updates, at the epoch end and at the end; the newest 2 kept.
    kept = list_checkpoints(outcome.run_dir)
    assert [step for step, _ in kept] == [30, 35]
    assert outcome.checkpoint == kept[-1][1]
    payload = read_checkpoint(f"{outcome.checkpoint}/checkpoint.pt")
    assert payload["extra"]["step"] == 35 and payload["extra"]["epoch"] == 1

    # Same run name, more updates: continues from update 35 into the same MLflow run.
    resumed, client, resumed_id = train(tmp_path, steps=45)
    assert resumed_id == run_id
    assert client.get_run(run_id).data.tags["refiner.resumed_from_step"] == "35"
    assert client.get_run(run_id).info.status == "FINISHED"
    logged = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert logged[-2:] == [40, 45] and len(logged) == len(set(logged))
    assert resumed.summary["step"] == 45
    assert [step for step, _ in list_checkpoints(resumed.run_dir)] == [40, 45]


def test_epoch_ends_need_not_checkpoint(local_ray, tmp_path) -> None:
    """training.checkpoint_at_epoch_end=false: only every checkpoint_every updates and at
    the end (a task file whose epoch is a few updates would otherwise validate constantly)."""
    outcome, client, run_id = train(tmp_path, 30, "training.checkpoint_at_epoch_end=false")
    logged = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert logged == list(range(5, 31, 5))  # no report at the epoch end (update 29)
    validated = [m.step for m in client.get_metric_history(run_id, "val_acc_infer")]
    assert validated == [10, 20, 30]
