"""A trial driver SIGKILLed mid-sweep, then `jobs/sweep.py --resume` finishes the sweep.

Real processes end to end: a private Ray head (tests/ray_head.py, never `ray stop`),
`jobs/sweep.py` run as a subprocess attached to it with `--address`, two trials side by
side, and the Tune trial driver (the `ImplicitFunc` actor that runs the trial's
TorchTrainer) killed from outside with SIGKILL once its trial has a checkpoint on
storage: no exception, no cleanup in the trial. The sweep must end with that trial
errored and tell the user to `--resume`; the resumed sweep must re-run only that trial,
from its checkpoint, and leave MLflow with one parent and one child per trial, FINISHED.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray_head import LocalHead
from sweep_fixtures import write_space
from tiny_runs import TINY_SWEEP

from refiner.checkpoints.storage import list_checkpoints
from refiner.tracking import PARENT_TAG

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
NAME = "killed"
STEPS = 30  # checkpoints at 10, 20, 30 (TINY_SWEEP: checkpoint_every=10)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY_ROW = re.compile(r"\b([0-9a-f]{5}_\d{5}) +(done|error|stopped) +\d+ ")  # format_summary


def readable(log: Path, chars: int = 4000) -> str:
    """The log's tail without terminal escapes and Ray Data's progress lines."""
    lines = ANSI.sub("", log.read_text(errors="replace")).replace("\r", "\n").splitlines()
    kept = [
        line for line in lines if line.strip() and "Dataset" not in line and "row/s" not in line
    ]
    return "\n".join(kept)[-chars:]


def summary(log: Path) -> dict[str, str]:
    """Trial id -> status from the job's summary table."""
    return dict(SUMMARY_ROW.findall(ANSI.sub("", log.read_text(errors="replace"))))


def trial_drivers(head: LocalHead) -> dict[int, str]:
    """PID -> trial id of this head's Tune function-trainable actors (`ray::ImplicitFunc`).

    Tune runs each trial driver in the trial's working dir (`.../working_dirs/<trial id>`,
    named by the sweep's trial_dirname), which tells the two trials' drivers apart.
    """
    found = {}
    for pid in head.own_processes():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if title.startswith("ray::ImplicitFunc") and "/working_dirs/" in cwd:
            found[pid] = cwd.rsplit("/", 1)[1]
    return found


def first_checkpointed_trial(trials_dir: Path) -> str | None:
    """The trial id of the first Train run with a complete checkpoint, if any."""
    if not trials_dir.is_dir():
        return None
    for run_dir in sorted(trials_dir.iterdir()):
        if run_dir.name.startswith(f"{NAME}-") and list_checkpoints(str(run_dir)):
            return run_dir.name[len(NAME) + 1 :]
    return None


