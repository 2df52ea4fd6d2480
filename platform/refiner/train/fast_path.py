"""`training.compile` resolved per device: whether the orchestrator turns on the model's
fast path (`RefinerModel.enable_fast_path`, torch.compile of the step and its losses)."""

from __future__ import annotations

from typing import Literal

import torch

CompileSetting = Literal["auto", "on", "off"]
# torch.compile mode of the fast path per device type (None: inductor's default, which
# compiles in seconds; "max-autotune-no-cudagraphs" tunes GEMMs for minutes)
FAST_PATH_MODE: dict[str, str | None] = {"cuda": None, "cpu": None}


def fast_path_enabled(setting: CompileSetting, device: torch.device) -> bool:
    """`training.compile` resolved for a device: auto is on for CUDA only."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be 'auto', 'on' or 'off', got {setting!r}")
    return setting == "on" or (setting == "auto" and device.type == "cuda")
