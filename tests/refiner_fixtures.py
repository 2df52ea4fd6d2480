"""Tiny models, configs and parity batches shared by the refiner-core tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.batches import batch_from_table
from refiner.tasks.sources import parity
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

SEQ_LEN = 8


def tiny_model_config(**overrides) -> ModelConfig:
    settings = dict(
        seq_len=SEQ_LEN, d_model=32, n_heads=2, n_layers=1, latent_cycles=1, mlp_ratio=2.0
    )
    settings.update(memory_capacity=16, memory_top_k=2)
    settings.update(overrides)
    return ModelConfig(**settings)


def tiny_config(**overrides) -> OrchestrationConfig:
    settings = dict(max_steps_train=4, max_steps_infer=4, backprop_truncate_steps=2)
    settings.update(overrides)
    return OrchestrationConfig.from_dict(settings)


def tiny_orchestrator(
    config: OrchestrationConfig | None = None, seed: int = 0, **model_overrides
) -> UnifiedRefinerOrchestrator:
    return UnifiedRefinerOrchestrator.from_config(
        tiny_model_config(**model_overrides),
        config or tiny_config(),
        num_symbols=parity.NUM_SYMBOLS,
        seed=seed,
    )


def parity_batch(count: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    return batch_from_table(
        parity.generate(count, size=SEQ_LEN, seed=seed, val_fraction=0.0), SEQ_LEN
    )


def weights(orchestrator: UnifiedRefinerOrchestrator) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in orchestrator.core.state_dict().items()}


@contextmanager
def gloo_group(rank: int, world_size: int, init_file: str) -> Iterator[None]:
    """A CPU process group for one spawned rank. On success the ranks meet at a barrier
    before tearing the group down: a rank that destroys it while its peer still talks to
    it is aborted ("terminate called without an active exception") on a loaded machine."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()
