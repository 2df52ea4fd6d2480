"""The augmentation engine: a numpy batch of tasks in, ``count`` augmented rows per task out.

Per task kind (``task_type`` and ``source``), what each strategy does:

| strategy         | sudoku (grid, source "sudoku")       | grid (ARC and other canvases)            | parity (source "parity")       | sequence (other) | text                              |
|------------------|--------------------------------------|------------------------------------------|--------------------------------|------------------|-----------------------------------|
| token_noise      | random digit/blank at some cells     | random colour at some content cells      | random bit at some positions   | random symbol    | random byte                       |
| masking          | MASK at some cells                   | MASK at some content cells               | MASK at some positions         | MASK             | MASK                              |
| position_shift   | cyclic roll on both axes             | translate the input grid in its canvas   | cyclic roll                    | cyclic roll      | cyclic roll                       |
|                  |                                      | (roll an axis the grid spans)            |                                |                  |                                   |
| paraphrase       | digit relabelling of 1..n            | colour relabelling of 1..S-1 (0 stays)   | flip input bits; target xor    | no-op            | letter substitution, case kept    |
|                  |                                      |                                          | prefix-xor of the flips        |                  |                                   |
| format_variation | band, stack, row-in-band and         | one of 8 rotations/flips (4 if the       | no-op                          | no-op            | swapcase; space <-> newline;      |
|                  | column-in-stack permutations,        | canvas is not square), translation;      |                                |                  | permutation of the separators     |
|                  | transpose (square boxes only)        | EOS border redrawn (valid ARC canvas)    |                                |                  | comma, semicolon, vertical bar    |

The first three touch only the input (targets stay exact); the last two transform input
and target together. A no-op strategy is not listed in a row's ``aug_strategies``.
Order within a row: paraphrase and format_variation, then token_noise, masking and
position_shift on the input (noise/mask positions follow the layout). Details and the
random streams per kind: ``sudoku``, ``grid``, ``sequence``, ``text``, ``input_only``;
intensities: ``spec``.

Output columns: every input column repeated per augmented row (``task_id`` stays the
source task's id; ``(task_id, aug_epoch, aug_index)`` identifies a row), ``input`` and
``target`` as int32 ``[N, pad_to or the batch's longest]`` padded with PAD, and
``aug_index`` (int32), ``aug_seed`` (int64: the row seed's uint64 bits), ``aug_epoch``
(int32), ``aug_strategies`` (comma-joined, "" for the original), ``aug_intensity``
(float32 ``[N, 5]``, columns in ``STRATEGIES`` order, 0 where not applied). Rows come
task by task, index ascending; ``dedup`` removes rows but keeps the others' indices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from refiner.augment.batch import TaskBatch, read_batch
from refiner.augment.counter_rng import group_copy_seeds, row_seeds, task_hashes
from refiner.augment.dedup import first_occurrences
from refiner.augment.grid import augment_grids
from refiner.augment.rows import plan_rows
from refiner.augment.sequence import augment_sequences
from refiner.augment.spec import AugmentationSpec
from refiner.augment.strategies import APPLICABLE, GRID, PARITY, SEQUENCE, STRATEGIES, SUDOKU, TEXT
from refiner.augment.sudoku import augment_sudoku
from refiner.augment.text import augment_text
from refiner.data.tokenizers import PAD

TOKEN_COLUMNS = ("input", "target")
# Rows augmented per kernel call: keeps temporaries small enough for the allocator to
# reuse (large fresh allocations cost page faults) without per-call overhead showing.
CHUNK_ROWS = 4096
METADATA_COLUMNS = ("aug_index", "aug_seed", "aug_epoch", "aug_strategies", "aug_intensity")
_KIND_FUNCTIONS = {
    SUDOKU: augment_sudoku,
    GRID: augment_grids,
    PARITY: augment_sequences,
    SEQUENCE: augment_sequences,
    TEXT: augment_text,
}


@dataclass
class AugmentedRows:
    """The augmented rows before they become columns."""

    task_of_row: np.ndarray  # int64 [N]: the batch row (task) each row comes from
    inputs: np.ndarray  # int32 [N, L]
    targets: np.ndarray  # int32 [N, L]
    metadata: dict[str, np.ndarray]


class Augmenter:
    """Picklable callable for ``ray.data.Dataset.map_batches(fn, batch_format="numpy")``.

    Holds only the spec and numbers, so Ray ships it to workers cheaply; each call is
    a pure function of the batch (the same task gives the same rows on any worker).
    """

    def __init__(
        self, spec: AugmentationSpec, seed: int, epoch: int = 0, pad_to: int | None = None
    ) -> None:
        if not isinstance(spec, AugmentationSpec):
            raise TypeError(f"Augmenter needs an AugmentationSpec, got {type(spec).__name__}")
        _check_int("seed", seed)
        _check_int("epoch", epoch)
        _check_pad_to(pad_to)
        self.spec, self.seed, self.epoch, self.pad_to = spec, seed, epoch, pad_to

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return augment_batch(batch, self.spec, self.seed, self.epoch, self.pad_to)

    def __repr__(self) -> str:
        return f"Augmenter(seed={self.seed}, epoch={self.epoch}, pad_to={self.pad_to}, spec={self.spec})"


def augment_batch(
    batch: Mapping[str, np.ndarray],
    spec: AugmentationSpec,
    seed: int,
    epoch: int = 0,
    pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Augmented rows of a numpy batch of tasks (see the module docstring for the columns).

    An integer ``epoch`` column, when present, sets each task's epoch (overriding ``epoch``).
    """
    rows = augment_rows(batch, spec, seed, epoch, pad_to)
    out = {}
    for name, values in batch.items():
        if name in TOKEN_COLUMNS:
            out[name] = rows.inputs if name == "input" else rows.targets
        else:
            out[name] = np.take(np.asarray(values), rows.task_of_row, axis=0)
    out.update(rows.metadata)
    return out


