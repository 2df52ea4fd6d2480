"""Bounded memory for augmentation: tasks per call follow the budget; impossible counts
are refused before anything starts (exit 2, no Ray, no MLflow store)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from test_train_job_bad_input import assert_rejected_before_anything_started, run_in_process

from refiner.augment import STRATEGIES, AugmentationSpec, augment_batch
from refiner.augment.budget import MIB, max_count, over_budget, row_bytes, tasks_per_call
from refiner.config.experiment import prepare_experiment
from refiner.config.sections import ConfigError
from refiner.tasks.sources import load_tasks


def test_tasks_per_call_is_lowered_to_fit_and_never_below_one():
    per_task = 300 * row_bytes(64)
    assert tasks_per_call(300, 64, 32, budget_bytes=1024 * MIB) == 32  # fits as asked
    assert tasks_per_call(300, 64, 32, budget_bytes=5 * per_task + 1) == 5
    assert tasks_per_call(300, 64, 32, budget_bytes=per_task // 2) == 1


def test_tasks_per_call_is_raised_for_few_rows_a_task_within_the_budget():
    """One row a task (no augmentation): enough tasks for min_rows rows, not 32 rows."""
    assert tasks_per_call(1, 100, 32, budget_bytes=1024 * MIB, min_rows=512) == 512
    assert tasks_per_call(8, 100, 32, budget_bytes=1024 * MIB, min_rows=512) == 64
    assert tasks_per_call(300, 100, 32, budget_bytes=1024 * MIB, min_rows=512) == 32  # enough
    assert tasks_per_call(1, 100, 32, budget_bytes=100 * row_bytes(100), min_rows=512) == 100


def test_the_largest_count_that_fits_is_accepted_and_one_more_refused():
    budget = 64 * MIB
    fits = max_count(81, budget)
    assert over_budget(fits, 81, budget) is None
    why = over_budget(fits + 1, 81, budget)
    assert why is not None and f"at most {fits} fit" in why


@pytest.mark.parametrize(("source", "size"), [("parity", 16), ("sudoku", 9), ("text", None)])
def test_a_call_at_the_chosen_size_stays_within_its_budget(source, size):
    budget, count = 8 * MIB, 300
    tasks = load_tasks(source, count=64, seed=0, **({"size": size} if size else {}))
    seq_len = 128 if source == "text" else size * size if source == "sudoku" else size
    n = tasks_per_call(count, seq_len, 64, budget)
    assert 1 <= n < 64  # the budget, not the request, decides here
    picked = tasks.slice(0, n)
    columns = {c: picked.column(c).to_numpy(zero_copy_only=False) for c in picked.column_names}
    tracemalloc.start()
    out = augment_batch(columns, AugmentationSpec(STRATEGIES, count=count), 0, pad_to=seq_len)
    mixed = {k: v[np.random.default_rng(0).permutation(len(v))] for k, v in out.items()}
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(mixed["input"]) == n * count
    assert peak <= budget, (peak, budget)


def test_impossible_count_is_refused_naming_the_key_and_the_limit(tmp_path):
    with pytest.raises(ConfigError) as caught:
        prepare_experiment(None, ["orchestration.augmentation_count=1000000000"])
    message = str(caught.value)
    assert message.startswith("orchestration.augmentation_count: 1000000000 augmented rows")
    assert "GiB" in message and "at most" in message and "training.augment_block_mb" in message
    # Without augmentation the same count is unused, so nothing to refuse.
    prepare_experiment(None, ["orchestration.augmentation_count=1000000000", "task.augment=false"])
    # A larger budget admits a larger count.
    prepare_experiment(
        None, ["orchestration.augmentation_count=2000000", "training.augment_block_mb=4096"]
    )


def test_train_job_refuses_an_impossible_count_before_anything_starts(tmp_path, capsys):
    done = run_in_process(tmp_path, capsys, "--set", "orchestration.augmentation_count=1000000000")
    assert_rejected_before_anything_started(
        done, tmp_path, "orchestration.augmentation_count", "at most"
    )
    assert done.stderr.count("\n") == 1  # one line
