"""What an orchestrator checkpoints and restores (`state_dict` / `load_state_dict`), and
the training statistics it reports: functions of the parts it holds (`Parts`), so that
they need not import the orchestrator."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from refiner.checkpoints.upgrades import STATE_VERSION, VERSION_KEY, upgrade_state
from refiner.config.sections import OrchestrationConfig
from refiner.infer.halting import CalibrationResult
from refiner.model.edits import EditSelector
from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel
from refiner.model.puzzles import PuzzleIndex
from refiner.train.grokfast import GrokfastFilter
from refiner.train.weight_average import WeightAverage

HISTORY_LENGTH = 100  # recent losses and gradient norms kept (and checkpointed)


class Parts(Protocol):
    """The orchestrator's state, as these functions read and restore it."""

    config: OrchestrationConfig
    device: torch.device
    training: bool
    weight_average: WeightAverage | None
    step_count: int
    skipped_steps: int
    task_type: str | None
    loss_history: deque[float]
    grad_norm_history: deque[float]
    edit_selector: EditSelector
    grokfast: GrokfastFilter
    memory_bank: MemoryBank | None
    puzzle_index: PuzzleIndex | None
    calibration: CalibrationResult | None

    @property
    def core(self) -> RefinerModel: ...


def state_of(parts: Parts) -> dict[str, Any]:
    """Everything the orchestrator owns, as tensors and plain containers. With an EMA of
    the weights, "model" is the average (what evaluation and serving load) and
    "weight_average" the live weights training resumes from."""
    model, weight_average = parts.core.state_dict(), None
    if parts.weight_average is not None:
        live, model = parts.weight_average.module_states(parts.core)
        weight_average = {"live_model": live, "updates": parts.weight_average.updates}
    bank, index, calibration = parts.memory_bank, parts.puzzle_index, parts.calibration
    return {
        VERSION_KEY: STATE_VERSION,  # how refiner.checkpoints.upgrades reads it later
        "model": model,
        "weight_average": weight_average,
        "model_config": parts.core.config.to_dict(),
        "config": parts.config.to_dict(),
        "step_count": parts.step_count,
        "skipped_steps": parts.skipped_steps,
        "task_type": parts.task_type,
        "loss_history": list(parts.loss_history),
        "grad_norm_history": list(parts.grad_norm_history),
        "edit_selector": parts.edit_selector.state_dict(),
        "grokfast": parts.grokfast.state_dict(),
        "memory_bank": bank.state_dict() if bank is not None else None,
        "puzzle_index": index.to_dict() if index is not None else None,
        "calibration": calibration.to_dict() if calibration is not None else None,
    }


def restore_state(parts: Parts, state: Mapping[str, Any], resume_training: bool) -> None:
    """Restore from `state_of` (of this version or an older one: see
    refiner.checkpoints.upgrades). The orchestrator keeps its own config object.

    The model gets the checkpoint's "model" weights (an EMA run's average); with
    `resume_training`, an EMA run's live weights go back into the model and the average
    behind them, so training continues where it stopped."""
    state = upgrade_state(dict(state))  # an older state gains what it lacks
    parts.core.load_state_dict(state["model"])
    averaged = state["weight_average"]
    if parts.weight_average is not None:
        if resume_training and averaged is not None:
            parts.weight_average.restore(parts.core, averaged["live_model"], averaged["updates"])
        else:
            parts.weight_average.reset(parts.core)
    parts.step_count = state["step_count"]
    parts.skipped_steps = state["skipped_steps"]
    parts.task_type = state["task_type"]
    parts.loss_history = deque(state["loss_history"], maxlen=HISTORY_LENGTH)
    parts.grad_norm_history = deque(state["grad_norm_history"], maxlen=HISTORY_LENGTH)
    parts.edit_selector.load_state_dict(state["edit_selector"])
    parts.grokfast.load_state_dict(state["grokfast"], parts.device)
    if parts.memory_bank is not None and state["memory_bank"] is not None:
        parts.memory_bank.load_state_dict(state["memory_bank"])
    if state["puzzle_index"] is not None:
        parts.puzzle_index = PuzzleIndex.from_dict(state["puzzle_index"])
    calibration = state["calibration"]
    parts.calibration = CalibrationResult.from_dict(calibration) if calibration else None


def smoothed_loss(parts: Parts) -> float | None:
    """The mean of the last `loss_smoothing_window` losses (None before any)."""
    recent = list(parts.loss_history)[-parts.config.loss_smoothing_window :]
    return sum(recent) / len(recent) if recent else None


def training_stats(parts: Parts) -> dict[str, Any]:
    """Counters, recent gradient norms and losses, edit performance, memory stats.

    The seed's key names (`training_mode`, `edit_strategy_performance`, `memory_stats`)
    sit beside this project's (`mode`, `edit_performance`, `memory`)."""
    grads, losses = list(parts.grad_norm_history), list(parts.loss_history)
    mode = "train" if parts.training else "eval"
    edit_performance = parts.edit_selector.performance()
    memory = parts.memory_bank.get_stats() if parts.memory_bank is not None else None
    return {
        "step_count": parts.step_count,
        "skipped_steps": parts.skipped_steps,
        "mode": mode,
        "training_mode": mode,
        "task_type": parts.task_type,
        "gradient_norm": {
            "recent": grads[-1] if grads else None,
            "average": sum(grads) / len(grads) if grads else None,
            "history_length": len(grads),
        },
        "loss": {
            "recent": losses[-1] if losses else None,
            "average": sum(losses) / len(losses) if losses else None,
            "smoothed": smoothed_loss(parts),
            "history_length": len(losses),
        },
        "edit_performance": edit_performance,
        "edit_strategy_performance": edit_performance,
        "memory": memory,
        "memory_stats": memory,
        "config": parts.config.to_dict(),
    }
