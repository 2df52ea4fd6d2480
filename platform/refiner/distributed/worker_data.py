"""A training worker's data: its shard of the training stream (from where a restored
checkpoint left off) and the held-out rows, as batches on its device."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ray.train
import torch

from refiner.config.experiment import ExperimentConfig
from refiner.distributed.data import StreamPlan
from refiner.model.puzzles import BATCH_KEY


def train_batches(
    plan: StreamPlan, config: ExperimentConfig, device: torch.device, rank: int, step: int
) -> Iterator[dict[str, torch.Tensor]]:
    """This worker's shard of the training stream, from where the restored update left off."""
    training = config.training
    batches = iter(
        ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=training.batch_size,
            dtypes=torch.long,
            device=device,
            drop_last=True,
            local_shuffle_buffer_size=training.shuffle_buffer_rows or None,
            local_shuffle_seed=config.seed * 1009 + rank if training.shuffle_buffer_rows else None,
            **_device_feed(device),
        )
    )
    # The stream starts at the checkpoint's data epoch: skip what was already trained on.
    for _ in range(plan.rows_to_skip(step) // plan.global_batch):
        next(batches)
    keys = ("input", "target", BATCH_KEY)
    return ({key: batch[key] for key in keys if key in batch} for batch in batches)


def _device_feed(device: torch.device) -> dict[str, Any]:
    """iter_torch_batches options: on GPU, pinned host batches (the copy to the device
    can overlap compute) and two batches prefetched; CPU keeps the defaults."""
    if device.type != "cuda":
        return {}
    return {"pin_memory": True, "prefetch_batches": 2}


def held_out_batch(name: str, device: torch.device) -> dict[str, torch.Tensor] | None:
    """All rows of an unsplit dataset ("val", CALIBRATION) as one batch; None if empty."""
    rows = list(
        ray.train.get_dataset_shard(name).iter_torch_batches(
            batch_size=None, dtypes=torch.long, device=device
        )
    )
    if not rows:
        return None
    return {
        key: torch.cat([r[key] for r in rows])
        for key in ("input", "target", BATCH_KEY)
        if key in rows[0]
    }
