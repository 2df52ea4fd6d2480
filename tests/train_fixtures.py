"""A tiny training configuration and helpers for the distributed-training tests.

Small enough that a run of a few dozen updates takes seconds on a 2-core machine,
while still exercising every part of the loop: augmentation, several unrolled steps,
validation, checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_JOB = REPO / "jobs" / "train.py"

TINY = [
    "task.source=parity",
    "task.count=256",
    "task.size=8",
    "task.val_max_rows=64",
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "model.attention_window=null",
    "orchestration.max_steps_train=4",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=4",
    "orchestration.augmentation_count=8",
    "training.batch_size=16",
    "training.warmup_steps=2",
    "training.report_every=5",
    "training.checkpoint_every=10",
    "training.shuffle_buffer_rows=64",
    "training.cpus_per_worker=0.5",
]


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


def start_local_ray(num_cpus: int = 3) -> None:
    """A private local Ray whose workers can import the test modules (closures, loops)."""
    import ray

    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        # this checkout's package first: the workers must run the code under test
        runtime_env={
            "env_vars": {
                "PYTHONPATH": os.pathsep.join([str(REPO / "platform"), str(REPO / "tests")])
            }
        },
    )
