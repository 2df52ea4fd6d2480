"""Scenario e: the job driver killed, twice, then the same --run-name finishes the run.

1. ``ray job stop`` while it trains (after its first checkpoint reached S3): the job is
   STOPPED, the driver's SIGTERM handler ends the MLflow run KILLED.
2. The same ``--run-name`` resubmitted resumes from S3; its driver process is then killed
   with SIGKILL (nothing runs in it any more: the MLflow run stays RUNNING, the workers die
   with their owner).
3. Submitted once more: it resumes from the newest complete S3 checkpoint into the same
   MLflow run and ends FINISHED with every update's metrics.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
from submission import (
    ONE_WORKER_PER_NODE,
    checkpoint_steps,
    train_command,
    wait_for_checkpoint_after,
)
from tiny_runs import TINY
from train_fixtures import set_args

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.rehearsal]

NAME = "driver-killed"
STEPS = 80  # job 1 must still be training when its stop takes effect (slow on a busy machine)
RUN = [
    *TINY,
    "orchestration.augmentation_count=4",
    "training.warmup_steps=0",
    ONE_WORKER_PER_NODE,
]


def command(rehearsal) -> list[str]:
    return train_command(NAME, rehearsal.storage(), *set_args(RUN)) + [
        "--num-workers", "2", "--steps", str(STEPS),
    ]  # fmt: skip


def wait_for_train_actors_gone(rehearsal, timeout: float = 120) -> None:
    """A killed driver's Train controller and workers die with their owner; wait for it."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{rehearsal.cluster.dashboard}/api/v0/actors?limit=1000&filter_keys=state"
            "&filter_predicates=%3D&filter_values=ALIVE",
            headers={"authorization": f"Bearer {rehearsal.cluster.head.auth_token()}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            actors = json.loads(response.read())["data"]["result"]["result"]
        if not any("Train" in (a.get("class_name") or "") for a in actors):
            return
        time.sleep(2)
    raise TimeoutError("Ray Train actors of the killed driver still alive")


def test_killed_driver_resumes_from_s3_into_the_same_mlflow_run(rehearsal):
    started = time.monotonic()
    rehearsal.submit("driver-1", command(rehearsal))
    wait_for_checkpoint_after(rehearsal, "driver-1", 0, name=NAME)
    rehearsal.stop_job("driver-1")
    assert rehearsal.wait("driver-1", timeout=120)["status"] == "STOPPED"
    first = checkpoint_steps(rehearsal, NAME)[-1]  # the newest when the job ended
    assert first < STEPS, "job 1 finished before its stop took effect"
    runs = rehearsal.runs_named(NAME)
    assert [r.info.status for r in runs] == ["KILLED"], rehearsal.logs("driver-1")[-3000:]
    run_id = runs[0].info.run_id
    print(f"e: job 1 stopped after the checkpoint at update {first}")

    rehearsal.submit("driver-2", command(rehearsal))
    second = wait_for_checkpoint_after(rehearsal, "driver-2", first, name=NAME)
    pids = rehearsal.driver_pids(f"--run-name {NAME}")
    assert len(pids) == 1, pids  # job 2's driver, training past job 1's last checkpoint
    os.kill(pids[0], signal.SIGKILL)
    killed_at = time.monotonic()
    assert rehearsal.wait("driver-2", timeout=120)["status"] == "FAILED"
    wait_for_train_actors_gone(rehearsal)
    assert rehearsal.runs_named(NAME)[0].info.status == "RUNNING"  # nobody closed it
    print(f"e: job 2 driver SIGKILLed after the checkpoint at update {second}")

    rehearsal.submit("driver-3", command(rehearsal))
    job = rehearsal.wait("driver-3", timeout=900)
    logs = rehearsal.logs("driver-3")
    assert job["status"] == "SUCCEEDED", logs[-4000:]
    recovered = time.monotonic() - killed_at
    runs = rehearsal.runs_named(NAME)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    resumed_from = int(runs[0].data.tags["refiner.resumed_from_step"])
    assert resumed_from >= second, (resumed_from, second)  # the newest complete checkpoint
    history = rehearsal.mlflow().get_metric_history(run_id, "loss")
    steps = [m.step for m in history]
    assert set(range(5, STEPS + 1, 5)) <= set(steps), steps  # no update's report lost
    duplicates = sorted(s for s, n in Counter(steps).items() if n > 1)
    print(
        f"e: job 3 resumed at update {resumed_from}, FINISHED {recovered:.0f} s after the "
        f"SIGKILL; {time.monotonic() - started:.0f} s in all; loss steps recorded twice: "
        f"{duplicates}"
    )
    assert duplicates == [], duplicates  # replayed updates are not logged again
