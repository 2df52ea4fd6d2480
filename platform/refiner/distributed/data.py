"""Ray Data: task tables -> streams of augmented, padded training rows.

The training stream covers every data epoch of the run in one pass: block ``i`` of
``ray.data.range`` stands for (epoch, chunk of tasks), so nothing is materialised up
front and each epoch gets fresh augmentations (the engine seeds rows from
(seed, task_id, epoch, index)). Ray Train calls ``TrainDatasetFactory`` whenever it
(re)starts the worker group, so a restarted or resumed run streams from the epoch of
its latest checkpoint instead of from epoch 0.

The validation split is not augmented: padded rows, evaluated by rank 0.

Every row carries ``puzzle_ids``, its puzzle identity (``refiner.model.puzzles``; 0 when the
run has no puzzle embedding): augmented rows from (group_id, aug_index), held-out rows
from group_id (their unaugmented identity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray
import ray.data

from refiner.augment import AugmentationSpec, augment_batch
from refiner.augment.diagnose import explain_augmentation_failure
from refiner.checkpoints.storage import latest_checkpoint_step
from refiner.data.tokenizers import pad_to_length
from refiner.model.puzzles import BATCH_KEY, PuzzleIndex

TRAIN_COLUMNS = ("input", "target", "aug_epoch", "aug_index", "task_index", BATCH_KEY)


@dataclass(frozen=True)
class TaskOrigin:
    """Where the training tasks come from, for error messages: the source (a file or a
    built-in source) and each training task's row in it (the split drops rows)."""

    source: str = "tasks"
    rows: np.ndarray | None = None  # int64 [num train tasks]


