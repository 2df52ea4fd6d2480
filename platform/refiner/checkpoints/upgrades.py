"""Old checkpoints brought up to today's orchestrator state, in one place.

The orchestrator's state (a checkpoint's "orchestrator" entry) carries a
`state_version`; each `Upgrade` step brings a state of the version before it up to its
own, by the change that version made. A state from before versions were kept is
version 0. Every reader of a checkpoint file gets the upgraded state
(`refiner.checkpoints.files.read_checkpoint`), so `load_state_dict` reads today's keys only.

When the state gains a key: add a step here (the next version, what it fills in for
older states), and `STATE_VERSION` follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

State = dict[str, Any]


@dataclass(frozen=True)
class Upgrade:
    version: int  # the state version this step produces
    change: str  # what that version added, in words
    apply: Callable[[State], None]


def _no_calibration(state: State) -> None:
    state.setdefault("calibration", None)  # stopping settings: the config's


def _no_task_type(state: State) -> None:
    state.setdefault("task_type", None)  # what it trained on: unknown


def _no_puzzle_index(state: State) -> None:
    state.setdefault("puzzle_index", None)  # no puzzle conditioning


def _no_weight_average(state: State) -> None:
    state.setdefault("weight_average", None)  # "model" holds the live weights


UPGRADES = (
    Upgrade(1, "calibrated stopping settings", _no_calibration),
    Upgrade(2, "the task type trained on", _no_task_type),
    Upgrade(3, "the puzzle index of puzzle conditioning", _no_puzzle_index),
    Upgrade(4, "an EMA of the weights beside the live ones", _no_weight_average),
)
STATE_VERSION = UPGRADES[-1].version
VERSION_KEY = "state_version"


def upgrade_state(state: State) -> State:
    """`state` (changed in place and returned) at STATE_VERSION.

    Raises ValueError for a state newer than this code reads."""
    version = state.get(VERSION_KEY, 0)
    if not isinstance(version, int) or version > STATE_VERSION:
        raise ValueError(
            f"orchestrator state version {version!r}; this code reads up to {STATE_VERSION}"
        )
    for step in UPGRADES:
        if step.version > version:
            step.apply(state)
    state[VERSION_KEY] = STATE_VERSION
    return state
