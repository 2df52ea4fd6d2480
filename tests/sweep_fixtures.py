"""The jobs as importable modules and search-space files for the sweep tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import yaml
from tiny_runs import TINY_SWEEP

ROOT = Path(__file__).resolve().parent.parent

TINY = TINY_SWEEP  # the older name; tiny_runs.TINY_SWEEP is the definition


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
