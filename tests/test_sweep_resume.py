"""A sweep whose trial fails, then `--resume` re-runs only that trial from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray_cluster import SWEEP_RAY, ray_cluster
from sweep_fixtures import tiny_sweep, write_space

from refiner.config.experiment import load_task_table
from refiner.distributed.fault_injection import FAULT_ENV
from refiner.distributed.sweep_driver import run_sweep
from refiner.sweep.plan import SweepPlan
from refiner.tracking import PARENT_TAG
from refiner.tracking import sweeps as sweep_tracking

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_with_fault_hook():
    # The trial with seed 1 raises once at update 15 (the test hook in distributed/fault_injection.py).
    # Workers take the environment of the Ray node, so it is set before the node starts.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FAULT_ENV, "15,seed=1")
        with ray_cluster(**SWEEP_RAY):
            yield


def test_failed_trial_is_resumed(tmp_path: Path, ray_with_fault_hook) -> None:
    # One trial raises once at update 15 (after its checkpoint at 10); training.max_failures
    # is 0, so the trial errors. The fault marker keeps the resumed run from failing again.
    space = write_space(
        tmp_path / "space.yaml",
        {"seed": {"grid": [0, 1]}},
        {"type": "fifo", "metric": "loss", "mode": "min"},
    )
    first, uri, storage = tiny_sweep(tmp_path, space, "faulty", 20)
    assert [t.params["seed"] for t in first.errored] == [1]
    done_before = {t.trial_id for t in first.trials if t.status == "done"}
    assert len(done_before) == 1

    plan = SweepPlan.load(storage, "faulty")
    config = plan.config()
    tasks = load_task_table(config.task, config.seed)
    resumed = run_sweep(plan, tasks, resume=True, tracking=sweep_tracking)
    assert not resumed.errored
    assert {t.status for t in resumed.trials} == {"done"}
    assert {t.trial_id for t in resumed.trials} == {t.trial_id for t in first.trials}

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    children = [r for r in runs if r.data.tags.get(PARENT_TAG)]
    assert len(children) == 2  # the resumed trial reopened its run
    assert all(r.info.status == "FINISHED" for r in runs)
    again = [c for c in children if c.data.params["seed"] == "1"][0]
    assert again.data.tags.get("refiner.resumed_from_step") == "10"
    assert again.data.metrics["step"] == 20
    # the trial that had finished was not run again
    done = [c for c in children if c.data.params["seed"] == "0"][0]
    assert "refiner.resumed_from_step" not in done.data.tags
