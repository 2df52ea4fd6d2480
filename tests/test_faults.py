"""Faults during training: a worker killed from outside, an exploding LR, a full disk.

Real Ray, real MLflow (SQLite under tmp_path), real signals and a real full filesystem.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from refiner_fixtures import tiny_orchestrator
from tiny_runs import TINY
from train_fixtures import set_args

from refiner.checkpoints.files import CHECKPOINT_FILE, read_checkpoint, save_checkpoint
from refiner.checkpoints.storage import StorageError, list_checkpoints, persist_checkpoint
from refiner.config.experiment import prepare_experiment
from refiner.distributed.loop import TrainingDiverged
from refiner.distributed.trainer import run_training
from refiner.tracking import tracked_run

ROOT = Path(__file__).resolve().parents[1]
# A tiny run, shorter still; no warm-up, so that the first update takes the full rate.
FAULT_RUN = [
    *TINY,
    "orchestration.max_steps_train=3",
    "orchestration.backprop_truncate_steps=2",
    "orchestration.augmentation_count=4",
    "training.warmup_steps=0",
]


def run_of(db: Path, run_name: str):
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("refiner")
    runs = client.search_runs([experiment.experiment_id], f"tags.`mlflow.runName` = '{run_name}'")
    assert len(runs) == 1, runs
    return client, runs[0]


def saved_checkpoints(storage: Path) -> list[Path]:
    return sorted(storage.rglob(CHECKPOINT_FILE))


def assert_all_finite(path: Path) -> None:
    weights = read_checkpoint(path)["orchestrator"]["model"]
    for key, tensor in weights.items():
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), f"{path}: {key} has non-finite values"


# -- a worker process killed from outside ---------------------------------------------


def train_workers(root_pid: int) -> list[int]:
    """PIDs of the Ray Train worker processes among the training job's descendants."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {root_pid}, True
    while grew:
        before = len(family)
        family |= {pid for pid, parent in parents.items() if parent in family}
        grew = len(family) > before
    return [pid for pid in family if titles.get(pid, "").startswith("ray::RayTrainWorker")]


def last_logged_step(db: Path, run_name: str) -> int:
    if not db.exists():
        return 0
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("refiner")
    if experiment is None:
        return 0
    runs = client.search_runs([experiment.experiment_id], f"tags.`mlflow.runName` = '{run_name}'")
    history = client.get_metric_history(runs[0].info.run_id, "loss") if runs else []
    return max((m.step for m in history), default=0)


