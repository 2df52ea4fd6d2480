"""``predict(input_ids) -> predicted ids`` functions for ``refiner.evaluate.voting``, and the
field's report for a checkpoint (``jobs/evaluate.py --vote``).

From a live orchestrator (any training loop's) or from a saved checkpoint. Inference
runs with the orchestrator's early stopping and the given step budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from refiner.data.tokenizers import PAD
from refiner.evaluate.voting import (
    ExactReport,
    Predict,
    View,
    VoteReport,
    arc_views,
    copy_views,
    exact_match,
    vote_arc,
)
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def orchestrator_predictor(
    orchestrator: UnifiedRefinerOrchestrator,
    seq_len: int,
    task_type: str = "grid",
    max_steps: int | None = None,
) -> Predict:
    """Pads each batch to the model's ``seq_len`` and returns the final canvases."""

    def predict(
        input_ids: np.ndarray,
        group_ids: Sequence[str] | None = None,
        copies: np.ndarray | None = None,
    ) -> np.ndarray:
        ids = np.asarray(input_ids)
        if ids.shape[1] > seq_len:
            raise ValueError(f"inputs of {ids.shape[1]} tokens exceed the model's {seq_len}")
        padded = np.full((ids.shape[0], seq_len), PAD, dtype=np.int64)
        padded[:, : ids.shape[1]] = ids
        with torch.no_grad():
            puzzles = (
                None if group_ids is None else orchestrator.puzzle_ids_for(list(group_ids), copies)
            )
            result = orchestrator.inference(
                torch.from_numpy(padded),
                max_steps_override=max_steps,
                task_type=task_type,
                puzzle_ids=puzzles,  # None for a model without a puzzle embedding
            )
        return np.asarray(result["final_canvas_ids"])

    return predict


def voting_views(
    orchestrator: UnifiedRefinerOrchestrator, tasks: pa.Table, count: int, seed: int = 0
) -> list[View] | dict[str, list[View]]:
    """The views ARC voting refines each test input in: with one puzzle identity per
    augmented copy, each puzzle's first ``count`` copies as training drew them (at most
    as many as it has); otherwise ``count`` dihedral x colour views under the puzzle's
    one identity (``seed`` draws their colours)."""
    index = orchestrator.puzzle_index
    spec = None if index is None else index.copy_spec()
    if index is None or spec is None or orchestrator.core.puzzle_embed is None:
        return arc_views(count, seed)
    assert index.copy_seed is not None  # copy_spec() is None without it
    groups = tasks.column("group_id").to_pylist()
    return copy_views(groups, spec, index.copy_seed, min(count, index.augmentations))


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
    task_type = Counter(tasks.column("task_type").to_pylist()).most_common(1)[0][0]
    num_symbols = int(pc.max(tasks.column("num_symbols")).as_py())
    orchestrator = UnifiedRefinerOrchestrator.from_checkpoint(
        path, "cpu", task_type=task_type, num_symbols=num_symbols
    )
    seq_len = orchestrator.core.config.seq_len
    predict = orchestrator_predictor(orchestrator, seq_len, task_type, max_steps)
    if field_kind(tasks) == "vote":
        return vote_arc(tasks, predict, voting_views(orchestrator, tasks, views, seed))
    return exact_match(tasks, predict)


def field_kind(tasks: pa.Table) -> str | None:
    """How the field scores these rows: "vote" (ARC, every source "arc..."), "exact"
    (sudoku and maze), None (anything else, e.g. parity or text: no field metric)."""
    if tasks.num_rows == 0 or "source" not in tasks.column_names:
        return None
    sources = set(tasks.column("source").to_pylist())
    if all(str(source).startswith("arc") for source in sources):
        return "vote" if {"group_id", "height", "width"} <= set(tasks.column_names) else None
    if sources <= {"sudoku", "maze"}:
        return "exact"
    return None


def field_report(
    orchestrator: UnifiedRefinerOrchestrator,
    tasks: pa.Table,
    views: int,
    seq_len: int,
    task_type: str = "grid",
    seed: int = 0,
    max_steps: int | None = None,
    batch_size: int = 256,
) -> VoteReport | ExactReport | None:
    """The field's numbers for a live orchestrator (a training loop's checkpoints) on
    held-out ``tasks``; None when the rows are no benchmark (see ``field_kind``).
    Leaves the orchestrator in the mode it found it in."""
    kind = field_kind(tasks)
    if kind is None:
        return None
    was_training = orchestrator.training
    orchestrator.eval()
    try:
        predict = orchestrator_predictor(orchestrator, seq_len, task_type, max_steps)
        if kind == "vote":
            chosen = voting_views(orchestrator, tasks, views, seed)
            return vote_arc(tasks, predict, chosen, batch_size)
        return exact_match(tasks, predict, batch_size)
    finally:
        if was_training:
            orchestrator.train()
