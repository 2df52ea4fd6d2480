"""The model an orchestrator is built around: a fresh RefinerModel placed on its device
(and wrapped for DDP), and the model inside such a wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn as nn

from refiner.config.sections import ModelConfig
from refiner.model.network import RefinerModel


def unwrap(model: nn.Module) -> RefinerModel:
    """The RefinerModel inside a DDP (or similar) wrapper."""
    return cast(RefinerModel, getattr(model, "module", model))


def placed_model(
    config: ModelConfig,
    device: torch.device | str | None,
    seed: int | None,
    wrap_model: Callable[[nn.Module], nn.Module] | None,
) -> nn.Module:
    """A fresh RefinerModel (torch seeded with `seed` first), on `device`, wrapped."""
    if seed is not None:
        torch.manual_seed(seed)
    model: nn.Module = (
        RefinerModel(config).to(device) if device is not None else RefinerModel(config)
    )
    return wrap_model(model) if wrap_model is not None else model
