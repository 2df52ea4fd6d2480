"""Puzzle conditioning through a real 2-worker Ray Train DDP run: the stream carries each
augmented row's identity, the table trains outside DDP's buckets and lands in the
checkpoint with its identities, and validation looks up the held-out rows' puzzles."""

from __future__ import annotations

from pathlib import Path

import pytest
from puzzle_fixtures import permutation_tasks, split

from refiner.checkpoints.files import read_checkpoint
from refiner.config.experiment import augmentation_spec, load_experiment_config
from refiner.distributed.trainer import run_training
from refiner.model.puzzles import PuzzleIndex
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

pytestmark = [pytest.mark.slow, pytest.mark.ray(num_cpus=2)]
ROOT = Path(__file__).resolve().parents[1]


def test_two_worker_run_trains_and_checkpoints_the_puzzle_table(local_ray, tmp_path) -> None:
    tasks = permutation_tasks(groups=4, rows_per_group=12, held_out=4)
    config = load_experiment_config(
        overrides=[
            "model.puzzle_embedding=per_augmentation",
            "model.seq_len=6",
            "model.d_model=16",
            "model.n_heads=2",
            "model.n_layers=1",
            "model.memory_capacity=0",
            "orchestration.max_steps_train=2",
            "orchestration.max_steps_infer=2",
            "orchestration.backprop_truncate_steps=2",
            "orchestration.augmentation_count=2",
            "training.steps=12",
            "training.batch_size=8",
            "training.num_workers=2",
            "training.cpus_per_worker=0.5",
            "training.warmup_steps=1",
            "training.report_every=6",
            "training.checkpoint_every=6",
            "training.shuffle_buffer_rows=16",
            "training.puzzle_lr=0.05",
        ]
    )
    outcome = run_training(config, tasks, "puzzles", str(tmp_path / "storage"))

    assert outcome.summary["step"] == 12 and "val_acc_infer" in outcome.metrics
    path = f"{outcome.checkpoint}/checkpoint.pt"
    state = read_checkpoint(path)["orchestrator"]
    # the identities, and the seed and strategies that drew each copy (for voting)
    index = PuzzleIndex.from_tasks(
        split(tasks, "train"), "per_augmentation", 2, augmentation_spec(config), config.seed
    )
    assert state["model_config"]["puzzle_identities"] == index.size == 9
    table = state["model"]["puzzle_embed.weight"]
    assert table.shape == (9, 16)
    # 12 updates x 16 rows of 64 augmented rows (every identity appears 8 times per epoch)
    touched = (table.abs().sum(1) > 0).tolist()
    assert touched[0] is False and all(touched[1:]), touched
    restored = UnifiedRefinerOrchestrator.from_checkpoint(path)
    assert restored.puzzle_index == index