@dataclass(frozen=True)
class StreamPlan:
    """How the run's rows are laid out: rows per epoch and tasks per augmentation call."""

    num_tasks: int
    rows_per_task: int
    tasks_per_block: int
    global_batch: int  # rows consumed per optimizer update, all workers together

    @property
    def rows_per_epoch(self) -> int:
        return self.num_tasks * self.rows_per_task

    @property
    def blocks_per_epoch(self) -> int:
        return math.ceil(self.num_tasks / self.tasks_per_block)

    def epoch_of_step(self, step: int) -> int:
        """The data epoch that update ``step`` (0-based) draws from."""
        return step * self.global_batch // self.rows_per_epoch

    def epochs_for(self, first_step: int, last_step: int) -> range:
        """Data epochs that updates [first_step, last_step) need, plus one spare epoch.

        The spare covers rows lost to equal splitting and dropped partial batches.
        """
        first = self.epoch_of_step(first_step)
        last_row = max(first_step + 1, last_step) * self.global_batch - 1
        return range(first, last_row // self.rows_per_epoch + 2)

    def rows_in_block(self, block: int) -> int:
        """Rows of block ``block`` of an epoch (the last chunk of tasks may be short)."""
        chunk = block % self.blocks_per_epoch
        return min(self.tasks_per_block, self.num_tasks - chunk * self.tasks_per_block) * (
            self.rows_per_task
        )

    def blocks_for(self, first_step: int, last_step: int) -> tuple[int, int]:
        """(first epoch, number of blocks) that updates [first_step, last_step) consume.

        Streaming only these blocks, not whole epochs, keeps Ray Data from augmenting
        rows nobody trains on: a short run of a large task set would otherwise spend
        CPU on a whole epoch that the trainers compete with. Two global batches and
        one block spare cover rows lost to equal splitting and dropped partial batches.
        """
        first = self.epoch_of_step(first_step)
        needed = self.rows_to_skip(first_step)
        needed += (max(first_step + 1, last_step) - first_step + 2) * self.global_batch
        blocks, rows = 0, 0
        while rows < needed:
            rows += self.rows_in_block(blocks)
            blocks += 1
        return first, blocks + 1

    def rows_to_skip(self, step: int) -> int:
        """Rows of the first streamed epoch already trained on before ``step``."""
        return step * self.global_batch - self.epoch_of_step(step) * self.rows_per_epoch


class ChunkAugmenter:
    """Maps block ids (from ``ray.data.range``) to augmented rows of (epoch, task chunk)."""

    def __init__(
        self,
        tasks_ref: ray.ObjectRef,
        spec: AugmentationSpec,
        seed: int,
        seq_len: int,
        plan: StreamPlan,
        first_epoch: int,
        origin: TaskOrigin | None = None,
        puzzles: PuzzleIndex | None = None,
    ) -> None:
        self.tasks_ref = tasks_ref
        self.origin = origin or TaskOrigin()
        self.spec = spec
        self.seed = seed
        self.seq_len = seq_len
        self.plan = plan
        self.first_epoch = first_epoch
        self.puzzles = puzzles

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks: pa.Table = ray.get(self.tasks_ref)
        outputs = [self._block(int(i), tasks) for i in batch["id"]]
        return {k: np.concatenate([o[k] for o in outputs]) for k in TRAIN_COLUMNS}

    def _block(self, block_id: int, tasks: pa.Table) -> dict[str, np.ndarray]:
        epoch = self.first_epoch + block_id // self.plan.blocks_per_epoch
        chunk = block_id % self.plan.blocks_per_epoch
        # A fresh, seeded task order per epoch: which tasks share a block changes too.
        order = np.random.default_rng([self.seed, epoch]).permutation(tasks.num_rows)
        rows = order[chunk * self.plan.tasks_per_block : (chunk + 1) * self.plan.tasks_per_block]
        picked = tasks.take(pa.array(rows))
        columns = {n: picked.column(n).to_numpy(zero_copy_only=False) for n in picked.column_names}
        columns["task_index"] = rows
        try:
            out = augment_batch(columns, self.spec, self.seed, epoch=epoch, pad_to=self.seq_len)
        except MemoryError:
            raise  # may pass on a less loaded node: left to training.max_failures
        except Exception as err:  # the same rows fail on every try: never retried
            file_rows = self.origin.rows[rows] if self.origin.rows is not None else rows
            raise explain_augmentation_failure(
                err,
                columns,
                self.spec,
                self.seed,
                epoch,
                self.seq_len,
                self.origin.source,
                [int(r) for r in file_rows],
            ) from err
        # The engine emits a task's rows together; interleave tasks so that every
        # training batch mixes many tasks even before the local shuffle.
        n = len(out["aug_index"])
        mix = np.random.default_rng([self.seed, epoch, chunk]).permutation(n)
        puzzle_ids = (
            self.puzzles.ids(out["group_id"], out["aug_index"])
            if self.puzzles is not None
            else np.zeros(n, np.int64)
        )
        return {
            "input": out["input"][mix],
            "target": out["target"][mix],
            "aug_epoch": out["aug_epoch"][mix].astype(np.int32),
            "aug_index": out["aug_index"][mix],
            "task_index": out["task_index"][mix].astype(np.int32),
            BATCH_KEY: puzzle_ids[mix],
        }


class TrainDatasetFactory:
    """Called by Ray Train at each worker-group start: the stream from the resume point."""

    def __init__(
        self,
        tasks: pa.Table,
        spec: AugmentationSpec,
        seed: int,
        seq_len: int,
        plan: StreamPlan,
        total_steps: int,
        run_dir: str,
        progress_bars: bool = True,
        origin: TaskOrigin | None = None,
        puzzles: PuzzleIndex | None = None,
    ) -> None:
        self.tasks_ref = ray.put(tasks)
        self.origin = origin
        self.puzzles = puzzles
        self.progress_bars = progress_bars
        self.spec = spec
        self.seed = seed
        self.seq_len = seq_len
        self.plan = plan
        self.total_steps = total_steps
        self.run_dir = run_dir

    def __call__(self) -> ray.data.Dataset:
        # Runs in Ray Train's controller, whose DataContext is not the driver's: the
        # dataset (and the split coordinator drawing its bars) takes the setting from here.
        ray.data.DataContext.get_current().enable_progress_bars = self.progress_bars
        start_step = latest_checkpoint_step(self.run_dir)
        if self.spec.dedup:  # de-duplication makes block sizes unknown: whole epochs
            epochs = self.plan.epochs_for(start_step, self.total_steps)
            first_epoch, num_blocks = epochs.start, len(epochs) * self.plan.blocks_per_epoch
        else:
            first_epoch, num_blocks = self.plan.blocks_for(start_step, self.total_steps)
        return train_stream(
            self.tasks_ref,
            self.spec,
            self.seed,
            self.seq_len,
            self.plan,
            first_epoch,
            num_blocks,
            self.origin,
            puzzles=self.puzzles,
        )


def train_stream(
    tasks_ref: ray.ObjectRef,
    spec: AugmentationSpec,
    seed: int,
    seq_len: int,
    plan: StreamPlan,
    first_epoch: int,
    num_blocks: int,
    origin: TaskOrigin | None = None,
    puzzles: PuzzleIndex | None = None,
) -> ray.data.Dataset:
    """Blocks ``0 .. num_blocks-1`` from the start of ``first_epoch``, augmented lazily."""
    augmenter = ChunkAugmenter(
        tasks_ref, spec, seed, seq_len, plan, first_epoch, origin, puzzles=puzzles
    )
    return ray.data.range(num_blocks, override_num_blocks=num_blocks).map_batches(
        augmenter, batch_size=1, batch_format="numpy"
    )


CALIBRATION = "calibration"  # the dataset of calibration views (stopping.calibration_views)


def validation_dataset(
    tasks: pa.Table, seq_len: int, puzzles: PuzzleIndex | None = None
) -> ray.data.Dataset:
    """Held-out rows, padded, unaugmented (every rank may read all of it; rank 0 does)."""
    inputs = pad_to_length(tasks.column("input").to_pylist(), seq_len)
    targets = pad_to_length(tasks.column("target").to_pylist(), seq_len)
    puzzle_ids = (
        puzzles.ids_of_table(tasks) if puzzles is not None else np.zeros(len(inputs), np.int64)
    )
    return ray.data.from_items(
        [
            {"input": x, "target": y, BATCH_KEY: int(p)}
            for x, y, p in zip(inputs, targets, puzzle_ids, strict=True)
        ]
    )
