"""Reading a batch of tasks (numpy columns, as Ray Data hands them over) into padded arrays.

``input``/``target`` may be an object array of 1-D token arrays (ragged) or a 2-D int
array; strings may be object or str arrays; ``height``/``width`` may hold None/NaN for
non-grids. Per-task Python work happens here (once per task, not per augmented row).
Tasks are then grouped by kind (and canvas shape for grids); each group is augmented
with array operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from refiner.augment.strategies import GRID, PARITY, SEQUENCE, SUDOKU, TEXT
from refiner.data.tokenizers import NUM_SPECIAL, PAD
from refiner.tasks.schema import DEFAULT_NUM_SYMBOLS, REQUIRED_COLUMNS


@dataclass
class TaskGroup:
    """Tasks of one kind (and one canvas shape, for grids), with padded token arrays."""

    kind: str
    positions: np.ndarray  # int64 [T]: the tasks' rows in the batch
    task_ids: np.ndarray  # object [T]
    inputs: np.ndarray  # int32 [T, L], PAD beyond each length
    targets: np.ndarray  # int32 [T, L]
    input_lengths: np.ndarray  # int64 [T]
    target_lengths: np.ndarray  # int64 [T]
    num_symbols: np.ndarray  # int64 [T]
    height: int = 0  # grids only
    width: int = 0

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, tasks: slice) -> TaskGroup:
        """The group restricted to a range of its tasks (arrays are views).

        Token arrays are cut to the subset's own longest row: the engine sizes a chunk's
        output by it, and ragged rows (text, sequences) leave the group's width wider.
        """
        input_lengths, target_lengths = self.input_lengths[tasks], self.target_lengths[tasks]
        width = int(max(input_lengths.max(initial=1), target_lengths.max(initial=1)))
        return TaskGroup(
            kind=self.kind,
            positions=self.positions[tasks],
            task_ids=self.task_ids[tasks],
            inputs=self.inputs[tasks, :width],
            targets=self.targets[tasks, :width],
            input_lengths=input_lengths,
            target_lengths=target_lengths,
            num_symbols=self.num_symbols[tasks],
            height=self.height,
            width=self.width,
        )

    def content_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Each input's content-token positions, in order: int64 ``[T, C]`` and counts ``[T]``.

        Content means a symbol token (id >= NUM_SPECIAL); noise and masking pick among these.
        """
        is_content = self.inputs >= NUM_SPECIAL
        counts = is_content.sum(axis=1)
        width = max(int(counts.max(initial=0)), 1)
        order = np.argsort(~is_content, axis=1, kind="stable")[:, :width]
        return order.astype(np.int64), counts.astype(np.int64)


@dataclass
class TaskBatch:
    task_ids: np.ndarray
    epochs: np.ndarray  # int64 [T]
    groups: list[TaskGroup]
    max_length: int  # longest input or target in the batch

    def __len__(self) -> int:
        return len(self.task_ids)


def read_batch(batch: Mapping[str, np.ndarray], default_epoch: int) -> TaskBatch:
    """Validate and unpack a batch; errors name the task and the field."""
    missing = [name for name in REQUIRED_COLUMNS if name not in batch]
    if missing:
        raise ValueError(f"augment: batch lacks required column(s) {', '.join(missing)}")
    columns = {
        name: np.asarray(values) if not isinstance(values, np.ndarray) else values
        for name, values in batch.items()
    }
    task_ids = _strings(columns["task_id"])
    count = len(task_ids)
    task_types = _strings(columns["task_type"])
    sources = (
        _strings(columns["source"]) if "source" in columns else np.full(count, "", dtype=object)
    )
    inputs, input_lengths = _token_matrix(columns["input"], task_ids, "input")
    targets, target_lengths = _token_matrix(columns["target"], task_ids, "target")
    inputs, targets = _same_width(inputs, targets)
    num_symbols = _integer_column(columns, "num_symbols", count, DEFAULT_NUM_SYMBOLS)
    heights = _integer_column(columns, "height", count, 0)
    widths = _integer_column(columns, "width", count, 0)
    epochs = _epochs(columns, count, default_epoch)
    kinds = np.array(
        [task_kind(t, s, i) for t, s, i in zip(task_types, sources, task_ids, strict=True)],
        dtype=object,
    )
    _check_lengths(task_ids, kinds, input_lengths, target_lengths, heights, widths)
    max_length = int(max(input_lengths.max(initial=0), target_lengths.max(initial=0)))
    members: dict[tuple[str, int, int], list[int]] = {}
    for i, (kind, height, width) in enumerate(zip(kinds, heights, widths, strict=True)):
        key = (kind, int(height), int(width)) if kind in (GRID, SUDOKU) else (kind, 0, 0)
        members.setdefault(key, []).append(i)
    groups = []
    for key in sorted(members):
        positions = np.array(members[key], dtype=np.int64)
        in_len, tgt_len = input_lengths[positions], target_lengths[positions]
        width = int(max(in_len.max(), tgt_len.max()))
        groups.append(
            TaskGroup(
                kind=key[0],
                positions=positions,
                task_ids=task_ids[positions],
                inputs=np.ascontiguousarray(inputs[positions, :width]),
                targets=np.ascontiguousarray(targets[positions, :width]),
                input_lengths=in_len,
                target_lengths=tgt_len,
                num_symbols=num_symbols[positions],
                height=int(key[1]),
                width=int(key[2]),
            )
        )
    return TaskBatch(task_ids, epochs, groups, max_length)


