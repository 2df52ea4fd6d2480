"""What the modules around the orchestrator use of it, as a typed interface.

Inference, calibration, checkpoints and the training loop are handed an orchestrator
but must not import refiner.orchestrator (it imports them: an import cycle). They type
it as `Orchestrator`, which `UnifiedRefinerOrchestrator` satisfies; mypy checks both
sides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

from refiner.config.sections import OrchestrationConfig
from refiner.infer.halting import CalibrationResult
from refiner.model.edits import EditPolicy
from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel
from refiner.train.step_metrics import StepMetrics


class Orchestrator(Protocol):
    config: OrchestrationConfig
    device: torch.device
    memory_bank: MemoryBank | None
    calibration: CalibrationResult | None
    edit_policy: EditPolicy
    step_count: int

    @property
    def core(self) -> RefinerModel: ...

    def train_step(
        self,
        batch: Mapping[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        task_type: str = ...,
        lr_scheduler: Any = None,
    ) -> StepMetrics: ...

    def inference(
        self,
        input_ids: torch.Tensor | np.ndarray | list,
        return_traces: bool = False,
        max_steps_override: int | None = None,
        early_stopping: bool | None = None,
        task_type: str | None = None,
        puzzle_ids: torch.Tensor | np.ndarray | list | None = None,
    ) -> dict[str, Any]: ...

    def autocast_context(self) -> contextlib.AbstractContextManager: ...

    def exploring(self, explore: bool) -> contextlib.AbstractContextManager[None]: ...

    def memory_snapshot(self) -> tuple[torch.Tensor, torch.Tensor] | None: ...

    def decode(self, ids: list[int]) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any], resume_training: bool = False) -> None: ...
