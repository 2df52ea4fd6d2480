"""A tiny sweep end to end on a real local Ray: ASHA stops the bad trial, MLflow holds one
parent and one child per trial, the best is tagged, exported and registered; compare
and evaluate work on the result."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray_cluster import SWEEP_RAY
from sweep_fixtures import job, tiny_sweep, write_space

from refiner.config.experiment import load_experiment_config
from refiner.sweep.outcome import format_summary
from refiner.sweep.plan import SweepPlan
from refiner.tracking import PARENT_TAG
from refiner.tracking.sweeps import BEST_TAG, KIND_TAG, STOPPED_TAG, SWEEP_TAG

pytestmark = [pytest.mark.slow, pytest.mark.ray(**SWEEP_RAY), pytest.mark.timeout(600)]


def test_asha_sweep_mlflow_compare_evaluate(tmp_path: Path, local_ray, capsys) -> None:
    # lr 1e-7 cannot lower the loss: with two trials recorded at the first rung before it
    # starts (2 run at once), ASHA stops it there. Grid order makes that deterministic.
    space = write_space(
        tmp_path / "space.yaml",
        {"training": {"lr": {"grid": [1e-2, 5e-3, 1e-7]}}},
        {
            "type": "asha",
            "metric": "loss",
            "mode": "min",
            "grace_period": 10,
            "reduction_factor": 2,
            "max_t": 40,
        },
    )
    outcome, uri, storage = tiny_sweep(tmp_path, space, "asha", 40, register_name="refiner-best")
    plan = SweepPlan.load(storage, "asha")
    print(format_summary(outcome, list(plan.search_space().params), plan))

    statuses = {t.params["training.lr"]: t.status for t in outcome.trials}
    assert len(outcome.trials) == 3 and not outcome.errored
    assert statuses[1e-7] == "stopped"
    assert outcome.total_steps < 3 * 40
    assert outcome.best is not None and outcome.best.params["training.lr"] != 1e-7

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sweeps")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(PARENT_TAG)]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert {c.data.tags[PARENT_TAG] for c in children} == {parent.info.run_id}
    assert {c.data.tags[SWEEP_TAG] for c in children} == {"asha"}
    assert parent.data.params["scheduler.type"] == "asha"
    assert parent.data.params["space.training.lr.grid"] == "[0.01, 0.005, 1e-07]"
    assert "best_loss" in parent.data.metrics
    assert all(r.info.status == "FINISHED" for r in runs), [
        (r.info.run_name, r.info.status, r.data.tags.get(STOPPED_TAG)) for r in runs
    ]
    best = [c for c in children if c.data.tags.get(BEST_TAG) == "true"]
    assert [b.info.run_id for b in best] == [outcome.best_run_id]
    assert parent.data.tags["refiner.best_run_id"] == outcome.best_run_id
    stopped = [c for c in children if c.data.tags.get(STOPPED_TAG) == "true"]
    assert "1e-07" in [c.data.params["training.lr"] for c in stopped]
    for child in children:  # only training metrics: no Tune bookkeeping
        noise = {"done", "pid", "training_iteration", "time_total_s", "checkpoint_path"}
        assert not noise & set(child.data.metrics)
        assert not any(k.startswith("config") for k in child.data.metrics)
        assert "loss" in child.data.metrics and "val_acc_infer" in child.data.metrics
        # Provenance: the sweep driver's (a trial's Ray worker has another command line).
        for key in ("refiner.git_commit", "refiner.user", "refiner.command"):
            assert child.data.tags[key] == parent.data.tags[key], key
        assert [d.dataset.name for d in child.inputs.dataset_inputs] == ["parity"]

    versions = client.search_model_versions("name='refiner-best'")
    assert len(versions) == 1 and versions[0].run_id == outcome.best_run_id
    assert outcome.model_uri == "models:/refiner-best/1"

    exported = load_experiment_config(outcome.best_config)  # what jobs/train.py --config does
    assert exported.training.lr == outcome.best.params["training.lr"]
    assert exported.model.d_model == 16

    capsys.readouterr()
    out_dir = tmp_path / "compare"
    assert (
        job("compare").main(
            [
                "--parent-run",
                parent.info.run_id,
                "--tracking-uri",
                uri,
                "--out",
                str(out_dir),
                "--csv",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "lr" in table and "final_loss" in table and "acc_at_budget" in table
    assert (out_dir / "asha" / "refinement_curves.png").stat().st_size > 1000
    assert len((out_dir / "asha" / "trials.csv").read_text().splitlines()) == 4
    lines = [line for line in table.splitlines() if line.startswith("asha-")]
    assert lines[0].split()[1] == "*"  # sorted by the sweep metric: the best first

    assert (
        job("evaluate").main(
            [
                "--checkpoint",
                outcome.model_uri,
                "--task",
                "parity",
                "--tracking-uri",
                uri,
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "accuracy (infer-few, max 2 steps)" in report and "stopping reasons:" in report
