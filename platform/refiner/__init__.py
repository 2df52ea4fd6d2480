"""refiner: train and tune iterative refiner models.

Layers (tests/test_layers.py keeps them true):

- core: this package minus the two below. Imports neither Ray nor MLflow, so it runs
  in a plain Python loop on a laptop (the model, orchestrator, augmentation, tasks,
  config, checkpoints, the pure parts of sweeps in ``refiner.sweep``, ``refiner.runs.cli``);
- ``refiner.distributed``: the only code that imports Ray (Ray Data, Ray Train, Tune);
- ``refiner.tracking``: the only code that imports MLflow.

The jobs (``jobs/*.py``) parse arguments and call these layers. The seed's names import
from the package itself (loaded on first use, so ``import refiner.config.sections`` does not pull
in the model)::

    from refiner import UnifiedRefinerOrchestrator, OrchestrationConfig, RefinerModel, MemoryBank
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "UnifiedRefinerOrchestrator": "refiner.train.orchestrator",
    "OrchestrationConfig": "refiner.config.sections",
    "ModelConfig": "refiner.config.sections",
    "RefinerModel": "refiner.model.network",
    "MemoryBank": "refiner.model.memory",
}
__all__ = [
    "MemoryBank",
    "ModelConfig",
    "OrchestrationConfig",
    "RefinerModel",
    "UnifiedRefinerOrchestrator",
    "__version__",
]

if TYPE_CHECKING:
    from refiner.config.sections import ModelConfig, OrchestrationConfig
    from refiner.model.memory import MemoryBank
    from refiner.model.network import RefinerModel
    from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'refiner' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
