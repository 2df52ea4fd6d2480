"""Model-based and two-objective sweeps on a real local Ray: Optuna (multi-objective TPE)
proposes the trials, the parent MLflow run holds the Pareto front (table, plot, tags),
the trial picked by the space's rule is registered, compare shows the front, and Tune
keeps the searcher's state beside the experiment for ``--resume``."""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow.artifacts
import pytest
import yaml
from mlflow import MlflowClient
from ray.tune.search import ConcurrencyLimiter
from ray_cluster import SWEEP_RAY
from sweep_fixtures import job, tiny_sweep

from refiner.distributed.optuna_search import optuna_searcher
from refiner.sweep.plan import SweepPlan
from refiner.tracking import PARENT_TAG
from refiner.tracking.sweeps import BEST_TAG, FRONT_TAG

pytestmark = [pytest.mark.slow, pytest.mark.ray(**SWEEP_RAY), pytest.mark.timeout(600)]

OBJECTIVES = {"val_acc_infer": "max", "val_mean_steps": "min"}
STEPS = 30  # a population trial's updates: perturbations at 10 and 20, none at the last


def test_optuna_two_objective_sweep(tmp_path: Path, local_ray, capsys) -> None:
    space_file = tmp_path / "front.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "sweep": {
                    "num_samples": 3,
                    "seed": 1,
                    "max_concurrent_trials": 2,
                    "search": {"type": "optuna", "sampler": "tpe", "n_startup_trials": 2},
                    "objectives": OBJECTIVES,
                    "choose_within": 0.05,
                    "scheduler": {"type": "fifo"},
                },
                "space": {
                    "training.lr": {"loguniform": [1e-3, 1e-2]},
                    "orchestration.max_steps_infer": {"choice": [1, 2, 4]},
                },
            }
        )
    )
    outcome, uri, storage = tiny_sweep(
        tmp_path, space_file, "front", 20, register_name="refiner-front"
    )

    assert len(outcome.trials) == 3 and not outcome.errored
    assert {t.status for t in outcome.trials} == {"done"}
    assert outcome.objectives == OBJECTIVES and outcome.front
    assert outcome.best in outcome.front and "val_mean_steps" in outcome.choice_reason
    front_ids = {t.trial_id for t in outcome.front}
    for t in outcome.trials:  # no trial off the front is as good on both objectives
        if t.trial_id not in front_ids:
            assert any(
                f.metrics["val_acc_infer"] >= t.metrics["val_acc_infer"]
                and f.metrics["val_mean_steps"] <= t.metrics["val_mean_steps"]
                for f in outcome.front
            )

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    parent = next(r for r in runs if not r.data.tags.get(PARENT_TAG))
    children = [r for r in runs if r.data.tags.get(PARENT_TAG)]
    tagged = {c.data.tags["refiner.trial_id"] for c in children if c.data.tags.get(FRONT_TAG)}
    assert tagged == front_ids
    best = [c for c in children if c.data.tags.get(BEST_TAG) == "true"]
    assert [b.data.tags["refiner.trial_id"] for b in best] == [outcome.best.trial_id]
    assert parent.data.params["sweep.search.type"] == "optuna"
    assert parent.data.tags["refiner.best_reason"] == outcome.choice_reason
    folder = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="pareto", tracking_uri=uri, dst_path=tmp_path
    )
    with open(Path(folder) / "pareto_front.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert {row["trial_id"] for row in table} == front_ids
    assert (Path(folder) / "pareto_front.png").stat().st_size > 1000
    versions = client.search_model_versions("name='refiner-front'")
    assert [v.run_id for v in versions] == [outcome.best_run_id]

    capsys.readouterr()
    args = ["--parent-run", parent.info.run_id, "--tracking-uri", uri, "--out", str(tmp_path)]
    assert job("compare").main(args) == 0
    shown = capsys.readouterr().out
    assert f"Pareto front over val_acc_infer (max), val_mean_steps (min): {len(front_ids)}" in shown
    assert sum(" F " in line for line in shown.splitlines()) == len(front_ids)

    # --resume: Tune restores the searcher from beside the experiment; it holds the study.
    plan = SweepPlan.load(storage, "front")
    searcher = ConcurrencyLimiter(optuna_searcher(plan.search_space(), plan.base), max_concurrent=2)
    searcher.restore_from_dir(plan.experiment_path)
    study = searcher.searcher._ot_study
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    by_lr = {round(t.params["training.lr"], 12): t.values for t in study.trials}
    for t in outcome.trials:
        assert by_lr[round(t.params["training.lr"], 12)] == [
            t.metrics["val_acc_infer"],
            t.metrics["val_mean_steps"],
        ]


@pytest.mark.timeout(900)
def test_pbt_exploit_restores_the_peer_checkpoint(tmp_path: Path, local_ray) -> None:
    # Two trials: lr 1e-7 cannot lower the loss, so at a perturbation (every checkpoint,
    # 10 updates) it is the bottom half and takes over the other trial's checkpoint.
    space_file = tmp_path / "pbt.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "sweep": {
                    "num_samples": 1,
                    "max_concurrent_trials": 2,
                    "scheduler": {
                        "type": "pbt",
                        "metric": "loss",
                        "mode": "min",
                        "perturbation_interval": 10,
                        "quantile_fraction": 0.5,
                        "resample_probability": 0.0,
                    },
                },
                "space": {"training.lr": {"grid": [1e-2, 1e-7]}},  # one trial each
            }
        )
    )
    outcome, uri, storage = tiny_sweep(tmp_path, space_file, "pbt", 30)
    assert len(outcome.trials) == 2 and not outcome.errored
    final_loss = {t.trial_id: t.metrics["loss"] for t in outcome.trials}
    assert {t.steps for t in outcome.trials} == {30}  # an exploit continues, never restarts

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    children = {c.data.tags["refiner.trial_id"]: c for c in runs if c.data.tags.get(PARENT_TAG)}
    assert len(children) == 2
    exploited = {
        trial_id: run
        for trial_id, run in children.items()
        if run.data.tags.get("refiner.pbt.restored_from_trial") not in (None, trial_id)
    }
    assert exploited, {k: r.data.tags for k, r in children.items()}
    assert {line.split()[0] for line in outcome.exploits} == set(exploited)  # the summary's
    assert outcome.went_back == sum(
        int(v) for c in children.values() for k, v in c.data.tags.items() if k.endswith("went_back")
    )
    for trial_id, run in exploited.items():
        tags = run.data.tags
        peer = tags["refiner.pbt.restored_from_trial"]
        assert peer in children and peer != trial_id
        step = int(tags["refiner.pbt.restored_from_step"])
        assert step % 10 == 0 and 0 < step <= 30  # a checkpoint of the peer's
        # The training loop restored the whole checkpoint at that update (optimizer,
        # schedule, EMA and calibration travel in it) and went on from there.
        assert tags["refiner.resumed_from_step"] == str(step)
        generation = tags["refiner.pbt.generation"]
        note = tags[f"refiner.pbt.g{generation}"]
        assert "exploited trial " + peer in note
        # It left its own run at its own checkpoint (the one Tune decided on), and counts
        # the updates it goes back (or skips) by taking the peer's.
        left_at = int(note.split("leaving update ")[1].split(";")[0])
        assert left_at % 10 == 0 and 0 < left_at < 30
        assert tags[f"refiner.pbt.g{generation}.went_back"] == str(left_at - step)
        seeded = Path(storage) / f"pbt.trials/pbt-{trial_id}-g{generation}"
        assert seeded.is_dir()
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")
        )
        # The run shows the generation the trial ended with: the one Tune ended trained
        # and logged nothing past its checkpoint (before, its updates 11-30 stood here).
        assert history[-1] == (30, pytest.approx(final_loss[trial_id])), history


