"""``jobs/train.py`` as a subprocess with its own stores; ``--set`` argument lists.

``TINY`` (the overrides of a tiny training run) is defined in tiny_runs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiny_runs import TINY

__all__ = ["TINY", "run_train_job", "set_args"]

REPO = Path(__file__).resolve().parents[1]
TRAIN_JOB = REPO / "jobs" / "train.py"


def set_args(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def run_train_job(
    tmp: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python jobs/train.py`` in a subprocess, with its own local Ray and stores in ``tmp``."""
    command = [
        sys.executable,
        str(TRAIN_JOB),
        "--tracking-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--storage",
        str(tmp / "storage"),
        *args,
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        command, cwd=tmp, env=full_env, capture_output=True, text=True, timeout=timeout
    )
