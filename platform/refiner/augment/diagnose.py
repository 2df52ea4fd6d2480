"""Why an augmentation call failed: the task (row) and the strategy that reproduce it.

Only runs on the failure path: the call is retried task by task, then strategy by
strategy for the first failing task, so the message can name the row and the strategy
instead of a chunk of tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from refiner.augment.engine import augment_batch
from refiner.augment.spec import AugmentationSpec
from refiner.runs.failures import DeterministicError


def explain_augmentation_failure(
    error: Exception,
    batch: Mapping[str, np.ndarray],
    spec: AugmentationSpec,
    seed: int,
    epoch: int,
    pad_to: int | None,
    source: str = "tasks",
    rows: Sequence[int] | None = None,
) -> DeterministicError:
    """A ``DeterministicError`` naming ``source``, the failing task's row and strategy.

    ``rows[i]`` is the row in ``source`` of the batch's task ``i`` (default: ``i``).
    """
    task, cause = _first_failing_task(batch, spec, seed, epoch, pad_to)
    if task is None:  # only the tasks together fail: name the chunk and the spec
        listed = _listed(rows if rows is not None else range(_size(batch)))
        where, what, cause = f"rows {listed}", f"strategies {_names(spec.strategies)}", error
    else:
        row = int(rows[task]) if rows is not None else task
        where = f"row {row} (task_id {str(batch['task_id'][task])!r})"
        strategy = _failing_strategy(_one(batch, task), spec, seed, epoch, pad_to)
        what = f"strategy {strategy}" if strategy else "no strategy (the task itself)"
    return DeterministicError(
        f"{source}: {where}: augmentation fails with {what} (epoch {epoch}): "
        f"{type(cause).__name__}: {cause}"
    )


def _first_failing_task(
    batch: Mapping[str, np.ndarray],
    spec: AugmentationSpec,
    seed: int,
    epoch: int,
    pad_to: int | None,
) -> tuple[int | None, Exception | None]:
    for i in range(_size(batch)):
        try:
            augment_batch(_one(batch, i), spec, seed, epoch, pad_to)
        except Exception as err:  # noqa: BLE001 - any failure of this task is the answer
            return i, err
    return None, None


def _failing_strategy(
    task_batch: Mapping[str, np.ndarray],
    spec: AugmentationSpec,
    seed: int,
    epoch: int,
    pad_to: int | None,
) -> str | None:
    """The first strategy that fails alone, or None when the task fails without any."""
    try:
        augment_batch(task_batch, replace(spec, strategies=()), seed, epoch, pad_to)
    except Exception:  # noqa: BLE001
        return None
    for name in spec.strategies:
        try:
            augment_batch(task_batch, replace(spec, strategies=(name,)), seed, epoch, pad_to)
        except Exception:  # noqa: BLE001
            return name
    return _names(spec.strategies)  # only in combination


def _one(batch: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {name: np.asarray(values)[i : i + 1] for name, values in batch.items()}


def _names(strategies: Sequence[str]) -> str:
    return ",".join(strategies) or "none"


def _size(batch: Mapping[str, np.ndarray]) -> int:
    return len(batch["task_id"])


def _listed(rows: Sequence[int], most: int = 5) -> str:
    rows = [int(r) for r in rows]
    text = ", ".join(map(str, rows[:most]))
    return text + (f" and {len(rows) - most} more" if len(rows) > most else "")
