"""Resuming a run name with a changed config: refused (exit 2, nothing written) unless
``--allow-config-change``, which records the changes as a tag of the resumed run.

The existing run is made the way ``jobs/train.py`` makes it (``tracked_run`` and the
resolved config as params) in a real SQLite store; the job then runs for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from train_fixtures import REPO, TINY, run_train_job, set_args

from refiner.config.experiment import prepare_experiment
from refiner.tracking import tracked_run
from refiner.tracking.resume import CHANGES_TAG, ConfigChangedError, check_resume, config_changes

LOCAL = [*TINY, "training.num_workers=0", "orchestration.augmentation_count=2"]


def existing_run(tmp_path: Path, steps: int, base: Path | None = None) -> tuple[str, str]:
    """A finished run named "again" whose params are the config ``base`` + ``LOCAL`` + steps."""
    config, _ = prepare_experiment(base, [*LOCAL, f"training.steps={steps}"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "refiner", "again") as tracker:
        tracker.log_params(config.to_dict())
    return uri, tracker.run_id


def test_changed_keys_are_listed_and_an_unchanged_config_passes(tmp_path: Path) -> None:
    uri, _ = existing_run(tmp_path, steps=10)
    same, _ = prepare_experiment(None, [*LOCAL, "training.steps=10"])
    assert config_changes(uri, "refiner", "again", same.to_dict()) == {}
    assert check_resume(uri, "refiner", "again", same.to_dict()) == {}
    changed, _ = prepare_experiment(None, [*LOCAL, "training.steps=20", "training.lr=0.01"])
    assert config_changes(uri, "refiner", "again", changed.to_dict()) == {
        "training.lr": ("0.002", "0.01"),
        "training.steps": ("10", "20"),
    }
    with pytest.raises(ConfigChangedError, match=r"training.lr: 0.002 -> 0.01; training.steps"):
        check_resume(uri, "refiner", "again", changed.to_dict())
    tags = check_resume(uri, "refiner", "again", changed.to_dict(), allow_change=True)
    assert json.loads(tags[CHANGES_TAG]) == {
        "training.lr": ["0.002", "0.01"],
        "training.steps": ["10", "20"],
    }
    # Another run name, another experiment or no store at all: nothing to compare with.
    assert config_changes(uri, "refiner", "other", changed.to_dict()) == {}
    assert config_changes(uri, "elsewhere", "again", changed.to_dict()) == {}
    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert config_changes(missing, "refiner", "again", changed.to_dict()) == {}
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_the_job_refuses_a_changed_config_unless_allowed(tmp_path: Path) -> None:
    uri, run_id = existing_run(tmp_path, steps=10, base=REPO / "jobs" / "configs" / "parity.yaml")
    client = MlflowClient(uri)
    before = client.get_run(run_id)
    args = [*set_args(LOCAL), "--steps", "20", "--run-name", "again"]

    refused = run_train_job(tmp_path, *args)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "training.steps: 10 -> 20" in refused.stderr
    assert "--allow-config-change" in refused.stderr
    after = client.get_run(run_id)  # nothing written: same run, params, tags, status
    assert after.data.params == before.data.params and after.data.tags == before.data.tags
    assert after.info.status == "FINISHED" and after.data.metrics == {}
    assert not (tmp_path / "storage" / "again").exists()
    assert len(client.search_runs([before.info.experiment_id])) == 1

    allowed = run_train_job(tmp_path, *args, "--allow-config-change")
    assert allowed.returncode == 0, allowed.stdout[-2000:] + allowed.stderr[-3000:]
    (run,) = client.search_runs([before.info.experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert json.loads(run.data.tags[CHANGES_TAG]) == {"training.steps": ["10", "20"]}
    assert run.data.params["training.steps"] == "10"  # MLflow params are write-once
    assert [m.step for m in client.get_metric_history(run_id, "loss")][-1] == 20
