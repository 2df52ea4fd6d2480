"""Runs say where they came from: code version, user, command line, the tasks read (an
MLflow dataset input) and the machine's load (MLflow system metrics).

The git part runs against real throwaway repositories and a folder without ``.git``
(what ``ray job submit`` uploads); the run part is a real local-mode training run
(``num_workers=0``) into a real SQLite MLflow store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from mlflow import MlflowClient
from train_fixtures import TINY

from refiner.config.experiment import prepare_experiment
from refiner.distributed.trainer import run_training
from refiner.runs.provenance import (
    COMMIT_ENV,
    UNKNOWN,
    command_line,
    describe_task_dataset,
    git_state,
    run_provenance,
    table_digest,
)
from refiner.tasks.sources import load_tasks
from refiner.tracking import tracked_run

REPO = Path(__file__).resolve().parents[1]


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "code.py").write_text("x = 1\n")
    git(folder, "add", "code.py")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return folder


def test_git_commit_and_dirty_state_of_a_checkout(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == (head, "false")
    (repo / "stray.txt").write_text("untracked files are not a code change\n")
    assert git_state(repo) == (head, "false")
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(repo) == (head, "true")


def test_a_copy_without_git_says_unknown_or_what_the_submitter_set(
    tmp_path: Path, monkeypatch, repo: Path
) -> None:
    copy = tmp_path / "uploaded"  # `ray job submit --working-dir .` ships no .git
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    assert git_state(copy) == (UNKNOWN, UNKNOWN)
    monkeypatch.setenv(COMMIT_ENV, "abc123")
    assert git_state(copy) == ("abc123", UNKNOWN)


def test_no_git_binary_says_unknown(repo: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    assert git_state(repo) == (UNKNOWN, UNKNOWN)


def test_command_line_is_shell_quoted() -> None:
    assert command_line(["jobs/train.py", "--set", "a=b c"]) == "python jobs/train.py --set 'a=b c'"


def test_the_project_checkout_is_recognised() -> None:
    tags = run_provenance(["jobs/train.py"])
    assert tags["refiner.git_commit"] == git(REPO, "rev-parse", "HEAD")
    assert tags["refiner.git_dirty"] in ("true", "false")
    assert tags["refiner.user"] and tags["refiner.command"] == "python jobs/train.py"


def test_table_digest_follows_the_values() -> None:
    tasks = load_tasks("parity", count=32, seed=0)
    assert table_digest(tasks) == table_digest(
        pa.concat_tables([tasks.slice(0, 7), tasks.slice(7)])
    )
    assert table_digest(tasks) != table_digest(load_tasks("parity", count=32, seed=1))
    assert table_digest(tasks) != table_digest(tasks.slice(1))


def test_task_dataset_of_a_file_and_of_a_builtin(tmp_path: Path) -> None:
    tasks = load_tasks("parity", count=32, seed=0)
    import pyarrow.parquet as pq

    pq.write_table(tasks, tmp_path / "tasks.parquet")
    from_file = describe_task_dataset(str(tmp_path / "tasks.parquet"), tasks)
    assert from_file.is_file and from_file.source == str(tmp_path / "tasks.parquet")
    assert from_file.name == "tasks.parquet" and from_file.num_rows == 32
    assert sum(from_file.splits.values()) == 32
    builtin = describe_task_dataset("parity", tasks, {"count": 32, "size": None})
    assert not builtin.is_file and builtin.source == "builtin:parity"
    assert builtin.options == {"count": "32"} and builtin.digest == from_file.digest


@pytest.mark.slow
@pytest.mark.ray
def test_a_local_training_run_records_where_it_came_from(
    local_ray, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    config, tasks = prepare_experiment(
        None,
        [
            *TINY,
            "training.num_workers=0",
            "orchestration.augmentation_count=2",
            "training.steps=10",
        ],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "provenance", "run") as tracker:
        run_training(config, tasks, "run", str(tmp_path / "storage"), tracker)
    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)

    tags = run.data.tags
    assert tags["refiner.git_commit"] == git(REPO, "rev-parse", "HEAD")
    assert tags["refiner.git_dirty"] in ("true", "false")
    assert tags["refiner.user"] not in ("", UNKNOWN)
    assert tags["refiner.command"].startswith("python ")

    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "parity" and dataset.digest == table_digest(tasks)
    assert dataset.source_type == "code"
    assert json.loads(dataset.source)["tags"]["refiner.source"] == "builtin:parity"
    profile = json.loads(dataset.profile)
    assert profile["num_rows"] == tasks.num_rows == 256
    assert profile["splits"] == {"train": 230, "val": 26}
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}

    system = {k: v for k, v in run.data.metrics.items() if k.startswith("system/")}
    assert "system/cpu_utilization_percentage" in system, sorted(run.data.metrics)
    assert system["system/system_memory_usage_megabytes"] > 0
