"""Scenario b: a worker node killed mid-run (its raylet and everything on it, SIGKILL).

The choice (docs/cluster.md): the run keeps its size and **waits for the node to come
back**, as the autoscaler replaces a lost spot node. Ray Train counts the lost worker
group as one failure (``training.max_failures``), waits until 2 nodes hold a
``rehearsal_worker`` again, and the new group resumes from the newest complete S3
checkpoint: update counter, optimizer and data epoch, in the same MLflow run, which ends
FINISHED. (Elastic ``num_workers=(min, max)`` would change the global batch and so the
data stream's position mid-epoch; not taken.)
"""

from __future__ import annotations

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

NAME = "node-killed"
STEPS = 40
RUN = [
    *TINY,
    "orchestration.augmentation_count=4",
    "training.warmup_steps=0",
    ONE_WORKER_PER_NODE,
]


def test_killed_worker_node_is_waited_for_and_the_run_resumes_from_s3(rehearsal):
    command = train_command(NAME, rehearsal.storage(), *set_args(RUN)) + [
        "--num-workers", "2", "--steps", str(STEPS),
    ]  # fmt: skip
    rehearsal.submit("node-1", command)
    at = wait_for_checkpoint_after(rehearsal, "node-1", 0, name=NAME)
    old = rehearsal.cluster.node(2).node_id()
    killed = rehearsal.cluster.kill_node(2)
    killed_at = time.monotonic()
    assert killed, "no process of node 2 found"
    time.sleep(10)  # the node is gone for a while, as a reclaimed spot instance
    rehearsal.cluster.add_node(2)
    job = rehearsal.wait("node-1", timeout=900)
    logs = rehearsal.logs("node-1")
    assert job["status"] == "SUCCEEDED", logs[-5000:]
    recovered = time.monotonic() - killed_at

    runs = rehearsal.runs_named(NAME)
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    resumed_from = int(run.data.tags["refiner.resumed_from_step"])
    assert resumed_from >= at, (resumed_from, at)
    ranks = run.data.tags["refiner.worker_nodes"].split(",")
    # The new group: two nodes alive now, not the killed one. (The GCS lists a killed node
    # as alive for a while, so its id is only compared once the run is over.)
    alive = set(rehearsal.cluster.alive_node_ids())
    assert old not in ranks and len(set(ranks)) == 2 and set(ranks) <= alive, (ranks, old)
    assert checkpoint_steps(rehearsal, NAME)[-1] == STEPS
    steps = [m.step for m in rehearsal.mlflow().get_metric_history(run.info.run_id, "loss")]
    assert set(range(5, STEPS + 1, 5)) <= set(steps), steps
    duplicates = sorted(s for s, n in Counter(steps).items() if n > 1)
    print(
        f"b: node 2 killed after the checkpoint at update {at} ({len(killed)} processes), "
        f"back 10 s later; resumed at update {resumed_from}, FINISHED {recovered:.0f} s after "
        f"the kill; loss steps recorded twice: {duplicates}"
    )
    assert duplicates == [], duplicates  # replayed updates are not logged again
