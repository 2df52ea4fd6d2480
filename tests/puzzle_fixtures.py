"""Synthetic "puzzles" whose rule differs per group, and tiny puzzle-conditioned refiners.

Group g maps every input symbol s to perms[g][s] (a fixed permutation of the alphabet per
group): an input alone does not say which permutation to apply, its group does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL
from refiner.model.puzzles import PuzzleIndex
from refiner.tasks.schema import TASK_SCHEMA
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

SYMBOLS = 6
LENGTH = 6


def permutation_tasks(
    groups: int = 4, rows_per_group: int = 64, held_out: int = 16, seed: int = 0
) -> pa.Table:
    """``rows_per_group`` rows per group, the last ``held_out`` of each with split "test"."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(SYMBOLS) for _ in range(groups)]
    rows = []
    for g in range(groups):
        for i in range(rows_per_group):
            x = rng.integers(0, SYMBOLS, LENGTH)
            rows.append(
                {
                    "task_id": f"perm/g{g}/{i}",
                    "task_type": "sequence",
                    "source": "permutation",
                    "group_id": f"g{g}",
                    "split": "train" if i < rows_per_group - held_out else "test",
                    "input": (x + NUM_SPECIAL).tolist(),
                    "target": (perms[g][x] + NUM_SPECIAL).tolist(),
                    "height": None,
                    "width": None,
                    "num_symbols": SYMBOLS,
                }
            )
    return pa.Table.from_pylist(rows, schema=TASK_SCHEMA)


def split(tasks: pa.Table, name: str) -> pa.Table:
    return tasks.filter(pa.compute.equal(tasks.column("split"), name))


def puzzle_model_config(mode: str = "per_puzzle", identities: int = 0, **overrides) -> ModelConfig:
    settings = dict(
        seq_len=LENGTH,
        d_model=32,
        n_heads=2,
        n_layers=1,
        latent_cycles=1,
        mlp_ratio=2.0,
        memory_capacity=0,
        puzzle_embedding=mode,
        puzzle_identities=identities,
    )
    settings.update(overrides)
    return ModelConfig(**settings)


def puzzle_orchestrator(
    index: PuzzleIndex | None, seed: int = 0, **model_overrides
) -> UnifiedRefinerOrchestrator:
    """A tiny refiner, conditioned on ``index``'s identities (unconditioned when None)."""
    mode = index.mode if index is not None else "off"
    size = index.size if index is not None else 0
    orchestrator = UnifiedRefinerOrchestrator.from_config(
        puzzle_model_config(mode, size, **model_overrides),
        OrchestrationConfig(
            max_steps_train=2,
            max_steps_infer=2,
            backprop_truncate_steps=2,
            canvas_edit_strategies=["replace"],
        ),
        seed=seed,
    )
    orchestrator.puzzle_index = index
    return orchestrator
