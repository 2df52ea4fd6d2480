"""`ray job submit` end to end against a real local head, as docs/cluster.md tells users.

One module-scoped head (loopback, private ports and temp dir, token auth). A tiny
training job must SUCCEED and leave a FINISHED MLflow run, with its Ray workers
importing `refiner` from the shipped `py_modules` (not from this checkout's editable
install); a longer job is stopped with `ray job stop` while it trains and must leave no
MLflow run RUNNING. The head is torn down without `ray stop`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from ray_head import VENV_BIN, LocalHead
from tiny_runs import TINY
from train_fixtures import set_args

from refiner.infer.halting import STOP_REASONS

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_ENV = json.dumps(
    # The stop grace period lets the driver end its MLflow run (the default is 3 s).
    {"py_modules": ["platform/refiner"], "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": "30"}}
)
# A tiny run, shorter still: 3 unrolled steps, 4 augmentations, no warm-up.
JOB_RUN = [
    *TINY,
    "orchestration.max_steps_train=3",
    "orchestration.backprop_truncate_steps=3",
    "orchestration.augmentation_count=4",
    "training.warmup_steps=0",
]


@pytest.fixture(scope="module")
def head():
    head = LocalHead(num_cpus=3)
    head.start()
    yield head
    stragglers = head.stop()
    assert not head.busy_ports(), f"head ports still bound: {head.busy_ports()}"
    assert not head.own_processes()
    print(f"head stopped; {len(stragglers)} stragglers killed by PID")


def ray_cli(head: LocalHead, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [os.path.join(VENV_BIN, "ray"), *args],
        cwd=ROOT,
        env=head.client_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"ray {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def submit(head: LocalHead, submission_id: str, entrypoint: list[str]) -> None:
    """`ray job submit --no-wait`; the CLI shell-quotes each entrypoint word."""
    ray_cli(
        head,
        "job",
        "submit",
        "--address",
        head.dashboard,
        "--submission-id",
        submission_id,
        "--working-dir",
        ".",
        "--runtime-env-json",
        RUNTIME_ENV,
        "--no-wait",
        "--",
        *entrypoint,
    )


def job_status(head: LocalHead, submission_id: str) -> str:
    """The job's status from the dashboard's REST API (what `ray job status` asks)."""
    request = urllib.request.Request(
        f"{head.dashboard}/api/jobs/{submission_id}",
        headers={"authorization": f"Bearer {head.auth_token()}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["status"]


def wait_for_status(head: LocalHead, submission_id: str, timeout: float) -> str:
    """Poll until the job reaches a terminal status; returns it."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = job_status(head, submission_id)
        if status in {"FAILED", "STOPPED", "SUCCEEDED"}:
            return status
        time.sleep(2)
    raise TimeoutError(f"job {submission_id} still {status} after {timeout} s")


def job_logs(head: LocalHead, submission_id: str) -> str:
    return ray_cli(head, "job", "logs", "--address", head.dashboard, submission_id)


def train_command(tmp: Path, run_name: str, steps: int) -> list[str]:
    return [
        "python", "jobs/train.py", *set_args(JOB_RUN), "--num-workers", "1",
        "--steps", str(steps),
        "--run-name", run_name,
        "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}",
        "--storage", str(tmp / "checkpoints"),
    ]  # fmt: skip


def runs_named(tmp: Path, run_name: str):
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("refiner")
    if experiment is None:
        return client, []
    return client, client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.runName` = '{run_name}'"
    )


@pytest.fixture(scope="module")
def jobs(head, tmp_path_factory) -> dict[str, Path]:
    """Submit both jobs up front: they run side by side, which halves the test's time."""
    tiny, long = tmp_path_factory.mktemp("tiny"), tmp_path_factory.mktemp("long")
    # The probe runs with the same runtime env, then the training job itself.
    train = shlex.join([*train_command(tiny, "submitted", 20), "--register-name", "submitted"])
    # Then the trained model predicts new inputs through jobs/predict.py, in the same job.
    inputs = shlex.join(
        ["python", "jobs/prepare_tasks.py", "--source", "parity", "--size", "8"]
        + ["--count", "32", "--seed", "7", "--out", str(tiny / "new.parquet")]
    )
    predict = shlex.join(
        ["python", "jobs/predict.py", "--model", "models:/submitted/1"]
        + ["--tracking-uri", f"sqlite:///{tiny / 'mlflow.db'}", "--num-workers", "1"]
        + ["--input", str(tiny / "new.parquet"), "--out", str(tiny / "predictions.parquet")]
    )
    chain = f"python tests/job_probe.py && {train} && {inputs} && {predict}"
    submit(head, "refiner-tiny", ["bash", "-c", chain])
    submit(head, "refiner-stopped", train_command(long, "stopped", 100_000))
    return {"tiny": tiny, "long": long}


def test_submitted_training_job_succeeds_and_is_tracked(head, jobs):
    started = time.monotonic()
    status = wait_for_status(head, "refiner-tiny", timeout=300)
    logs = job_logs(head, "refiner-tiny")
    assert status == "SUCCEEDED", logs[-4000:]

    where = json.loads(logs.split("PROBE ", 1)[1].splitlines()[0])
    assert "runtime_resources" in where["refiner"], where  # the shipped py_modules copy
    assert not where["refiner"].startswith(str(ROOT)), where  # not the editable install
    assert re.fullmatch(r"\d+\.\d+\.\d+", where["platform"])  # stdlib `platform` intact
    assert "attached to" in logs  # the driver joined the job's cluster, no private one

    client, runs = runs_named(jobs["tiny"], "submitted")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.steps"] == "20"
    assert run.data.params["model.d_model"] == "16"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [5, 10, 15, 20]
    assert run.data.tags["refiner.checkpoint"].startswith(str(jobs["tiny"] / "checkpoints"))
    assert run.data.tags["refiner.registered_model"] == "models:/submitted/1"
    # jobs/predict.py ran in the submitted job on the registered model: one row per input.
    predictions = pq.read_table(jobs["tiny"] / "predictions.parquet")
    assert predictions.num_rows == 32
    assert set(predictions.column("stopping_reason").to_pylist()) <= set(STOP_REASONS)
    assert "=== predictions ===" in logs
    print(f"tiny job: SUCCEEDED {time.monotonic() - started:.0f} s after the head was up")


def test_stopped_job_leaves_no_run_running(head, jobs):
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until it is really training: metrics in MLflow
        client, runs = runs_named(jobs["long"], "stopped")
        if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
            break
        assert job_status(head, "refiner-stopped") in {"PENDING", "RUNNING"}
        time.sleep(2)
    else:
        raise TimeoutError(job_logs(head, "refiner-stopped")[-4000:])
    assert runs[0].info.status == "RUNNING"

    ray_cli(head, "job", "stop", "--address", head.dashboard, "refiner-stopped")
    assert wait_for_status(head, "refiner-stopped", timeout=60) == "STOPPED"
    _, runs = runs_named(jobs["long"], "stopped")
    assert [r.info.status for r in runs] == ["KILLED"], job_logs(head, "refiner-stopped")[-3000:]
