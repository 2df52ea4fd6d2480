"""Which steps of the training unroll carry gradient: the window of
`OrchestrationConfig.gradient_window` steps, ending at the last step or, with
``backprop_window: random``, at a step drawn per update."""

from __future__ import annotations

import numpy as np

from refiner.config.sections import OrchestrationConfig
from refiner.model.step_values import StepRecord
from refiner.model.truncation import keep_last


def draw_window_end(config: OrchestrationConfig, update: int, steps: int, window: int) -> int:
    """The step update number `update`'s gradient window ends at: the last one, or with
    ``backprop_window: random`` one drawn uniformly from ``window..steps``, the same on
    every DDP rank and again on a resumed run (seeded by the config's seed and `update`)."""
    if config.backprop_window == "last" or window >= steps:
        return steps
    rng = np.random.default_rng((config.seed, update))
    return int(rng.integers(window, steps + 1))


def cut_outside_window(
    records: list[StepRecord], config: OrchestrationConfig, window_end: int | None
) -> list[StepRecord]:
    """`records` with every step outside the window (K = config.gradient_window() steps
    ending at `window_end`, None: at the last step) detached."""
    T, K = config.max_steps_train, config.gradient_window()
    end = T if window_end is None else min(max(window_end, K), T)
    return keep_last(K, T, end)(records)