@pytest.mark.slow
@pytest.mark.ray
def test_worker_killed_mid_training_resumes_from_checkpoint(tmp_path):
    db, storage = tmp_path / "mlflow.db", tmp_path / "checkpoints"
    overrides = FAULT_RUN + ["training.steps=30", "training.checkpoint_every=10"]
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "jobs" / "train.py"), *set_args(overrides)]
        + ["--num-workers", "2", "--run-name", "killed", "--tracking-uri", f"sqlite:///{db}"]
        + ["--storage", str(storage)],
        cwd=tmp_path,
        stdout=open(tmp_path / "job.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    try:
        deadline = time.monotonic() + 240
        # After the first checkpoint (update 10) is on storage and the next report is out.
        # (The MLflow store is read only once the job has surely created it.)
        while not saved_checkpoints(storage) or last_logged_step(db, "killed") < 15:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no report after the first checkpoint in 240 s"
            time.sleep(0.5)
        victims = train_workers(job.pid)
        assert len(victims) == 2, victims
        last_logged_before_kill = last_logged_step(db, "killed")
        os.kill(victims[-1], signal.SIGKILL)  # from outside: no exception, no cleanup
        status = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    log = (tmp_path / "job.log").read_text()
    assert status == 0, log[-4000:]

    client, run = run_of(db, "killed")
    assert run.info.status == "FINISHED"
    resumed = int(run.data.tags["refiner.resumed_from_step"])
    assert resumed in (10, 20), run.data.tags
    history = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    # Every report step (plus the data-epoch end's checkpoint report), no gaps, and each
    # once: the updates replayed after the restart (from the checkpoint to the kill) were
    # reported again, but the run's history already held them.
    assert sorted(history) == sorted(set(history)), f"steps logged twice: {sorted(history)}"
    assert set(range(5, 31, 5)) <= set(history) <= set(range(1, 31)), sorted(history)
    assert f"resumed at update {resumed}" in log
    # (The kill lands after update 15 was logged and the restart resumes from update 10:
    # updates 11 to at least 15 are replayed.)
    print(f"logged through {last_logged_before_kill} before the kill, resumed at {resumed}")


# -- NaN/Inf: a deliberately exploding learning rate -----------------------------------


def exploding_run(tmp_path: Path, run_name: str, extra: list[str]):
    """lr=1e6: the first update throws the weights to ~1e6, every later gradient is inf."""
    overrides = FAULT_RUN + ["training.lr=1e6", "training.num_workers=0", *extra]
    config, tasks = prepare_experiment(None, overrides)
    db = tmp_path / "mlflow.db"
    storage = tmp_path / "checkpoints"
    error = None
    try:
        with tracked_run(f"sqlite:///{db}", "refiner", run_name) as tracker:
            run_training(config, tasks, run_name, str(storage), tracker)
    except TrainingDiverged as err:
        error = err
    client, run = run_of(db, run_name)
    skipped = sum(m.value for m in client.get_metric_history(run.info.run_id, "skipped_updates"))
    return error, run, skipped, saved_checkpoints(storage)


@pytest.mark.ray
def test_exploding_lr_stops_after_max_skipped_updates(tmp_path, local_ray):
    error, run, skipped, checkpoints = exploding_run(
        tmp_path,
        "diverged",
        ["training.steps=40", "training.checkpoint_every=2", "training.max_skipped_updates=4"],
    )
    assert error is not None and "updates 2-5 all had non-finite gradients" in str(error)
    assert run.info.status == "FAILED"
    assert run.data.tags["refiner.stopped"] == "diverged"
    assert skipped == 4
    assert checkpoints, "the checkpoints before the divergence are kept"
    for path in checkpoints:
        assert_all_finite(path)


@pytest.mark.ray
def test_exploding_lr_keeps_skipping_when_not_limited(tmp_path, local_ray):
    error, run, skipped, checkpoints = exploding_run(
        tmp_path, "skipping", ["training.steps=10", "training.checkpoint_every=5"]
    )
    assert error is None
    assert run.info.status == "FINISHED"
    assert skipped == 9  # every update after the first
    assert len(checkpoints) == 2
    for path in checkpoints:
        assert_all_finite(path)


# -- disk full mid-run ------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A real filesystem of 400 KiB (room for two ~170 KiB checkpoints, not three)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_keeps_earlier_checkpoints_intact(tmp_path, tiny_disk):
    orchestrator = tiny_orchestrator()
    run_dir = str(tiny_disk / "run")
    error = None
    for step in (10, 20, 30, 40):
        local = tmp_path / f"local-{step}"
        orchestrator.step_count = step
        save_checkpoint(local / CHECKPOINT_FILE, orchestrator)
        (local / "meta.json").write_text(f'{{"step": {step}, "epoch": 0, "metrics": {{}}}}')
        try:
            persist_checkpoint(str(local), run_dir, step, keep=10)
        except StorageError as err:
            error = err
            break
    assert error is not None, "the 400 KiB disk never filled up"
    assert "could not write checkpoint" in str(error) and run_dir in str(error)
    kept = list_checkpoints(run_dir)
    assert [s for s, _ in kept] == [10, 20][: len(kept)] and kept
    for _, directory in kept:  # earlier checkpoints still load
        assert read_checkpoint(Path(directory) / CHECKPOINT_FILE)["extra"] is not None
    leftovers = [p.name for p in Path(run_dir).iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"partial checkpoint left behind: {leftovers}"
