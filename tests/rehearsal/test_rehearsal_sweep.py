"""Scenario f: a sweep across the cluster, a worker node lost mid-sweep, then ``--resume``.

``jobs/sweep.py`` goes in with ``ray job submit`` as docs/cluster.md says: 4 trials
(tests/rehearsal/sweep_space.yaml), 2 at a time, each trial's one Ray Train worker on a
worker node of its own (``rehearsal_worker``), trial checkpoints and Tune's experiment
state on the S3 server, a parent run and one child run per trial on the MLflow server.

Once the trial on worker node 2 has a checkpoint in S3, node 2 is SIGKILLed (its whole
process group) and started again 10 s later, as a replaced spot node. Sweep trials run
with ``training.max_failures: 0`` (jobs/configs/sweep.yaml), so the trial that lost its
worker errors (and any trial whose Tune actor was on node 2), the others go on, and the
job ends FAILED (exit status 1) naming the ``--resume`` command. That command, submitted
as a second job, re-runs only the errored trials from their newest S3 checkpoints, into
the same child runs.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from submission import ONE_WORKER_PER_NODE, checkpoint_steps
from tiny_runs import TINY_SWEEP

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.rehearsal]

NAME = "rehearsal-sweep"
EXPERIMENT = "refiner-sweeps"  # jobs/sweep.py's default
PREFIX = "sweeps"  # --storage s3://BUCKET/sweeps
TRIALS = 4  # sweep_space.yaml: a grid of 4 learning rates
STEPS = 40  # checkpoints (and reports) at 10, 20, 30, 40 (TINY_SWEEP)
SPACE = "tests/rehearsal/sweep_space.yaml"  # relative: the job's working dir is this checkout
QUIET = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}  # keeps the job's log readable
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY_ROW = re.compile(r"\b([0-9a-f]{5}_\d{5}) +(done|error|stopped) +\d+ ")  # format_summary


def sweep_command(rehearsal, *args: str) -> list[str]:
    return ["python", "jobs/sweep.py", "--storage", rehearsal.storage(PREFIX), *args]


def summary(logs: str) -> dict[str, str]:
    """Trial id -> status, from the job's end-of-sweep table."""
    return dict(SUMMARY_ROW.findall(ANSI.sub("", logs)))