def task_kind(task_type: str, source: str, task_id: str = "?") -> str:
    """How a task is augmented: sudoku/grid/parity/sequence/text (see ``strategies``)."""
    if task_type == "grid":
        return SUDOKU if source == "sudoku" else GRID
    if task_type == "sequence":
        return PARITY if source == "parity" else SEQUENCE
    if task_type == "text":
        return TEXT
    raise ValueError(f"augment: task {task_id!r}: unknown task_type {task_type!r}")


def _strings(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _token_matrix(
    values: np.ndarray, task_ids: np.ndarray, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """int32 ``[T, L]`` padded with PAD, and the lengths."""
    if values.dtype != object and values.ndim == 2:
        matrix = values.astype(np.int32, copy=False)
        lengths = np.full(len(matrix), matrix.shape[1], dtype=np.int64)
    else:
        rows = [np.asarray(v).reshape(-1) for v in values]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.full((len(rows), int(lengths.max(initial=0))), PAD, dtype=np.int32)
        if rows:
            flat = np.concatenate(rows) if len(rows) > 1 else rows[0]
            if flat.size and not np.issubdtype(flat.dtype, np.integer):
                bad = next(
                    i
                    for i, r in enumerate(rows)
                    if r.size and not np.issubdtype(r.dtype, np.integer)
                )
                raise ValueError(
                    f"augment: task {task_ids[bad]!r}: {field} holds non-integer tokens"
                )
            matrix[np.arange(matrix.shape[1])[None, :] < lengths[:, None]] = flat
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(f"augment: task {task_ids[empty[0]]!r}: {field} is empty")
    negative = np.flatnonzero((matrix < 0).any(axis=1))
    if negative.size:
        raise ValueError(
            f"augment: task {task_ids[negative[0]]!r}: {field} has a negative token id"
        )
    return matrix, lengths


def _same_width(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = max(inputs.shape[1], targets.shape[1])
    inputs, targets = (
        np.pad(m, ((0, 0), (0, width - m.shape[1])), constant_values=PAD)
        if m.shape[1] < width
        else m
        for m in (inputs, targets)
    )
    return inputs, targets


def _integer_column(
    columns: dict[str, np.ndarray], name: str, count: int, default: int
) -> np.ndarray:
    """Integers with None/NaN (and a missing column) read as ``default``."""
    if name not in columns:
        return np.full(count, default, dtype=np.int64)
    values = np.asarray(columns[name], dtype=np.float64)  # None -> NaN
    return np.where(np.isnan(values), default, values).astype(np.int64)


def _epochs(columns: dict[str, np.ndarray], count: int, default: int) -> np.ndarray:
    if "epoch" not in columns:
        return np.full(count, default, dtype=np.int64)
    epochs = np.asarray(columns["epoch"])
    if not np.issubdtype(epochs.dtype, np.integer):
        raise ValueError(f"augment: the epoch column must hold integers, got dtype {epochs.dtype}")
    return epochs.astype(np.int64)


def _check_lengths(
    task_ids: np.ndarray,
    kinds: np.ndarray,
    input_lengths: np.ndarray,
    target_lengths: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
) -> None:
    grids = np.isin(kinds, [GRID, SUDOKU])
    i = _first(grids & ((heights < 1) | (widths < 1)))
    if i is not None:
        raise ValueError(f"augment: grid task {task_ids[i]!r}: height/width missing or < 1")
    cells = heights * widths
    for field, lengths in (("input", input_lengths), ("target", target_lengths)):
        i = _first(grids & (lengths != cells))
        if i is not None:
            raise ValueError(
                f"augment: grid task {task_ids[i]!r}: {field} has {lengths[i]} tokens,"
                f" height*width is {heights[i]}*{widths[i]}={cells[i]}"
            )
    i = _first((kinds == PARITY) & (input_lengths != target_lengths))
    if i is not None:
        raise ValueError(
            f"augment: parity task {task_ids[i]!r}: input and target lengths differ"
            f" ({input_lengths[i]} vs {target_lengths[i]})"
        )


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True (the task an error names), or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None
