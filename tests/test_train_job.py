"""``jobs/train.py`` end to end: 2-worker DDP, an injected worker fault, MLflow, resume.

One real 2-worker run (with a worker that raises at update 13) is shared by the
assertions below; a second invocation with the same run name resumes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from train_fixtures import TINY, run_train_job, set_args

from refiner.checkpoints.files import read_checkpoint
from refiner.distributed.fault_injection import FAULT_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]

DDP = [*TINY, "training.num_workers=2", "training.max_failures=1"]
FAULT_AT_13 = {FAULT_ENV: "13"}  # the test hook: one worker raises once at update 13


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    done = run_train_job(tmp, *set_args(DDP), "--steps", "30", "--run-name", "ddp", env=FAULT_AT_13)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("refiner").experiment_id])
    return tmp, done, client, runs


def test_exactly_one_finished_mlflow_run(ddp_run) -> None:
    _, _, _, runs = ddp_run
    assert len(runs) == 1, [r.info.run_name for r in runs]
    assert runs[0].info.run_name == "ddp" and runs[0].info.status == "FINISHED"


def test_params_are_the_flattened_config(ddp_run) -> None:
    _, _, _, (run,) = ddp_run
    params = run.data.params
    assert params["training.steps"] == "30"
    assert params["training.num_workers"] == "2"
    assert params["orchestration.max_steps_train"] == "4"
    assert params["model.d_model"] == "16"
    assert params["task.source"] == "parity"


def test_worker_fault_resumes_from_checkpoint_with_continuous_steps(ddp_run) -> None:
    _, done, client, (run,) = ddp_run
    assert "injected fault at update 13" in done.stdout + done.stderr
    assert "resumed at update 10" in done.stdout
    assert run.data.tags["refiner.resumed_from_step"] == "10"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    # Updates 11-13 were redone after the restart; each report step is logged once.
    assert steps == [5, 10, 15, 20, 25, 30]
    acc = [m.step for m in client.get_metric_history(run.info.run_id, "acc_at_4")]
    assert acc == steps
    for key in ("grad_norm", "lr", "samples_per_s", "data_wait_frac", "loss_token"):
        assert len(client.get_metric_history(run.info.run_id, key)) == len(steps), key
    val = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc_infer")]
    assert val == [10, 20, 30]


def test_artifacts_config_plots_and_checkpoint(ddp_run) -> None:
    tmp, done, client, (run,) = ddp_run
    run_id = run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "plots", "checkpoint"} <= names
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/refinement_curve.png", "plots/halting_steps.png"}
    local = Path(client.download_artifacts(run_id, "checkpoint/checkpoint.pt", str(tmp)))
    assert read_checkpoint(local)["extra"]["step"] == 30
    latest = Path(run.data.tags["refiner.checkpoint"])
    assert latest.parent == tmp / "storage" / "ddp"
    assert read_checkpoint(latest / "checkpoint.pt")["extra"]["step"] == 30
    png = Path(client.download_artifacts(run_id, "plots/refinement_curve.png", str(tmp)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_shows_acc_table_stopping_and_locations(ddp_run) -> None:
    _, done, _, (run,) = ddp_run
    summary = done.stdout.split("=== summary ===", 1)[1]
    assert "step t   acc@t" in summary
    assert "mean steps" in summary and "why rows stopped: " in summary
    assert run.info.run_id in summary and run.data.tags["refiner.checkpoint"] in summary
    model_line = next(line for line in summary.splitlines() if line.startswith("model: "))
    assert model_line.startswith(f"model: {run.data.tags['refiner.model_uri']}, from ")


def test_console_shows_the_project_not_rays_info_lines(ddp_run) -> None:
    _, done, _, _ = ddp_run
    console = done.stdout + done.stderr
    assert "[refiner] update" in done.stdout and "=== summary ===" in done.stdout
    for chatter in (
        "Started a local Ray instance",
        "Started training worker group",
        "Moving model to device",
        "Starting execution of Dataset",
        "Progress bars disabled",
        "Checkpoint successfully created",
        "RayDeprecationWarning",
    ):
        assert chatter not in console, chatter


def test_canvas_pictures_at_every_validation_checkpoint_and_the_recipe_line(ddp_run) -> None:
    """Each validation checkpoint logs canvas/update_N/canvas.png and what it cost; the
    run's first line says which recipe trained it and why."""
    tmp, done, client, (run,) = ddp_run
    run_id = run.info.run_id
    folders = {a.path for a in client.list_artifacts(run_id, "canvas")}
    assert folders == {f"canvas/update_{s:06d}" for s in (10, 20, 30)}
    png = Path(client.download_artifacts(run_id, "canvas/update_000030/canvas.png", str(tmp)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cost = client.get_metric_history(run_id, "canvas_pictures_s")
    assert [m.step for m in cost] == [10, 20, 30] and all(m.value > 0 for m in cost)
    first = done.stdout.splitlines()[0]
    assert first.startswith("[refiner] recipe parity (") and "no --task" in first


def test_a_logged_model_per_kept_checkpoint_with_its_metrics(ddp_run) -> None:
    """Every checkpoint Ray Train kept is a logged model linked to its step's metrics
    (mlflow.search_logged_models finds them); the run's model is the best one."""
    import mlflow

    tmp, _, client, (run,) = ddp_run
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    steps = sorted(int(m.tags["refiner.step"]) for m in models)
    assert len(steps) == 2 and set(steps) <= {10, 20, 30} and 30 in steps  # num_to_keep 2
    for model in models:
        linked = {m.key: m.step for m in model.metrics}
        assert linked["val_acc_infer"] == int(model.tags["refiner.step"])
    assert run.data.tags["refiner.model_uri"] in {f"models:/{m.model_id}" for m in models}


# Last: it resumes the shared run, adding updates 31-40 to what the tests above read.
def test_same_run_name_resumes_the_finished_run(ddp_run) -> None:
    tmp, _, client, (run,) = ddp_run
    again = run_train_job(
        tmp,
        *set_args([*TINY, "training.num_workers=1"]),
        "--steps",
        "40",
        "--run-name",
        "ddp",
        "--allow-config-change",  # 2 -> 1 worker, 30 -> 40 updates, default max_failures
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed at update 30" in again.stdout
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["refiner.resumed_from_step"] == "30"
    changes = json.loads(runs[0].data.tags["refiner.config_changes"])
    assert changes == {
        "training.max_failures": ["1", "2"],
        "training.num_workers": ["2", "1"],
        "training.steps": ["30", "40"],
    }
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]
