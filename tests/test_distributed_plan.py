"""StreamPlan: where each update's rows come from, and where a resumed run picks up."""

from __future__ import annotations

import pyarrow as pa
import pytest

from refiner.distributed.data import StreamPlan
from refiner.tasks.schema import split_validation


def plan(num_tasks: int = 10, rows_per_task: int = 30, global_batch: int = 64) -> StreamPlan:
    return StreamPlan(
        num_tasks=num_tasks,
        rows_per_task=rows_per_task,
        tasks_per_block=4,
        global_batch=global_batch,
    )


def test_rows_and_blocks_per_epoch() -> None:
    p = plan()
    assert p.rows_per_epoch == 300
    assert p.blocks_per_epoch == 3  # 4 + 4 + 2 tasks


@pytest.mark.parametrize("step", range(0, 40))
def test_epoch_of_step_matches_consumed_rows(step: int) -> None:
    p = plan()
    first_row = step * p.global_batch
    assert p.epoch_of_step(step) == first_row // p.rows_per_epoch
    # Skipping rows_to_skip of the step's epoch lands exactly on the step's first row.
    assert p.epoch_of_step(step) * p.rows_per_epoch + p.rows_to_skip(step) == first_row
    assert 0 <= p.rows_to_skip(step) < p.rows_per_epoch


def test_epochs_for_covers_the_run_plus_a_spare() -> None:
    p = plan()
    assert p.epochs_for(0, 1) == range(0, 2)
    # 40 updates x 64 rows = 2560 rows = epochs 0..8; plus one spare.
    assert p.epochs_for(0, 40) == range(0, 10)
    # A run resumed at update 20 (row 1280, epoch 4) streams from epoch 4 only.
    assert p.epochs_for(20, 40) == range(4, 10)


@pytest.mark.parametrize("dedup_layout", [False, True])
def test_stream_always_holds_enough_rows(dedup_layout: bool) -> None:
    for tasks, rows, batch in [(3, 1, 16), (7, 300, 64), (100, 2, 512), (1, 1, 1), (10, 30, 64)]:
        p = plan(tasks, rows, batch)
        for start in (0, 5, 17):
            total = start + 50
            if dedup_layout:
                epochs = p.epochs_for(start, total)
                streamed = len(epochs) * p.rows_per_epoch
            else:
                first, blocks = p.blocks_for(start, total)
                assert first == p.epoch_of_step(start)
                streamed = sum(p.rows_in_block(b) for b in range(blocks))
            spare = streamed - p.rows_to_skip(start) - (total - start) * p.global_batch
            assert spare >= (p.rows_per_epoch if dedup_layout else 2 * p.global_batch)


def test_bounded_stream_is_much_smaller_than_an_epoch_for_short_runs() -> None:
    p = StreamPlan(num_tasks=4000, rows_per_task=300, tasks_per_block=32, global_batch=128)
    first, blocks = p.blocks_for(0, 100)
    rows = sum(p.rows_in_block(b) for b in range(blocks))
    assert first == 0 and rows < p.rows_per_epoch / 20
    assert p.rows_in_block(p.blocks_per_epoch - 1) == (4000 - 124 * 32) * 300


def test_split_validation_prefers_val_then_test() -> None:
    table = pa.table({"split": ["train", "val", "test", "train"], "x": [0, 1, 2, 3]})
    train, held = split_validation(table, "val")
    assert train.column("x").to_pylist() == [0, 3]
    assert held.column("x").to_pylist() == [1]
    train, held = split_validation(table.filter(pa.array([True, False, True, True])), "val")
    assert held.column("x").to_pylist() == [2]
    train, held = split_validation(table.slice(0, 1), "val")
    assert held.num_rows == 0 and train.num_rows == 1