def sweep_runs(rehearsal) -> tuple[list, dict]:
    """The sweep's parent runs and its child runs by trial id, from the MLflow server."""
    client = rehearsal.mlflow()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return [], {}
    runs = client.search_runs([experiment.experiment_id], f"tags.`refiner.sweep` = '{NAME}'")
    parents = [r for r in runs if r.data.tags.get("refiner.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("refiner.kind") == "trial"]
    children = {r.data.tags["refiner.trial_id"]: r for r in trials}
    assert len(children) == len(trials), "a trial with two child runs"
    return parents, children


def trial_checkpoints(rehearsal, trial_id: str) -> list[int]:
    return checkpoint_steps(rehearsal, f"{NAME}-{trial_id}", prefix=f"{PREFIX}/{NAME}.trials")


def wait_for_checkpointed_trial_on(rehearsal, node_id: str, timeout: float = 600) -> str:
    """The trial whose worker runs on ``node_id``, once it has a checkpoint in S3."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, children = sweep_runs(rehearsal)
        for trial_id, run in children.items():
            if run.data.tags.get("refiner.worker_nodes") == node_id:
                steps = trial_checkpoints(rehearsal, trial_id)
                if steps:
                    assert steps[-1] < STEPS, f"trial {trial_id} ended before the kill"
                    return trial_id
        status = rehearsal.job("sweep-1")["status"]
        assert status in {"PENDING", "RUNNING"}, rehearsal.logs("sweep-1")[-4000:]
        time.sleep(1)
    raise TimeoutError(rehearsal.logs("sweep-1")[-4000:])


def tune_trial_states(rehearsal) -> dict[str, str]:
    """Trial id -> Tune's status, read back from the experiment state Tune keeps in S3."""
    import pyarrow.fs as pafs
    from ray.tune import ExperimentAnalysis

    fs = pafs.S3FileSystem(
        endpoint_override=rehearsal.s3.endpoint,
        scheme="http",
        access_key="rehearsal",
        secret_key="rehearsal-secret",
        region="us-east-1",
    )
    analysis = ExperimentAnalysis(f"{rehearsal.bucket}/{PREFIX}/{NAME}", storage_filesystem=fs)
    return {t.trial_id: t.status for t in analysis.trials}


def test_sweep_across_nodes_survives_a_lost_node_and_resumes(rehearsal):
    started = time.monotonic()
    node_ids = {i: rehearsal.cluster.node(i).node_id() for i in (1, 2)}
    rehearsal.submit(
        "sweep-1",
        sweep_command(rehearsal, "--space", SPACE, "--name", NAME, "--steps", str(STEPS))
        + [f"--set={s}" for s in [*TINY_SWEEP, ONE_WORKER_PER_NODE]],
        **QUIET,
    )
    victim = wait_for_checkpointed_trial_on(rehearsal, node_ids[2])
    at = trial_checkpoints(rehearsal, victim)[-1]
    print(f"f: {time.monotonic() - started:.0f} s: trial {victim} on node 2 has update {at}")
    killed = rehearsal.cluster.kill_node(2)
    killed_at = time.monotonic()
    assert killed, "no process of node 2 found"
    time.sleep(10)  # gone for a while, as a reclaimed spot instance
    rehearsal.cluster.add_node(2)
    print(f"f: node 2 back {time.monotonic() - killed_at:.0f} s after the kill")

    first = rehearsal.wait("sweep-1", timeout=900)
    logs = rehearsal.logs("sweep-1")
    assert first["status"] == "FAILED" and "exit code 1" in (first.get("message") or ""), (
        first.get("message"),
        logs[-4000:],
    )
    resume_hint = f"python jobs/sweep.py --resume {NAME} --storage {rehearsal.storage(PREFIX)}"
    assert resume_hint in ANSI.sub("", logs), logs[-4000:]
    rows = summary(logs)
    assert len(rows) == TRIALS and rows[victim] == "error", rows
    errored = sorted(t for t, status in rows.items() if status == "error")
    parents, children = sweep_runs(rehearsal)
    assert [p.info.status for p in parents] == ["FAILED"]  # incomplete until --resume
    assert sorted(children) == sorted(rows), (children, rows)
    assert {t for t, r in children.items() if r.info.status == "FAILED"} == set(errored)
    # The trials' workers, recorded by the workers: both worker nodes of the first attempt.
    placed = {t: r.data.tags.get("refiner.worker_nodes") for t, r in children.items()}
    assert placed[victim] == node_ids[2] and node_ids[1] in placed.values(), (placed, node_ids)
    before = {  # what the killed trial had logged: its replay must not log it again
        t: max((m.step for m in rehearsal.mlflow().get_metric_history(r.info.run_id, "loss")),
               default=0)
        for t, r in children.items()
    }  # fmt: skip
    finished_checkpoints = {t: trial_checkpoints(rehearsal, t) for t in rows if t not in errored}
    # A trial whose Tune actor (not its worker) sat on node 2 errors too, possibly before
    # its first checkpoint: that one starts again from update 0, untagged.
    checkpointed = {t for t in errored if trial_checkpoints(rehearsal, t)}
    first_done = time.monotonic()
    print(f"f: {first_done - started:.0f} s: first job {first['status']}, errored {errored}")

    rehearsal.submit("sweep-2", sweep_command(rehearsal, "--resume", NAME), **QUIET)
    second = rehearsal.wait("sweep-2", timeout=900)
    resume_logs = rehearsal.logs("sweep-2")
    assert second["status"] == "SUCCEEDED", resume_logs[-5000:]
    recovered = time.monotonic() - killed_at
    resume_s = time.monotonic() - first_done

    # Tune: every trial TERMINATED; only the errored ones ran again, to the end.
    assert summary(resume_logs) == dict.fromkeys(rows, "done"), resume_logs[-4000:]
    assert tune_trial_states(rehearsal) == dict.fromkeys(rows, "TERMINATED")
    clean = ANSI.sub("", resume_logs)
    for trial_id in rows:
        assert (f"[sweep] {trial_id}  step" in clean) == (trial_id in errored), clean[-4000:]
    for trial_id, steps in finished_checkpoints.items():
        assert trial_checkpoints(rehearsal, trial_id) == steps  # untouched by the resume
    # Checkpoints in the bucket: every trial's last one at update STEPS.
    assert {t: trial_checkpoints(rehearsal, t)[-1] for t in rows} == dict.fromkeys(rows, STEPS)
    assert rehearsal.s3.keys(f"{PREFIX}/{NAME}/"), "no Tune experiment state in S3"

    # MLflow: the same one parent, one child per trial, all FINISHED, no step twice.
    parents_after, children_after = sweep_runs(rehearsal)
    assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]
    assert parents_after[0].info.status == "FINISHED"
    assert {t: r.info.run_id for t, r in children_after.items()} == {
        t: r.info.run_id for t, r in children.items()
    }
    assert {r.info.status for r in children_after.values()} == {"FINISHED"}
    parent_id = parents[0].info.run_id
    assert {r.data.tags["mlflow.parentRunId"] for r in children_after.values()} == {parent_id}
    duplicates = {}
    for trial_id, run in children_after.items():
        steps = [m.step for m in rehearsal.mlflow().get_metric_history(run.info.run_id, "loss")]
        assert set(range(10, STEPS + 1, 10)) <= set(steps), (trial_id, steps)
        duplicates[trial_id] = sorted(s for s, n in Counter(steps).items() if n > 1)
    tags = {t: children_after[t].data.tags for t in errored}
    assert {t for t in errored if "refiner.resumed_from_step" in tags[t]} == checkpointed, tags
    resumed = {t: int(tags[t].get("refiner.resumed_from_step", 0)) for t in errored}
    assert resumed[victim] >= at, (resumed, at)
    redone = {t: max(0, before[t] - resumed[t]) for t in errored}
    print(
        f"f: node 2 ({len(killed)} processes) killed after trial {victim}'s checkpoint at "
        f"update {at}, back 10 s later; trials placed {placed}; errored {errored}; "
        f"resumed at {resumed} (logged before the kill: "
        f"{ {t: before[t] for t in errored} }, so at least {redone} updates redone); "
        f"resume job {resume_s:.0f} s, all FINISHED {recovered:.0f} s after the kill, "
        f"{time.monotonic() - started:.0f} s in all; loss steps recorded twice: {duplicates}"
    )
    assert all(d == [] for d in duplicates.values()), duplicates
