"""A sweep whose trials fail, then `--resume` re-runs only those trials: one from its
checkpoint, one whose run had already reached its last update."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray_cluster import SWEEP_RAY, ray_cluster
from sweep_fixtures import tiny_sweep, write_space

from refiner.config.experiment import load_task_table
from refiner.distributed.fault_injection import FAULT_ENV
from refiner.distributed.sweep_driver import run_sweep
from refiner.distributed.trainer import run_training
from refiner.sweep.combinations import trial_config
from refiner.sweep.plan import SweepPlan
from refiner.tracking import PARENT_TAG
from refiner.tracking import sweeps as sweep_tracking

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_with_fault_hook():
    # The trials with seeds 1 and 2 raise once at update 15 (the test hook in
    # distributed/fault_injection.py). Workers take the environment of the Ray node, so it
    # is set before the node starts.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FAULT_ENV, "15,seed=1|2")
        with ray_cluster(**SWEEP_RAY):
            yield


def test_failed_trials_are_resumed(tmp_path: Path, ray_with_fault_hook) -> None:
    # Two trials raise once at update 15 (after their checkpoint at 10); training.max_failures
    # is 0, so they error. The fault marker keeps the resumed runs from failing again.
    space = write_space(
        tmp_path / "space.yaml",
        {"seed": {"grid": [0, 1, 2]}},
        {"type": "fifo", "metric": "loss", "mode": "min"},
    )
    first, uri, storage = tiny_sweep(tmp_path, space, "faulty", 20)
    assert sorted(t.params["seed"] for t in first.errored) == [1, 2]
    done_before = {t.trial_id for t in first.trials if t.status == "done"}
    assert len(done_before) == 1

    plan = SweepPlan.load(storage, "faulty")
    config = plan.config()
    tasks = load_task_table(config.task, config.seed)
    # Seed 2's run is trained to its last update outside the sweep: what a driver killed
    # after a trial's last checkpoint, before Tune recorded the trial done, leaves behind.
    # Resumed, that trial has nothing left to train and reports its last checkpoint.
    (at_budget,) = [t for t in first.errored if t.params["seed"] == 2]
    finished = run_training(
        trial_config(plan.base, at_budget.params), tasks, at_budget.run_name, plan.trials_storage
    )
    assert finished.metrics["step"] == 20

    resumed = run_sweep(plan, tasks, resume=True, tracking=sweep_tracking)
    assert not resumed.errored
    assert {t.status for t in resumed.trials} == {"done"}
    assert {t.trial_id for t in resumed.trials} == {t.trial_id for t in first.trials}
    by_seed = {t.params["seed"]: t for t in resumed.trials}
    assert by_seed[2].steps == 20
    assert by_seed[2].metrics["loss"] == pytest.approx(finished.metrics["loss"])
    assert resumed.best is not None

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    children = [r for r in runs if r.data.tags.get(PARENT_TAG)]
    assert len(children) == 3  # each resumed trial reopened its run
    assert all(r.info.status == "FINISHED" for r in runs)
    child = {c.data.params["seed"]: c for c in children}
    assert child["1"].data.tags.get("refiner.resumed_from_step") == "10"
    assert child["1"].data.metrics["step"] == 20
    assert child["2"].data.tags.get("refiner.resumed_from_step") == "20"
    # the trial that had finished was not run again
    assert "refiner.resumed_from_step" not in child["0"].data.tags