@pytest.mark.timeout(900)
def test_pb2_exploit_goes_on_with_values_within_the_bounds(tmp_path: Path, local_ray) -> None:
    # Two trials, the bottom half (one) takes over the other's checkpoint at a
    # perturbation; PB2's model picks the values it goes on with inside the space's bounds.
    # Seed 10 draws lr 7.4e-3 and 4.2e-5: the second learns next to nothing, so it is the
    # bottom half at any perturbation, whichever trial reports first (with lr 1.8e-5 and
    # 5.1e-5, seed 3, the trial reporting later always looked better and none exploited).
    low, high = 1e-5, 1e-2
    space_file = tmp_path / "pb2.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "sweep": {
                    "num_samples": 2,
                    "seed": 10,
                    "max_concurrent_trials": 2,
                    "scheduler": {
                        "type": "pb2",
                        "metric": "loss",
                        "mode": "min",
                        "perturbation_interval": 10,
                        "quantile_fraction": 0.5,
                    },
                },
                "space": {"training.lr": {"loguniform": [low, high]}},
            }
        )
    )
    outcome, uri, _ = tiny_sweep(tmp_path, space_file, "pb2", STEPS)
    assert len(outcome.trials) == 2 and not outcome.errored
    assert {t.steps for t in outcome.trials} == {STEPS}
    for t in outcome.trials:  # the last values each trial ran with
        assert low <= t.params["training.lr"] <= high

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
    children = {c.data.tags["refiner.trial_id"]: c for c in runs if c.data.tags.get(PARENT_TAG)}
    exploited = [
        run
        for trial_id, run in children.items()
        if run.data.tags.get("refiner.pbt.restored_from_trial") not in (None, trial_id)
    ]
    assert exploited, {k: r.data.tags for k, r in children.items()}
    for run in exploited:
        tags = run.data.tags
        assert tags["refiner.resumed_from_step"] == tags["refiner.pbt.restored_from_step"]
        note = tags[f"refiner.pbt.g{tags['refiner.pbt.generation']}"]
        went_on = yaml.safe_load(note.split("went on with ", 1)[1])
        assert low <= went_on["training.lr"] <= high
        final = next(t for t in outcome.trials if t.trial_id == tags["refiner.trial_id"])
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")
        )
        assert history[-1] == (STEPS, pytest.approx(final.metrics["loss"])), history
