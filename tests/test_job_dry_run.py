"""``--help`` and ``--dry-run`` of the train and sweep jobs: no Ray, no MLflow, nothing started.

Each job runs in a fresh interpreter, so ``sys.modules`` says what it loaded: ``--help``
loads none of torch, Ray and MLflow (that is what makes it answer at once), and
``--dry-run`` checks the input and prints the plan without loading Ray or MLflow and
without creating the MLflow store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from train_fixtures import TINY, set_args

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "mlflow")

_RUN_JOB = """
import contextlib, io, json, runpy, sys
job, argv = sys.argv[1], sys.argv[2:]
out = io.StringIO()
code = None
with contextlib.redirect_stdout(out):
    try:
        module = runpy.run_path(job)  # defines main() (not run as __main__)
        code = module["main"](argv)
    except SystemExit as done:  # --help
        code = done.code
print(json.dumps({"code": code, "stdout": out.getvalue(),
                  "loaded": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def run_job(job: str, *args: str, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", _RUN_JOB, str(REPO / "jobs" / job), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("job", ["train.py", "sweep.py"])
def test_help_loads_neither_torch_nor_ray_nor_mlflow(job: str, tmp_path: Path) -> None:
    result = run_job(job, "--help", cwd=tmp_path)
    assert result["code"] == 0 and "--dry-run" in result["stdout"]
    assert result["loaded"] == []


def stores(tmp_path: Path) -> list[str]:
    return [
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--storage",
        str(tmp_path / "st"),
    ]


def test_train_dry_run_prints_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    args = [*set_args(TINY), "--num-workers", "2", "--steps", "30", "--run-name", "dry"]
    result = run_job("train.py", "--dry-run", *args, *stores(tmp_path), cwd=tmp_path)
    assert result["code"] == 0
    assert "ray" not in result["loaded"] and "mlflow" not in result["loaded"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "st" / "dry").exists()
    out = result["stdout"]
    config_text = out.split("--- resolved config ---\n", 1)[1].split("\n---", 1)[0]
    config = yaml.safe_load(config_text)
    assert config["training"]["steps"] == 30 and config["training"]["num_workers"] == 2
    assert config["model"]["d_model"] == 16 and config["model"]["seq_len"] == 8
    assert "builtin:parity (256 rows" in out
    assert "splits:     train 230, val 26" in out and "task types: sequence 256" in out
    assert "seq_len:    8" in out
    assert "2 Ray Train worker(s), each 0.5 CPU, no GPU" in out
    assert "run 'dry'" in out


def test_train_dry_run_still_refuses_bad_input(tmp_path: Path) -> None:
    result = run_job(
        "train.py", "--dry-run", "--set", "training.stepz=3", *stores(tmp_path), cwd=tmp_path
    )
    assert result["code"] == 2 and "dry run" not in result["stdout"]


def test_sweep_dry_run_prints_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    args = [*set_args(TINY), "--num-samples", "3", "--steps", "20", "--name", "dry"]
    result = run_job("sweep.py", "--dry-run", *args, *stores(tmp_path), cwd=tmp_path)
    assert result["code"] == 0
    assert "ray" not in result["loaded"] and "mlflow" not in result["loaded"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "st" / "dry").exists()
    out = result["stdout"]
    config = yaml.safe_load(out.split("--- resolved base config ---\n", 1)[1].split("\n---")[0])
    assert config["training"]["steps"] == 20
    assert "3 sample(s), scheduler asha" in out
    assert "builtin:parity (256 rows" in out and "seq_len:    8" in out
    assert "trials at once: " in out and "parent run 'dry'" in out
