"""A text file of ordinary word pairs (ragged lengths) goes through prepare -> augment.

Regression: the engine sized each chunk of tasks by the chunk's longest row while the
text and sequence kernels read the whole group's width, so ragged rows crashed with
``could not broadcast input array from shape (N, 10) into shape (N, 9)``.
"""

from __future__ import annotations

import json
import random

import numpy as np
from test_prepare_tasks import run_job

from refiner.augment import AugmentationSpec, augment_table
from refiner.augment.strategies import STRATEGIES
from refiner.data.tokenizers import PAD
from refiner.tasks.io import read_tasks

WORDS = [
    "fox",
    "ink",
    "car",
    "sun",
    "pan",
    "lamp",
    "stone",
    "river",
    "apple",
    "cloud",
    "tiger",
    "ocean",
    "bread",
    "winter",
    "forest",
    "kettle",
    "hammer",
    "moonlight",
    "glassware",
]


def write_word_pairs(path, count: int = 600, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as handle:
        for _ in range(count):
            pair = {"input": rng.choice(WORDS), "target": rng.choice(WORDS)}
            handle.write(json.dumps(pair) + "\n")


def test_600_word_pairs_prepare_and_augment_with_every_strategy(tmp_path):
    write_word_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "text.parquet"
    done = run_job(
        "--source",
        "text",
        "--input",
        str(tmp_path / "pairs.jsonl"),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    tasks = read_tasks(out)
    lengths = {len(x) for x in tasks.column("input").to_pylist()}
    assert len(lengths) > 3  # ragged, as the word pairs are

    spec = AugmentationSpec(strategies=STRATEGIES, count=300)
    rows = augment_table(tasks, spec, seed=0, pad_to=16)
    assert rows.num_rows == tasks.num_rows * 300
    inputs = np.asarray(rows.column("input").to_pylist())
    targets = np.asarray(rows.column("target").to_pylist())
    # Text relabellings are bijections on bytes: a target keeps its length.
    source_lengths = np.repeat([len(t) for t in tasks.column("target").to_pylist()], 300)
    assert ((targets != PAD).sum(axis=1) == source_lengths).all()
    assert inputs.shape == targets.shape == (tasks.num_rows * 300, 16)