def augment_table(
    table: pa.Table,
    spec: AugmentationSpec,
    seed: int,
    epoch: int = 0,
    pad_to: int | None = None,
) -> pa.Table:
    """The same rows as ``augment_batch``, from and to Arrow (no Ray needed).

    Task columns keep their Arrow types; ``input``/``target`` become
    ``fixed_size_list<int32>[L]`` and ``aug_intensity`` ``fixed_size_list<float32>[5]``.
    """
    batch = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    rows = augment_rows(batch, spec, seed, epoch, pad_to)
    repeated = table.take(pa.array(rows.task_of_row, type=pa.int64()))
    columns, names = [], []
    for name in table.column_names:
        if name in TOKEN_COLUMNS:
            columns.append(_fixed_size_lists(rows.inputs if name == "input" else rows.targets))
        else:
            columns.append(repeated.column(name))
        names.append(name)
    for name, values in rows.metadata.items():
        columns.append(_fixed_size_lists(values) if values.ndim == 2 else pa.array(values))
        names.append(name)
    return pa.table(columns, names=names)


def augment_rows(
    batch: Mapping[str, np.ndarray],
    spec: AugmentationSpec,
    seed: int,
    epoch: int = 0,
    pad_to: int | None = None,
) -> AugmentedRows:
    """The work behind ``augment_batch``/``augment_table``: groups by kind, vectorised."""
    if not isinstance(spec, AugmentationSpec):
        raise TypeError(f"augment needs an AugmentationSpec, got {type(spec).__name__}")
    _check_int("seed", seed)
    _check_int("epoch", epoch)
    _check_pad_to(pad_to)
    tasks = read_batch(batch, epoch)
    length = _output_length(tasks, pad_to)
    count = spec.count
    total = len(tasks) * count
    inputs = np.empty((total, length), dtype=np.int32)  # every cell is written below
    targets = np.empty((total, length), dtype=np.int32)
    intensity = np.zeros((total, len(STRATEGIES)), dtype=np.float32)
    strategies = np.full(total, "", dtype=object)
    keep = np.ones(total, dtype=bool)
    if spec.seed_by_group and "group_id" in batch:  # copy i: one transform of the puzzle
        seeds = group_copy_seeds(seed, np.asarray(batch["group_id"]).astype(str), count)
    else:
        seeds = row_seeds(seed, task_hashes(tasks.task_ids), tasks.epochs, np.arange(count))
    tasks_per_chunk = max(1, CHUNK_ROWS // count)
    for whole_group in tasks.groups:
        applied = [s for s in STRATEGIES if spec.enabled(s) and s in APPLICABLE[whole_group.kind]]
        label = ",".join(applied)
        for start in range(0, len(whole_group), tasks_per_chunk):
            group = whole_group.subset(slice(start, start + tasks_per_chunk))
            plan = plan_rows(seeds[group.positions], spec)
            out_rows = _output_rows(group.positions, count)
            width = int(max(group.input_lengths.max(), group.target_lengths.max()))
            if isinstance(out_rows, slice):  # kernels write straight into the output
                chunk_inputs, chunk_targets = inputs[out_rows], targets[out_rows]
            else:
                chunk_inputs = np.empty((len(plan), length), dtype=np.int32)
                chunk_targets = np.empty((len(plan), length), dtype=np.int32)
            _KIND_FUNCTIONS[group.kind](
                group, plan, chunk_inputs[:, :width], chunk_targets[:, :width]
            )
            chunk_inputs[:, width:] = PAD
            chunk_targets[:, width:] = PAD
            if not isinstance(out_rows, slice):
                inputs[out_rows], targets[out_rows] = chunk_inputs, chunk_targets
            strategies[out_rows] = np.where(plan.augmented, label, "")
            for name in applied:
                intensity[out_rows, STRATEGIES.index(name)] = plan.intensity[name]
            if spec.dedup and group.kind in (GRID, SUDOKU):
                keep[out_rows] = first_occurrences(plan.task, inputs[out_rows], targets[out_rows])
    index = np.tile(np.arange(count, dtype=np.int32), len(tasks))
    metadata: dict[str, np.ndarray] = {
        "aug_index": index,
        "aug_seed": seeds.reshape(-1).view(np.int64),
        "aug_epoch": np.repeat(tasks.epochs.astype(np.int32), count),
        "aug_strategies": strategies,
        "aug_intensity": intensity,
    }
    task_of_row = np.repeat(np.arange(len(tasks), dtype=np.int64), count)
    if not keep.all():
        inputs, targets, task_of_row = inputs[keep], targets[keep], task_of_row[keep]
        metadata = {name: values[keep] for name, values in metadata.items()}
    return AugmentedRows(task_of_row, inputs, targets, metadata)


def _output_rows(positions: np.ndarray, count: int) -> np.ndarray | slice:
    """Where a chunk's rows go: task-major blocks of ``count`` (a slice when contiguous)."""
    first, last = int(positions[0]), int(positions[-1])
    if last - first + 1 == len(positions):  # consecutive tasks (always, with one kind)
        return slice(first * count, (last + 1) * count)
    return (positions[:, None] * count + np.arange(count)[None, :]).reshape(-1)


def _output_length(tasks: TaskBatch, pad_to: int | None) -> int:
    if pad_to is None:
        return max(tasks.max_length, 1)
    for group in tasks.groups:
        for name, lengths in (("input", group.input_lengths), ("target", group.target_lengths)):
            too_long = np.flatnonzero(lengths > pad_to)
            if too_long.size:
                i = too_long[0]
                raise ValueError(
                    f"augment: task {group.task_ids[i]!r}: {name} has {lengths[i]} tokens,"
                    f" more than pad_to={pad_to}"
                )
    return pad_to


def _fixed_size_lists(values: np.ndarray) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"augment: {name} must be an integer, got {value!r}")


def _check_pad_to(pad_to: object) -> None:
    if pad_to is None:
        return
    if isinstance(pad_to, bool) or not isinstance(pad_to, int | np.integer) or pad_to < 1:
        raise ValueError(f"augment: pad_to must be a positive integer or None, got {pad_to!r}")
