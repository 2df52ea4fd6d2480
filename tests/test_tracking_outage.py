"""The tracking server down mid-run, and updates replayed after a restart (issue 27 b, c).

A real ``mlflow server`` (tests/rehearsal/servers.py) stopped by its PID and restarted on
the same port and database: rank 0's tracker (``MlflowTracker.for_training``) keeps
what was reported while it was away and records it when it returns; a tracker started
again on the same run (a restarted worker group replaying updates) records no step twice;
what never got through is counted and named.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient
from rehearsal.servers import MlflowServer, S3Server
from test_faults import FAULT_RUN
from train_fixtures import set_args

from refiner.runs.tracker import lost_summary
from refiner.tracking import open_run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers():
    s3 = S3Server(bucket="outage")
    server = MlflowServer(s3=s3)
    try:
        s3.start()
        server.start()
        yield server
    finally:
        server.close()
        s3.close()


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def report(tracker, step: int) -> None:
    tracker.log_metrics({"loss": 1.0 / step, "step": float(step)}, step)


def test_outage_is_buffered_replays_are_not_logged_twice_and_losses_are_named(servers, tmp_path):
    run = open_run(servers.uri, "outage", "buffered")
    client = MlflowClient(servers.uri)

    first = run.for_training()
    for step in range(1, 6):
        report(first, step)
    assert first.settle(60)  # before a checkpoint: what was reported is in the history
    assert steps_of(client, run.run_id, "loss") == list(range(1, 6))
    assert first.flush(60)["lost_points"] == 0
    servers.suspend()  # SIGSTOP: it answers nothing (a restart is the job test's)
    started = time.monotonic()
    for step in range(6, 11):  # returns without the server: training goes on
        report(first, step)
    table = tmp_path / "frontier.csv"
    table.write_text("steps,acc\n1,0.5\n")
    first.log_artifact(str(table), "calibration/update_000010")
    table.unlink()  # the loop's files live in temporary folders
    assert time.monotonic() - started < 5  # the loop did not wait on the frozen server
    time.sleep(3)  # the sender's health probe (2 s) finds the server away
    assert first.pending_points == 10  # 5 reports x 2 keys, kept
    waited = time.monotonic()
    assert not first.settle(10)  # before a checkpoint: no wait on a server known away
    assert time.monotonic() - waited < 1
    servers.resume()
    for step in range(11, 16):
        report(first, step)
    done = first.flush(60)
    assert done["lost_points"] == 0 and done["delivered_late"] >= 10, done
    assert done["outage_s"] > 0
    assert steps_of(client, run.run_id, "loss") == list(range(1, 16))
    (artifact,) = client.list_artifacts(run.run_id, "calibration/update_000010")
    assert artifact.path.endswith("frontier.csv")

    # A restarted worker group: a fresh tracker replays updates 11-15 from a checkpoint
    # at update 10, then goes on.
    replay = run.for_training()
    for step in range(11, 21):
        report(replay, step)
    assert replay.flush(10)["replayed_points_not_logged"] == 10  # 5 steps x 2 keys
    assert steps_of(client, run.run_id, "loss") == list(range(1, 21))
    assert steps_of(client, run.run_id, "step") == list(range(1, 21))
    # the values kept are the first attempt's (a replay's values may differ)
    assert {m.step: m.value for m in client.get_metric_history(run.run_id, "loss")}[15] == 1 / 15

    # The server never comes back within the retry time: counted and named.
    servers.suspend()
    report(replay, 21)
    replay.set_tags({"refiner.resumed_from_step": "20"})
    lost = replay.flush(2)
    servers.resume()
    assert lost["lost_points"] == 2 and lost["lost_keys"] == ["loss", "step"], lost
    assert lost["lost_tags"] == ["refiner.resumed_from_step"]
    line = lost_summary(lost)
    assert line == (
        "not recorded in MLflow: 2 metric points (loss, step); tags refiner.resumed_from_step"
    )
    assert steps_of(client, run.run_id, "loss") == list(range(1, 21))


def progress_steps(log: Path) -> list[int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(m) for m in re.findall(r"\[refiner\] update +(\d+)/", text)]


OUTAGE_S = 30.0  # issue 27's scenario c


@pytest.mark.ray
def test_training_outlasts_a_tracking_server_outage(servers, tmp_path):
    """jobs/train.py against the server; the server is stopped (SIGTERM to its process
    group) after update 20 and restarted on the same port and database 30 s later.
    Training goes on meanwhile (it may even end: then the end waits for the server)."""
    run_name = "outage-job"
    overrides = [
        *FAULT_RUN,
        "training.steps=300",
        "training.checkpoint_every=100",
        "training.tracking_retry_s=600",  # a restart takes 10-90 s here, by load
    ]
    log = tmp_path / "job.log"
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "train.py"), *set_args(overrides)]
        + ["--num-workers", "0", "--run-name", run_name, "--experiment", "outage-job"]
        + ["--tracking-uri", servers.uri, "--storage", str(tmp_path / "checkpoints")],
        cwd=tmp_path,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    outage: dict[str, float] = {}

    failed: list[BaseException] = []

    def inject() -> None:
        try:
            while max(progress_steps(log), default=0) < 20 and job.poll() is None:
                time.sleep(0.2)
            outage["at"] = max(progress_steps(log), default=0)
            servers.stop()
            time.sleep(OUTAGE_S)
            outage["until"] = max(progress_steps(log), default=0)
            servers.start()
        except BaseException as err:  # noqa: BLE001  (reported by the test below)
            failed.append(err)

    injector = threading.Thread(target=inject)
    injector.start()
    try:
        status = job.wait(timeout=900)  # a loaded 2-core machine: 10 min seen
    finally:
        if job.poll() is None:
            job.kill()
        injector.join(timeout=120)
        if not servers.running:
            servers.start()
    text = log.read_text(errors="replace")
    assert not failed, failed
    assert status == 0, text[-4000:]
    assert outage["until"] > outage["at"], (outage, text[-3000:])  # trained without it
    assert "unreachable" in text and "reachable again" in text, text[-3000:]

    client = MlflowClient(servers.uri)
    experiment = client.get_experiment_by_name("outage-job")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`mlflow.runName` = '{run_name}'")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert not [s for s, n in Counter(steps).items() if n > 1], "duplicate steps"
    assert set(range(5, 301, 5)) <= set(steps), sorted(set(range(5, 301, 5)) - set(steps))
    assert "refiner.tracking.lost" not in run.data.tags, run.data.tags  # nothing lost
    assert "metric points were recorded after it returned" in text
