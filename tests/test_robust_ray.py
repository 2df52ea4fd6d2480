"""One Ray run over a generated file of every task kind with ragged lengths.

``test_robust_pipeline.py`` checks the Ray-free path with hypothesis; this pushes one
generated file (the issue's 600 ordinary word pairs, plus parity of varied lengths,
generic sequences, sudoku 4/6/9, plain grids and ARC canvases) through
``jobs/train.py``: Ray Data augments it with every strategy, Ray Train trains on it.
"""

from __future__ import annotations

import json
import random

import pytest
from augment_tasks import arc_rows, parity_rows, plain_grid_rows, sequence_rows, sudoku_rows
from mlflow import MlflowClient
from test_robust_text_pairs import WORDS
from train_fixtures import run_train_job, set_args

from refiner.data.tokenizers import ByteTokenizer

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SETTINGS = [
    "model.d_model=16",
    "model.n_heads=2",
    "model.n_layers=1",
    "orchestration.max_steps_train=2",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=2",
    "orchestration.augmentation_count=6",
    "task.val_max_rows=32",
    "training.batch_size=16",
    "training.steps=12",
    "training.report_every=6",
    "training.checkpoint_every=12",
    "training.warmup_steps=0",
    "training.max_failures=0",
]


def generated_rows() -> list[dict]:
    rng = random.Random(0)
    tok = ByteTokenizer()
    rows = [
        {
            "task_id": f"words-{i}",
            "task_type": "text",
            "source": "text",
            "input": tok.encode(rng.choice(WORDS)).tolist(),
            "target": tok.encode(rng.choice(WORDS)).tolist(),
            "split": "val" if i % 10 == 0 else "train",
        }
        for i in range(600)
    ]
    rows += [r for length in (3, 7, 12) for r in parity_rows(length, 8, seed=length)]
    rows += sequence_rows(20, seed=1)
    rows += [r for n in (4, 6, 9) for r in sudoku_rows(n, 6, seed=n)]
    rows += plain_grid_rows(5, 7, 8, seed=2) + plain_grid_rows(3, 3, 8, seed=3)
    rows += arc_rows(size=12, limit=8)
    return rows


def test_a_generated_file_of_every_kind_trains_on_ray(tmp_path):
    path = tmp_path / "generated.jsonl"
    with open(path, "w") as handle:
        for row in generated_rows():
            handle.write(json.dumps(row) + "\n")
    done = run_train_job(
        tmp_path, "--task", str(path), "--num-workers", "0", *set_args(SETTINGS), timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "=== summary ===" in done.stdout and "updates: 12" in done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("refiner").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["orchestration.augmentation_count"] == "6"
