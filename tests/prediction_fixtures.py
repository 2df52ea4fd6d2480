"""A tiny parity refiner trained in-process for a few updates, saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch
from refiner_fixtures import SEQ_LEN, tiny_config, tiny_orchestrator

from refiner.checkpoints.files import save_checkpoint
from refiner.data.batches import batch_from_table, iterate_batches
from refiner.tasks.sources import parity

TRAIN_STEPS = 12


def parity_tasks(count: int = 48, seed: int = 1) -> pa.Table:
    return parity.generate(count, size=SEQ_LEN, seed=seed, val_fraction=0.0)


def trained_checkpoint(folder: Path, steps: int = TRAIN_STEPS) -> Path:
    """Train a few updates (real gradients, real edit history) and save checkpoint.pt."""
    orchestrator = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6))
    optimizer = torch.optim.AdamW(orchestrator.model.parameters(), lr=3e-3)
    batch = batch_from_table(parity_tasks(256, seed=0), SEQ_LEN)
    done = 0
    while done < steps:
        for minibatch in iterate_batches(batch, 32, seed=done):
            orchestrator.train_step(minibatch, optimizer)
            done += 1
            if done == steps:
                break
    return save_checkpoint(folder / "checkpoint.pt", orchestrator, extra={"step": steps})
