"""``predict(input_ids) -> predicted ids`` functions for ``refiner.voting``, and the
field's report for a checkpoint (``jobs/evaluate.py --vote``).

From a live orchestrator (any training loop's) or from a saved checkpoint. Inference
runs with the orchestrator's early stopping and the given step budget.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from refiner.checkpoint import checkpoint_configs, load_checkpoint
from refiner.memory import MemoryBank
from refiner.model import RefinerModel
from refiner.orchestrator import UnifiedRefinerOrchestrator
from refiner.tokenizers import PAD, tokenizer_for
from refiner.voting import ExactReport, Predict, VoteReport, arc_views, exact_match, vote_arc


def orchestrator_predictor(
    orchestrator: UnifiedRefinerOrchestrator,
    seq_len: int,
    task_type: str = "grid",
    max_steps: int | None = None,
) -> Predict:
    """Pads each batch to the model's ``seq_len`` and returns the final canvases."""

    def predict(input_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(input_ids)
        if ids.shape[1] > seq_len:
            raise ValueError(f"inputs of {ids.shape[1]} tokens exceed the model's {seq_len}")
        padded = np.full((ids.shape[0], seq_len), PAD, dtype=np.int64)
        padded[:, : ids.shape[1]] = ids
        with torch.no_grad():
            result = orchestrator.inference(
                torch.from_numpy(padded), max_steps_override=max_steps, task_type=task_type
            )
        return np.asarray(result["final_canvas_ids"])

    return predict


def checkpoint_predictor(
    path: str | Path, tasks: pa.Table, max_steps: int | None = None
) -> Predict:
    """A predictor from a checkpoint.pt file, its model sized as saved; ``tasks`` give the
    task type (the most common) and alphabet."""
    model_config, orchestration = checkpoint_configs(path)
    task_type = Counter(tasks.column("task_type").to_pylist()).most_common(1)[0][0]
    num_symbols = int(pc.max(tasks.column("num_symbols")).as_py())
    orchestrator = UnifiedRefinerOrchestrator(
        RefinerModel(model_config),
        tokenizer_for(task_type, num_symbols),
        MemoryBank.from_config(model_config, "cpu"),
        orchestration,
    )
    load_checkpoint(path, orchestrator)
    orchestrator.eval()
    return orchestrator_predictor(orchestrator, model_config.seq_len, task_type, max_steps)


def benchmark_report(
    path: str | Path,
    tasks: pa.Table,
    views: int,
    split: str = "test",
    max_steps: int | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> VoteReport | ExactReport:
    """The field's numbers for a checkpoint: ARC (source "arc...") pass@1/pass@2 voting over
    ``views`` views; other grids exact per puzzle and per cell.

    Rows: the ``split`` ones, else the "test" ones, else all; at most ``max_rows``.
    """
    for wanted in (split, "test"):
        chosen = tasks.filter(pc.equal(tasks.column("split"), wanted))
        if chosen.num_rows:
            tasks = chosen
            break
    if max_rows is not None:
        tasks = tasks.slice(0, max_rows)
    predict = checkpoint_predictor(path, tasks, max_steps)
    sources = set(tasks.column("source").to_pylist())
    if all(source.startswith("arc") for source in sources):
        return vote_arc(tasks, predict, arc_views(views, seed))
    return exact_match(tasks, predict)
