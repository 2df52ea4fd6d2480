"""The object store unreachable while a checkpoint is written; half-written checkpoints.

A real S3 server (moto's standalone server, tests/rehearsal/servers.py) stopped by its
PID: a checkpoint write is retried with backoff until it returns, or fails with one
error naming the store; a checkpoint folder left half-written in the bucket is never
taken for a checkpoint, neither by ``list_checkpoints`` nor by a resumed run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from rehearsal.servers import S3Server
from test_faults import FAULT_RUN
from train_fixtures import set_args

from refiner.checkpoints.storage import (
    CHECKPOINT_META,
    StorageUnreachable,
    filesystem,
    list_checkpoints,
    upload_checkpoint,
    write_checkpoint_meta,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3():
    server = S3Server(bucket="faults")
    old = {k: os.environ.get(k) for k in server.client_env()}
    try:
        server.start()
        os.environ.update(server.client_env())  # pyarrow's s3:// in this process
        yield server
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.close()


def local_checkpoint(directory: Path, step: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "checkpoint.pt").write_bytes(os.urandom(50_000))
    (directory / "config.yaml").write_text("seed: 0\n")
    write_checkpoint_meta(directory, {"step": step, "epoch": 0, "metrics": {}})
    return directory


def test_half_written_checkpoint_folders_are_not_checkpoints(s3, tmp_path):
    run_dir = f"s3://{s3.bucket}/half/run"
    fs, root = filesystem(run_dir)
    complete = local_checkpoint(tmp_path / "c10", 10)
    upload_checkpoint(str(complete), fs, f"{root}/checkpoint_10", retry_s=0)
    # Ray Train's own copy has no order: meta.json may land before checkpoint.pt.
    meta_first = local_checkpoint(tmp_path / "c20", 20)
    with fs.open_output_stream(f"{root}/checkpoint_20/{CHECKPOINT_META}") as out:
        out.write((meta_first / CHECKPOINT_META).read_bytes())
    with fs.open_output_stream(f"{root}/checkpoint_20/checkpoint.pt") as out:
        out.write((meta_first / "checkpoint.pt").read_bytes()[:1000])  # cut short
    # Our upload interrupted: everything but meta.json (it goes last).
    with fs.open_output_stream(f"{root}/checkpoint_30/checkpoint.pt") as out:
        out.write(b"x" * 50_000)
    assert [step for step, _ in list_checkpoints(run_dir)] == [10]


def test_a_checkpoint_write_is_retried_until_the_store_returns(s3, tmp_path, capfd):
    fs, root = filesystem(f"s3://{s3.bucket}/retried")
    local = local_checkpoint(tmp_path / "c", 40)
    s3.stop()  # SIGTERM to its process group: connections refused
    # Down longer than pyarrow's own retries (about 6 s); moto keeps objects in memory, so
    # it comes back with a fresh, empty bucket.
    restart = threading.Timer(15.0, s3.start)
    restart.start()
    try:
        upload_checkpoint(str(local), fs, f"{root}/checkpoint_40", retry_s=300)
    finally:
        restart.join()
    assert "retrying in" in capfd.readouterr().err
    assert [step for step, _ in list_checkpoints(f"s3://{s3.bucket}/retried")] == [40]


def test_a_store_that_stays_down_fails_with_one_clear_error(s3, tmp_path):
    fs, root = filesystem(f"s3://{s3.bucket}/down")
    local = local_checkpoint(tmp_path / "c", 50)
    s3.stop()
    try:
        with pytest.raises(StorageUnreachable) as raised:
            upload_checkpoint(str(local), fs, f"{root}/checkpoint_50", retry_s=3)
    finally:
        s3.start()
    message = str(raised.value)
    assert message.startswith(f"checkpoint storage unreachable: could not write {root}/")
    assert "training.storage_retry_s=3" in message and "\n" not in message


@pytest.mark.ray
def test_resumed_run_on_s3_skips_a_half_written_checkpoint(s3, tmp_path):
    """jobs/train.py with one Ray Train worker and --storage s3://: Ray Train uploads
    through our retrying upload. A newer half-written folder is planted; the resumed
    run starts from the last complete checkpoint."""
    storage = f"s3://{s3.bucket}/jobs"
    db = tmp_path / "mlflow.db"
    common = ["--num-workers", "1", "--run-name", "s3run", "--storage", storage]
    common += ["--tracking-uri", f"sqlite:///{db}"]
    overrides = [*FAULT_RUN, "training.checkpoint_every=10", "training.num_to_keep=1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}

    def train(steps: int, *extra: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "train.py"), *set_args(overrides)]
            + [*common, "--steps", str(steps), *extra],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout + done.stderr

    train(20)
    run_dir = f"{storage}/s3run"
    assert [step for step, _ in list_checkpoints(run_dir)] == [20]
    fs, root = filesystem(run_dir)
    # A newer folder as an upload cut short leaves it: checkpoint.pt, no meta.json.
    with fs.open_output_stream(f"{root}/checkpoint_2099-01-01_00-00-00.000000/checkpoint.pt") as f:
        f.write(b"not a checkpoint")
    # ... and one whose meta.json arrived before its checkpoint.pt was complete.
    meta = {"step": 990, "epoch": 0, "metrics": {}, "files": {"checkpoint.pt": 10**6}}
    with fs.open_output_stream(f"{root}/checkpoint_2099-01-02_00-00-00.000000/meta.json") as f:
        f.write(json.dumps(meta).encode())

    log = train(30, "--allow-config-change")
    assert re.search(r"resumed at update 20\b", log), log[-3000:]
    # The planted folders are never listed; the resumed run's checkpoint is the newest.
    # (Ray Train's num_to_keep does not prune the first run's checkpoint after a resume.)
    steps = [step for step, _ in list_checkpoints(run_dir)]
    assert steps[-1] == 30 and set(steps) <= {20, 30}, steps
    client = MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("refiner").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["refiner.resumed_from_step"] == "20"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == sorted(set(steps)) and {5, 10, 15, 20, 25, 30} <= set(steps)
