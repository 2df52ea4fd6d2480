"""Batch prediction on a real local Ray (actor pool over Ray Data) and jobs/predict.py end
to end: real parquet/jsonl/csv files, with and without targets, answers equal to
in-process inference on the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prediction_fixtures import parity_tasks, trained_checkpoint

from refiner.distributed.predict import predict_on_ray
from refiner.infer.prediction import Predictor
from refiner.tasks.inputs import read_prediction_inputs
from refiner.tasks.io import write_tasks

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.ray(num_cpus=4)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return trained_checkpoint(tmp_path_factory.mktemp("model"))


def task_files(folder: Path, count: int = 60) -> dict[str, Path]:
    tasks = parity_tasks(count)
    files = {"labelled.parquet": folder / "labelled.parquet"}
    write_tasks(tasks, files["labelled.parquet"])
    rows = tasks.select(["task_id", "task_type", "input"]).to_pylist()
    files["unlabelled.jsonl"] = folder / "unlabelled.jsonl"
    files["unlabelled.jsonl"].write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lines = ["task_id,task_type,input,target"]
    for i, r in enumerate(tasks.to_pylist()):  # every third row without a target
        target = "" if i % 3 == 0 else f'"{r["target"]}"'
        lines.append(f'{r["task_id"]},sequence,"{r["input"]}",{target}')
    files["mixed.csv"] = folder / "mixed.csv"
    files["mixed.csv"].write_text("\n".join(lines) + "\n")
    return files


def assert_same(got, expected) -> None:
    for column in ("task_id", "prediction", "decoded", "steps_taken", "stopping_reason"):
        assert got.column(column).to_pylist() == expected.column(column).to_pylist(), column
    assert got.column("correct").to_pylist() == expected.column("correct").to_pylist()
    np.testing.assert_allclose(got.column("score").to_numpy(), expected.column("score").to_numpy())


def test_actor_pool_equals_in_process_inference(local_ray, checkpoint: Path, tmp_path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    for name, path in task_files(tmp_path).items():
        tasks = read_prediction_inputs(path)
        expected = predictor.predict(tasks, max_steps=5)
        # Small batches: several batches per actor, rows back in input order.
        got = predict_on_ray(checkpoint, tasks, num_workers=2, max_steps=5, batch_size=16)
        assert got.num_rows == tasks.num_rows, name
        assert_same(got, expected)
        correct = got.column("correct").to_pylist()
        if name.startswith("unlabelled"):
            assert correct == [None] * tasks.num_rows
        elif name.startswith("mixed"):
            assert [c is None for c in correct] == [i % 3 == 0 for i in range(tasks.num_rows)]
        else:
            assert None not in correct


def run_job(*argv: str, tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    env.pop("RAY_ADDRESS", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "predict.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_job_from_a_registered_model(checkpoint: Path, tmp_path: Path) -> None:
    from refiner.tracking import tracked_run
    from refiner.tracking.logged_model import log_refiner_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with tracked_run(uri, "refiner", "tiny") as run:
        log_refiner_model(uri, run.run_id, checkpoint, 12, register_name="tiny")
    files = task_files(tmp_path, count=45)
    out = tmp_path / "out" / "predictions.parquet"
    done = run_job(
        "--model",
        "models:/tiny/1",
        "--input",
        str(files["mixed.csv"]),
        "--out",
        str(out),
        "--num-workers",
        "2",
        "--max-steps",
        "5",
        tracking_uri=uri,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = pq.read_table(out)
    expected = Predictor.from_checkpoint(checkpoint).predict(
        read_prediction_inputs(files["mixed.csv"]), max_steps=5
    )
    assert_same(written, expected)
    labelled = [c for c in expected.column("correct").to_pylist() if c is not None]
    assert "rows: 45" in done.stdout
    assert f"accuracy: {sum(labelled) / len(labelled):.4f} on 30 rows with a target" in done.stdout
    assert "mean steps: " in done.stdout and "stopping reasons: " in done.stdout
    assert "rows/s" in done.stdout
    assert [p.name for p in out.parent.iterdir()] == ["predictions.parquet"]  # no temp left
