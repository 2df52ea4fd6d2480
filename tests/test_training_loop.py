"""The package's training loop (refiner.train.fit), in a plain process: no Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from puzzle_fixtures import permutation_tasks, split
from refiner_fixtures import parity_batch, tiny_orchestrator

from refiner.augment import AugmentationSpec
from refiner.data.batches import iterate_batches
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex
from refiner.train.fit import Update, augmented_batches, fit
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.step_metrics import StepMetrics


def _setup(seed: int = 0):
    o = tiny_orchestrator(seed=seed)
    optimizer = make_optimizer(o.model, lr=1e-3)
    return o, optimizer, warmup_cosine(optimizer, warmup_steps=2, total_steps=10)


def _batches(updates: int) -> list[dict[str, torch.Tensor]]:
    return list(iterate_batches(parity_batch(8 * updates, seed=3), 8, seed=0))


def test_fit_trains_as_train_step_called_by_hand():
    by_hand, optimizer, scheduler = _setup()
    expected = [by_hand.train_step(b, optimizer, lr_scheduler=scheduler).loss for b in _batches(6)]
    o, optimizer, scheduler = _setup()
    seen: list[Update] = []
    result = fit(
        o,
        optimizer,
        scheduler,
        _batches(6),
        steps=6,
        task_type="sequence",
        on_update=seen.append,
    )
    assert [u.metrics.loss for u in seen] == expected  # the same updates, bit for bit
    assert [u.step for u in seen] == [1, 2, 3, 4, 5, 6] and o.step_count == 6
    assert all(isinstance(u.metrics, StepMetrics) and u.rows == 8 for u in seen)
    assert all(u.wait_s >= 0 and u.compute_s > 0 for u in seen)
    assert (result.step, result.updates, result.stopped_early) == (6, 6, False)


def test_a_hook_stops_early_and_a_resumed_run_trains_up_to_steps():
    o, optimizer, scheduler = _setup()
    result = fit(
        o,
        optimizer,
        scheduler,
        _batches(6),
        steps=6,
        task_type="sequence",
        on_update=lambda update: update.step == 2,
    )
    assert (result.step, result.updates, result.stopped_early) == (2, 2, True)
    result = fit(o, optimizer, scheduler, _batches(6), steps=5, task_type="sequence")
    assert (result.step, result.updates) == (5, 3)  # from update 2 to 5


def test_before_update_sees_each_update_and_its_error_stops_the_loop():
    o, optimizer, scheduler = _setup()
    called: list[int] = []

    def fail_at_3(step: int) -> None:
        called.append(step)
        if step == 3:
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError, match="injected"):
        fit(
            o,
            optimizer,
            scheduler,
            _batches(6),
            steps=6,
            task_type="sequence",
            before_update=fail_at_3,
        )
    assert called == [0, 1, 2, 3] and o.step_count == 3  # raised before update 4


def test_a_stream_that_ends_early_is_an_error_naming_the_update():
    o, optimizer, scheduler = _setup()
    with pytest.raises(RuntimeError, match="ended at update 2 of 5"):
        fit(o, optimizer, scheduler, _batches(2), steps=5, task_type="sequence")


def test_augmented_batches_carry_puzzle_ids_and_repeat_by_seed():
    tasks = split(permutation_tasks(groups=3, rows_per_group=8, held_out=0), "train")
    spec = AugmentationSpec(strategies=("paraphrase",), count=2)
    puzzles = PuzzleIndex.from_tasks(tasks, "per_puzzle")
    length = len(tasks.column("input")[0])

    def first(n: int) -> list[dict[str, torch.Tensor]]:
        stream = augmented_batches(tasks, spec, 0, length, 5, puzzles=puzzles)
        return [next(stream) for _ in range(n)]

    a, b = first(12), first(12)  # more than one round of augmented copies
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in ("input", "target", BATCH_KEY))
    assert all(x["input"].shape == (5, length) for x in a)
    ids = np.concatenate([x[BATCH_KEY].numpy() for x in a])
    assert set(ids.tolist()) == {1, 2, 3}  # the three groups, none unknown
