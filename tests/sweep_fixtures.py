"""The jobs as importable modules and search-space files for the sweep tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml
from tiny_runs import TINY_SWEEP

if TYPE_CHECKING:
    from refiner.sweep.outcome import SweepOutcome

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


def tiny_sweep(
    tmp_path: Path, space_file: Path, name: str, steps: int, **plan: Any
) -> tuple[SweepOutcome, str, str]:
    """``space_file`` swept on the tiny run, into a SQLite store and a local storage folder
    under ``tmp_path``: the outcome, the tracking URI and the storage path."""
    # imported here: the fast tests use this module's other helpers without Ray
    from refiner.config.experiment import load_task_table
    from refiner.distributed.sweep_driver import run_sweep
    from refiner.sweep.plan import plan_sweep
    from refiner.tracking import sweeps as sweep_tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = str(tmp_path / "store")
    swept = plan_sweep(
        space_file,
        job("sweep").DEFAULT_CONFIG,
        TINY_SWEEP,
        steps=steps,
        name=name,
        storage=storage,
        tracking_uri=uri,
        experiment="sweeps",
        out_dir=tmp_path / "out",
        **plan,
    )
    config = swept.config()
    tasks = load_task_table(config.task, config.seed)
    return run_sweep(swept, tasks, tracking=sweep_tracking), uri, storage
