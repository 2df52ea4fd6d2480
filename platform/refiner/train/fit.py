"""The training loop: batches in, one `train_step` per batch, until the update count.

Plain PyTorch (no Ray, no MLflow). Every way of training calls `fit`: the Ray worker
(refiner.distributed.loop, with its data shard and its report/checkpoint hook), the GPU
bench scripts and the examples. What differs between them stays in their hooks:

- `before_update(step)`: called before each update (e.g. a test's fault injection);
  None costs nothing.
- `on_update(update)`: called after each update with its `Update` (metrics and
  timings); it validates, reports or checkpoints, and returns True to stop early.

`augmented_batches` is the batch stream of a single-process run: the training rows
augmented afresh each round, as the Ray data stream augments them, with each copy's
puzzle identity, shuffled into minibatches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from refiner.augment import AugmentationSpec, augment_table
from refiner.data.batches import Batch, batch_from_arrays, iterate_batches
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex
from refiner.train.interface import Orchestrator
from refiner.train.step_metrics import StepMetrics


@dataclass(frozen=True)
class Update:
    """One finished update, as `on_update` sees it."""

    step: int  # the orchestrator's update count after it
    metrics: StepMetrics
    rows: int  # rows in the batch
    wait_s: float  # waiting for the batch (data loading, augmentation)
    compute_s: float  # the update itself (device synchronised when `synchronize`)


@dataclass
class FitResult:
    step: int  # the orchestrator's update count at the end
    updates: int  # updates this call made
    stopped_early: bool  # on_update asked to stop before `steps`
    wait_s: float
    compute_s: float


def fit(
    orchestrator: Orchestrator,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    steps: int,
    task_type: str,
    on_update: Callable[[Update], bool | None] | None = None,
    before_update: Callable[[int], None] | None = None,
    synchronize: bool = False,
) -> FitResult:
    """Train until the orchestrator's update count reaches `steps` (a resumed run starts
    from its count) or `on_update` returns True.

    `synchronize`: wait for the device after each update, so that `compute_s` is the
    update's time on an asynchronous device (CUDA); off, nothing waits.
    Raises RuntimeError when `batches` ends first."""
    stream = iter(batches)
    step = orchestrator.step_count
    updates, wait_s, compute_s = 0, 0.0, 0.0
    device = orchestrator.device
    sync = synchronize and device.type == "cuda"
    while step < steps:
        mark = time.perf_counter()
        try:
            batch = next(stream)
        except StopIteration:
            raise RuntimeError(f"the training stream ended at update {step} of {steps}") from None
        fetched = time.perf_counter()
        if before_update is not None:
            before_update(step)
        metrics = orchestrator.train_step(
            batch, optimizer, task_type=task_type, lr_scheduler=scheduler
        )
        if sync:
            torch.cuda.synchronize(device)
        done = time.perf_counter()
        step, updates = orchestrator.step_count, updates + 1
        wait_s += fetched - mark
        compute_s += done - fetched
        update = Update(step, metrics, batch["input"].shape[0], fetched - mark, done - fetched)
        if on_update is not None and on_update(update):
            return FitResult(step, updates, True, wait_s, compute_s)
    return FitResult(step, updates, False, wait_s, compute_s)


def augmented_batches(
    rows: pa.Table,
    spec: AugmentationSpec,
    seed: int,
    seq_len: int,
    batch_size: int,
    *,
    device: torch.device | str | None = None,
    puzzles: PuzzleIndex | None = None,
    first_round: int = 0,
) -> Iterator[Batch]:
    """Minibatches of `rows` without end: round r augments them (`spec`, `seed`, epoch r)
    and shuffles them (seed r) into minibatches of `batch_size` (the last partial one
    dropped). With `puzzles`, each augmented copy carries its puzzle identity, as the
    Ray stream gives it."""
    round_ = first_round
    while True:
        augmented = augment_table(rows, spec, seed, epoch=round_, pad_to=seq_len)
        batch = batch_from_arrays(
            _tokens(augmented, "input"), _tokens(augmented, "target"), seq_len, device
        )
        if puzzles is not None:
            ids = puzzles.ids(
                augmented.column("group_id").to_pylist(),
                augmented.column("aug_index").to_numpy(),
            )
            batch[BATCH_KEY] = torch.from_numpy(ids).to(device)
        yield from iterate_batches(batch, batch_size, seed=round_)
        round_ += 1


def _tokens(rows: pa.Table, column: str) -> np.ndarray:
    """A fixed-size list column as one [N, L] array (no per-row Python lists)."""
    values = rows.column(column).combine_chunks()
    return values.flatten().to_numpy().reshape(len(values), -1)
