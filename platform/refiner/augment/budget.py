"""How many augmented rows one augmentation call may produce: memory bounded up front.

One Ray Data augmentation call turns a chunk of tasks into ``tasks x count`` padded rows
at once (the engine is vectorised over them). Its peak memory is about
``ROW_COPIES x (8 x seq_len + ROW_OVERHEAD)`` bytes per row: int32 input and target,
the task's columns repeated per row, per-row metadata, the kernels' temporaries and the
block's shuffled copy (``test_augment_budget`` measures parity, sudoku and text calls
against this estimate; sudoku's band/stack permutations need the most, ~4.1 copies).

The design (docs/reliability.md): the tasks per call are lowered until a call fits the
budget (``training.augment_block_mb``), so any count that fits for one task streams in
bounded blocks; a count whose rows do not fit even for a single task is refused before
anything starts, with the largest count that fits. A task's rows are never split
across calls: dedup and the engine's per-task layout need them together.
"""

from __future__ import annotations

from typing import Any

from refiner.config.sections import ConfigError

ROW_COPIES = 5
ROW_OVERHEAD = 128  # bytes per row besides the tokens: task columns repeated, seeds, intensities
MIB = 1 << 20


def row_bytes(seq_len: int) -> int:
    """Estimated peak bytes per augmented row inside one augmentation call."""
    return ROW_COPIES * (8 * seq_len + ROW_OVERHEAD)


def max_count(seq_len: int, budget_bytes: int) -> int:
    """The largest augmentation count whose rows for one task fit the budget."""
    return budget_bytes // row_bytes(seq_len)


def tasks_per_call(
    count: int, seq_len: int, requested: int, budget_bytes: int, min_rows: int = 0
) -> int:
    """``requested`` tasks per call, raised to make at least ``min_rows`` rows (few rows a
    task, e.g. no augmentation, would otherwise make blocks so small that Ray Data's cost
    per block starves the trainers), then lowered so that a call stays within the budget
    (>= 1)."""
    wanted = max(requested, -(-min_rows // count))
    return max(1, min(wanted, budget_bytes // (count * row_bytes(seq_len))))


def over_budget(count: int, seq_len: int, budget_bytes: int) -> str | None:
    """Why ``count`` rows of one task cannot fit the budget, or None when they do."""
    need = count * row_bytes(seq_len)
    if need <= budget_bytes:
        return None
    return (
        f"{count} augmented rows of one task need about {_size(need)} in one augmentation "
        f"call ({_size(row_bytes(seq_len))} per row at seq_len={seq_len}), more than the "
        f"{_size(budget_bytes)} budget; at most {max_count(seq_len, budget_bytes)} fit"
    )


def check_budget(config: Any, origin: str = "") -> None:
    """Refuse an ``ExperimentConfig`` whose augmentation count cannot fit one call.

    ``origin`` (e.g. ``"run.yaml: "``) prefixes the message, as config errors do.
    """
    if not config.task.augment:  # the tasks as they are: one row each
        return
    budget_mb = config.training.augment_block_mb
    why = over_budget(
        config.orchestration.augmentation_count, config.model.seq_len, budget_mb * MIB
    )
    if why is not None:
        raise ConfigError(
            f"{origin}orchestration.augmentation_count: {why} (training.augment_block_mb="
            f"{budget_mb}); lower the count or raise training.augment_block_mb"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
