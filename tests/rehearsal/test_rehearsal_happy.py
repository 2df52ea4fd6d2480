"""Scenario a (the happy path) and the storage guard, on the shared rehearsal cluster.

a. ``ray job submit`` as docs/cluster.md says: 2 DDP workers, one on each worker node
   (their node ids recorded from inside the workers), checkpoints to ``s3://`` on the S3
   server, metrics and the model to the MLflow server over HTTP, the model registered;
   then fresh processes (``jobs/evaluate.py``, ``jobs/predict.py``, ``mlflow models
   serve`` answering one HTTP request) load ``models:/NAME/1`` from the server, with no
   S3 settings of their own (the server proxies the artifacts).
Guard: the same job with a local ``--storage`` path on this multi-node cluster is refused
before any compute: exit status 2, naming --storage and what works, no MLflow run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray_head import VENV_BIN, free_port
from submission import ONE_WORKER_PER_NODE, ROOT, train_command
from tiny_runs import TINY
from train_fixtures import set_args

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.rehearsal]

MODEL = "rehearsal-happy"
RUN = [
    *TINY,
    "orchestration.augmentation_count=4",
    "training.warmup_steps=0",
    ONE_WORKER_PER_NODE,
]


@pytest.fixture(scope="module")
def submitted(rehearsal, tmp_path_factory) -> dict:
    """Both jobs go in at once (they run side by side); the happy one is waited for."""
    local = tmp_path_factory.mktemp("guard") / "checkpoints"
    rehearsal.submit(
        "happy",
        train_command("happy", rehearsal.storage(), *set_args(RUN))
        + ["--num-workers", "2", "--steps", "20", "--register-name", MODEL],
    )
    rehearsal.submit(
        "guard", train_command("guard", str(local), *set_args(RUN)) + ["--num-workers", "2"]
    )
    started = time.monotonic()
    job = rehearsal.wait("happy", timeout=900)
    print(f"happy path: {job['status']} in {time.monotonic() - started:.0f} s")
    return {"happy": job, "local": local}


def test_happy_path_trains_across_nodes_into_s3_and_the_server(rehearsal, submitted):
    logs = rehearsal.logs("happy")
    assert submitted["happy"]["status"] == "SUCCEEDED", logs[-5000:]
    assert "attached to" in logs  # the driver joined the cluster, no private Ray
    runs = rehearsal.runs_named("happy")
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]

    # Two DDP ranks on two different worker nodes (never the head), from the workers.
    ranks = run.data.tags["refiner.worker_nodes"].split(",")
    worker_nodes = {node.node_id() for node in rehearsal.cluster.nodes}
    assert len(ranks) == 2 and len(set(ranks)) == 2, ranks
    assert set(ranks) == worker_nodes, (ranks, worker_nodes)

    # Checkpoints went to the S3 server, through pyarrow's S3 filesystem on the workers.
    assert run.data.tags["refiner.checkpoint"].startswith(f"{rehearsal.storage()}/happy/")
    keys = rehearsal.s3.keys("checkpoints/happy/")
    assert any(k.endswith("/checkpoint.pt") for k in keys), keys

    # Metrics over HTTP; the model's artifacts proxied by the server into the bucket.
    history = rehearsal.mlflow().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [5, 10, 15, 20]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = rehearsal.s3.keys("artifacts/")
    assert any(run.info.run_id in k and k.endswith("MLmodel") for k in stored) or any(
        k.endswith("MLmodel") for k in stored
    ), stored
    assert run.data.tags["refiner.registered_model"] == f"models:/{MODEL}/1"
    version = rehearsal.mlflow().get_model_version(MODEL, "1")
    assert version.run_id == run.info.run_id


def fresh_env(rehearsal) -> dict[str, str]:
    """A client that knows only the tracking server: no S3 endpoint, no credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    env.pop("RAY_ADDRESS", None)
    return {**env, "MLFLOW_TRACKING_URI": rehearsal.mlflow_server.uri, "PYTHONUNBUFFERED": "1"}


def run_job(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{args[0]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_registered_model_loads_from_the_server_in_fresh_processes(
    rehearsal, submitted, tmp_path: Path
):
    assert submitted["happy"]["status"] == "SUCCEEDED"
    env = fresh_env(rehearsal)
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(
            [os.path.join(VENV_BIN, "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/1",
             "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        out = run_job(
            ["jobs/evaluate.py", "--checkpoint", f"models:/{MODEL}/1", "--task", "parity"]
            + ["--size", "8", "--count", "64", "--max-rows", "64"],
            env,
        )
        assert "exact" in out.lower() or "acc" in out.lower(), out[-2000:]

        inputs, predictions = tmp_path / "new.parquet", tmp_path / "predictions.parquet"
        run_job(
            ["jobs/prepare_tasks.py", "--source", "parity", "--size", "8", "--count", "16"]
            + ["--seed", "7", "--out", str(inputs)],
            env,
        )
        run_job(
            ["jobs/predict.py", "--model", f"models:/{MODEL}/1", "--num-workers", "1"]
            + ["--input", str(inputs), "--out", str(predictions)],
            env,
        )
        import pyarrow.parquet as pq

        assert pq.read_table(predictions).num_rows == 16

        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, tmp_path / "serve.log")
        body = {"dataframe_records": [{"input": [4, 5, 4, 5, 5]}, {"input": [5, 4, 4]}]}
        request = urllib.request.Request(
            f"{base}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            rows = json.loads(response.read())["predictions"]
        assert [r["task_id"] for r in rows] == ["row-0", "row-1"]
        assert all(r["steps_taken"] >= 1 for r in rows)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def wait_until_serving(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert server.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    raise TimeoutError(log.read_text()[-3000:])


def test_local_storage_on_a_multi_node_cluster_is_refused_before_compute(rehearsal, submitted):
    job = rehearsal.wait("guard", timeout=300)
    logs = rehearsal.logs("guard")
    assert job["status"] == "FAILED", logs[-3000:]
    assert "exit code 2" in (job.get("message") or ""), job.get("message")
    assert "--storage" in logs and "s3://" in logs and "REFINER_SHARED_STORAGE=1" in logs, logs
    assert "3 nodes" in logs, logs
    assert rehearsal.runs_named("guard") == []  # refused before an MLflow run exists
    assert not list(submitted["local"].glob("guard*")), "nothing written"
