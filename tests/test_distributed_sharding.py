"""Ray Data -> Ray Train: each worker reads its own shard of the augmented stream.

A real 2-worker TorchTrainer whose loop only records the rows it was given: the shards
must be disjoint and together hold every (task, augmentation) row of every epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
import ray
import ray.train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from refiner.augment import AugmentationSpec
from refiner.distributed.data import StreamPlan, TrainDatasetFactory, train_stream
from refiner.tasks.sources import load_tasks

pytestmark = [pytest.mark.slow, pytest.mark.ray(num_cpus=3)]

NUM_TASKS, COUNT, SEQ_LEN = 40, 6, 8


def tasks_and_spec():
    tasks = load_tasks("parity", count=NUM_TASKS, seed=0, size=SEQ_LEN)
    tasks = tasks.filter(np.asarray(tasks.column("split").to_pylist()) == "train")
    return tasks, AugmentationSpec(strategies=("paraphrase",), count=COUNT)


def record_shard(config: dict) -> None:
    rank = ray.train.get_context().get_world_rank()
    rows = {"aug_epoch": [], "task_index": [], "aug_index": [], "input": []}
    for batch in ray.train.get_dataset_shard("train").iter_batches(
        batch_size=32, batch_format="numpy"
    ):
        for key in rows:
            rows[key].append(batch[key])
    np.savez(f"{config['out']}/rank{rank}.npz", **{k: np.concatenate(v) for k, v in rows.items()})


def test_shards_are_disjoint_and_cover_every_augmented_row(local_ray, tmp_path) -> None:
    tasks, spec = tasks_and_spec()
    plan = StreamPlan(tasks.num_rows, COUNT, tasks_per_block=8, global_batch=32)
    # Enough updates for two whole epochs; the stream then reaches into a third.
    steps = 2 * plan.rows_per_epoch // plan.global_batch
    factory = TrainDatasetFactory(tasks, spec, 7, SEQ_LEN, plan, steps, str(tmp_path / "run"))
    TorchTrainer(
        record_shard,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        datasets={"train": factory},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(name="sharding", storage_path=str(tmp_path / "storage")),
    ).fit()

    shards = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    keys = [
        set(
            zip(
                s["aug_epoch"].tolist(),
                s["task_index"].tolist(),
                s["aug_index"].tolist(),
                strict=True,
            )
        )
        for s in shards
    ]
    assert all(len(k) == len(s["aug_index"]) for k, s in zip(keys, shards, strict=True)), (
        "a row repeated"
    )
    assert keys[0] and keys[1], "a worker got nothing"
    assert not keys[0] & keys[1], "shards overlap"
    _, blocks = plan.blocks_for(0, steps)
    seen = keys[0] | keys[1]
    assert len(seen) == sum(plan.rows_in_block(b) for b in range(blocks))
    for epoch in (0, 1):
        whole = {(epoch, t, i) for t in range(tasks.num_rows) for i in range(COUNT)}
        assert whole <= seen, f"epoch {epoch} incomplete"
    assert {e for e, _, _ in seen} == {0, 1, 2}


def test_each_epoch_gets_fresh_deterministic_augmentations(local_ray) -> None:
    tasks, spec = tasks_and_spec()
    plan = StreamPlan(tasks.num_rows, COUNT, tasks_per_block=8, global_batch=32)
    ref = ray.put(tasks)

    def rows(seed: int, epochs: range) -> dict:
        out = {}
        blocks = len(epochs) * plan.blocks_per_epoch
        stream = train_stream(ref, spec, seed, SEQ_LEN, plan, epochs.start, blocks)
        for batch in stream.iter_batches(batch_format="numpy"):
            for e, t, i, x in zip(
                batch["aug_epoch"],
                batch["task_index"],
                batch["aug_index"],
                batch["input"],
                strict=True,
            ):
                out[(int(e), int(t), int(i))] = x.tobytes()
        return out

    first = rows(seed=7, epochs=range(0, 2))
    again = rows(seed=7, epochs=range(1, 2))  # a resumed run streaming epoch 1 only
    assert {k: v for k, v in first.items() if k[0] == 1} == again
    changed = sum(first[(0, t, i)] != first[(1, t, i)] for (_, t, i) in again)
    assert changed > 0.5 * len(again), "epoch 1 repeated epoch 0's augmentations"
