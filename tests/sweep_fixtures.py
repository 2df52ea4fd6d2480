"""A real local Ray for the sweep tests, the jobs as importable modules, tiny configs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import ray
import yaml

from refiner.distributed.compat import init_local_on_loopback

ROOT = Path(__file__).resolve().parent.parent

# Tiny trials: 1 Ray Train worker with half a CPU, a 16-wide model, a few dozen updates.
TINY = [
    "model.d_model=16",
    "orchestration.augmentation_count=4",
    "training.batch_size=16",
    "training.report_every=10",
    "training.checkpoint_every=10",
    "training.warmup_steps=2",
]


def job(name: str) -> ModuleType:
    """jobs/<name>.py as a module (jobs/ is not a package)."""
    key = f"refiner_job_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "jobs" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def write_space(path: Path, space: dict, scheduler: dict, num_samples: int = 1) -> Path:
    data = {
        "sweep": {"num_samples": num_samples, "seed": 0, "scheduler": scheduler},
        "space": space,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def start_sweep_ray() -> None:
    # 4 logical CPUs on 2 cores: two trials (0.25 + 0.5 CPU each) plus a data CPU each.
    # The dashboard hosts the State API, which Ray Train's PlacementGroupCleaner needs to
    # free the resources of trials that ASHA stops; without it a sweep stalls.
    init_local_on_loopback(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1")


@pytest.fixture(scope="module")
def local_ray():
    start_sweep_ray()
    yield
    ray.shutdown()
