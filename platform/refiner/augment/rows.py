"""The augmented rows of a group of tasks: seeds, indices and per-row intensities.

Rows are task-major: task t's rows are ``t*count .. t*count+count-1``, index ascending.
Intensities: input-only strategies draw ``f ~ U(0, max)`` per row (stream
"intensity/<name>"); label-consistent ones use the configured value. The original row
(index 0 with ``include_original``) gets intensity 0 everywhere, which makes every
transform the identity, so it comes out as the task itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refiner.augment.counter_rng import uniforms
from refiner.augment.spec import AugmentationSpec
from refiner.augment.strategies import INPUT_ONLY_STRATEGIES


@dataclass
class RowPlan:
    task: np.ndarray  # int64 [N]: which task of the group
    index: np.ndarray  # int64 [N]: augmentation index 0..count-1
    seeds: np.ndarray  # uint64 [N]
    augmented: np.ndarray  # bool [N]: False for the original row
    intensity: dict[str, np.ndarray]  # float64 [N] per enabled strategy

    def __len__(self) -> int:
        return len(self.task)

    def strength(self, strategy: str) -> np.ndarray | None:
        """The per-row intensity of ``strategy``, or None when it is not enabled."""
        return self.intensity.get(strategy)

    def select(self, rows: np.ndarray) -> RowPlan:
        """The plan restricted to ``rows`` (indices or a mask)."""
        return RowPlan(
            self.task[rows],
            self.index[rows],
            self.seeds[rows],
            self.augmented[rows],
            {name: values[rows] for name, values in self.intensity.items()},
        )


def plan_rows(seeds: np.ndarray, spec: AugmentationSpec) -> RowPlan:
    """Plan for tasks whose row seeds are ``seeds`` (uint64 ``[T, count]``)."""
    tasks, count = seeds.shape
    index = np.tile(np.arange(count, dtype=np.int64), tasks)
    flat_seeds = seeds.reshape(-1)
    augmented = np.ones(len(index), dtype=bool)
    if spec.include_original:
        augmented &= index != 0
    intensity = {}
    for name in spec.strategies:
        maximum = spec.intensity[name]
        if name in INPUT_ONLY_STRATEGIES:
            values = uniforms(flat_seeds, f"intensity/{name}", 1)[:, 0] * maximum
        else:
            values = np.full(len(index), maximum)
        intensity[name] = np.where(augmented, values, 0.0)
    return RowPlan(
        task=np.repeat(np.arange(tasks, dtype=np.int64), count),
        index=index,
        seeds=flat_seeds,
        augmented=augmented,
        intensity=intensity,
    )
