"""``jobs/train.py --register-name``: the run's best checkpoint becomes its MLflow model,
registered under the name, loadable with ``mlflow.pyfunc.load_model`` in a fresh process,
and the same model ``jobs/evaluate.py`` reads back by its ``models:/`` URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient
from test_train_job_bad_input import run_in_process
from train_fixtures import TINY, set_args

PLATFORM = Path(__file__).resolve().parent.parent / "platform"
NAME = "parity-tiny"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def ray_started_in_process():
    yield
    ray.shutdown()


def test_train_registers_its_best_checkpoint_as_a_pyfunc_model(
    tmp_path: Path, capsys, ray_started_in_process
) -> None:
    done = run_in_process(
        tmp_path,
        capsys,
        "--num-workers",
        "0",
        "--steps",
        "20",
        "--run-name",
        "registered",
        "--register-name",
        NAME,
        *set_args(TINY),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model: models:/{NAME}/1" in done.stdout

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    version = client.get_model_version(NAME, "1")
    run = client.get_run(version.run_id)
    assert run.info.run_name == "registered" and run.info.status == "FINISHED"
    assert run.data.tags["refiner.registered_model"] == f"models:/{NAME}/1"
    assert run.data.tags["refiner.model_uri"].startswith("models:/m-")

    # A fresh interpreter loads the registered model and predicts parity prefixes.
    script = (
        "import json, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}/1')\n"
        "out = m.predict(pd.DataFrame({'input': [[4, 5, 5, 4, 4, 4, 5, 4]]}),"
        " params={'max_steps': 2})\n"
        "print(json.dumps({'steps': int(out['steps_taken'][0]),"
        " 'reason': str(out['stopping_reason'][0]), 'n': len(out)}))\n"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join([str(PLATFORM), os.environ.get("PYTHONPATH", "")]),
    }
    loaded = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["n"] == 1 and 1 <= answer["steps"] <= 2 and answer["reason"]