def sweep_runs(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeps")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("refiner.kind") == "sweep"]
    children = {r.data.tags["refiner.trial_id"]: r for r in runs if r.data.tags.get(PARENT_TAG)}
    assert len(runs) == len(parents) + len(children), [r.data.tags for r in runs]
    return client, parents, children


def test_killed_trial_driver_is_resumed(tmp_path: Path) -> None:
    started = time.monotonic()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = tmp_path / "store"
    trials_dir = storage / f"{NAME}.trials"
    space = write_space(
        tmp_path / "space.yaml",
        {"training": {"lr": {"grid": [0.003, 0.002]}}},
        {"type": "fifo", "metric": "loss", "mode": "min"},
    )
    # 4 logical CPUs: both trials at once (0.25 driver + 0.5 worker + 1 data CPU each).
    # No Ray Data progress bars: they would interleave with the job's own lines.
    quiet = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    head = LocalHead(num_cpus=4, env=quiet)
    head.start()
    env = {**head.client_env(), **quiet}
    env.pop("RAY_ADDRESS")  # attach through --address, as a user would
    common = ["--storage", str(storage), "--address", f"127.0.0.1:{head.ports['port']}"]

    def sweep(args: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "jobs" / "sweep.py"), *args, *common],
            cwd=tmp_path,
            env=env,
            stdout=open(log, "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
        )

    first_log, resume_log = tmp_path / "sweep.log", tmp_path / "resume.log"
    job = None
    try:
        job = sweep(
            ["--space", str(space), "--steps", str(STEPS), "--name", NAME]
            + ["--tracking-uri", uri, "--experiment", "sweeps", "--out", str(tmp_path / "out")]
            + [f"--set={s}" for s in TINY_SWEEP],
            first_log,
        )
        deadline = time.monotonic() + 300
        while (victim := first_checkpointed_trial(trials_dir)) is None:
            assert job.poll() is None, readable(first_log)
            assert time.monotonic() < deadline, "no trial checkpoint in 300 s\n" + readable(
                first_log
            )
            time.sleep(0.25)
        drivers = [pid for pid, trial in trial_drivers(head).items() if trial == victim]
        assert len(drivers) == 1, (victim, trial_drivers(head))
        os.kill(drivers[0], signal.SIGKILL)  # from outside: no exception, no cleanup
        killed_at = time.monotonic() - started
        assert job.wait(timeout=300) == 1, readable(first_log)
        log = readable(first_log, 100_000)
        assert "1 trial(s) errored" in log, log[-4000:]
        # The finished trial logged its model: MLflow's INFO lines and download bars went
        # to the session's log folder, not to the sweep's console.
        assert "INFO mlflow" not in log and "Downloading artifacts" not in log, log[-4000:]
        resume_hint = f"python jobs/sweep.py --resume {NAME} --storage {storage.resolve()}"
        assert resume_hint in log, log[-4000:]
        rows = summary(first_log)
        assert rows.get(victim) == "error" and len(rows) == 2, rows
        (finished,) = [t for t, status in rows.items() if status == "done"]

        client, parents, children = sweep_runs(uri)
        assert [p.info.status for p in parents] == ["FAILED"]  # incomplete until --resume
        assert {t: r.info.status for t, r in children.items()} == {
            victim: "FAILED",
            finished: "FINISHED",
        }
        finished_history = client.get_metric_history(children[finished].info.run_id, "loss")
        finished_checkpoints = list_checkpoints(str(trials_dir / f"{NAME}-{finished}"))
        assert finished_checkpoints[-1][0] == STEPS
        victim_checkpoints = [s for s, _ in list_checkpoints(str(trials_dir / f"{NAME}-{victim}"))]
        assert victim_checkpoints and max(victim_checkpoints) < STEPS, victim_checkpoints

        job = sweep(["--resume", NAME], resume_log)
        assert job.wait(timeout=300) == 0, readable(resume_log)
        log = readable(resume_log, 100_000)
    finally:
        if job is not None and job.poll() is None:
            job.kill()
        head.stop()
    assert not head.own_processes()

    # Only the killed trial ran again, from its checkpoint, to the end.
    assert f"[sweep] {victim}  step" in log and f"[sweep] {finished}  step" not in log, log[-4000:]
    resumed_at = re.findall(r"resumed at update (\d+)", log)
    assert resumed_at and set(resumed_at) <= {str(s) for s in victim_checkpoints}, resumed_at
    assert summary(resume_log) == {victim: "done", finished: "done"}, log[-4000:]
    assert list_checkpoints(str(trials_dir / f"{NAME}-{victim}"))[-1][0] == STEPS
    assert list_checkpoints(str(trials_dir / f"{NAME}-{finished}")) == finished_checkpoints

    # MLflow: the same parent and children, reopened, nothing RUNNING.
    client, parents_after, children_after = sweep_runs(uri)
    assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]
    assert {t: r.info.run_id for t, r in children_after.items()} == {
        t: r.info.run_id for t, r in children.items()
    }
    assert parents_after[0].info.status == "FINISHED"
    assert {r.info.status for r in children_after.values()} == {"FINISHED"}
    again = children_after[victim]
    assert again.data.tags.get("refiner.resumed_from_step") == resumed_at[0]
    assert again.data.metrics["step"] == STEPS
    steps = [m.step for m in client.get_metric_history(again.info.run_id, "loss")]
    assert max(steps) == STEPS and int(resumed_at[0]) in steps, steps
    untouched = children_after[finished]
    assert "refiner.resumed_from_step" not in untouched.data.tags
    history = client.get_metric_history(untouched.info.run_id, "loss")
    assert [(m.step, m.timestamp) for m in history] == [
        (m.step, m.timestamp) for m in finished_history
    ]
    print(f"killed trial {victim} at {killed_at:.0f} s; resumed from update {resumed_at[0]}")
    print(f"wall time {time.monotonic() - started:.0f} s")
