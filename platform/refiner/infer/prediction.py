"""Predictions of a trained refiner on new inputs: one output row per input row.

A ``Predictor`` rebuilds the orchestrator from a checkpoint (``torch.load(weights_only=
True)``: no pickled code runs) and runs infer-few on a task table whose targets are
optional (``refiner.tasks.schema.UNLABELLED_SCHEMA``). The MLflow model
(``refiner.tracking.logged_model``) and the Ray Data batch job (``refiner.distributed.predict``)
both wrap it, so the three give the same answers. Pure PyTorch: no Ray, no MLflow.

Output columns (PREDICTION_SCHEMA):
  task_id, prediction (the final canvas, token ids, length seq_len), decoded (the canvas
  decoded by the row's tokenizer: text for text rows, a JSON list of symbols for
  sequences, a JSON list of rows for grids), steps_taken, stopping_reason, score (the
  final canvas score), correct (exact match with the target; null without one).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from refiner.config.sections import ModelConfig, check_step_budget
from refiner.data.batches import batch_from_arrays
from refiner.data.tokenizers import ByteTokenizer, SymbolTokenizer, tokenizer_for
from refiner.infer.halting import describe_stop_counts, describe_stopping, stopping_in_use
from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError
from refiner.tasks.validation import validate
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

DEFAULT_BATCH_SIZE = 256
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("prediction", pa.list_(pa.int32()), nullable=False),
        pa.field("decoded", pa.string(), nullable=False),
        pa.field("steps_taken", pa.int32(), nullable=False),
        pa.field("stopping_reason", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("correct", pa.bool_(), nullable=True),
    ]
)


class Predictor:
    """A checkpoint's orchestrator in eval mode, ready for ``predict``."""

    def __init__(self, orchestrator: UnifiedRefinerOrchestrator) -> None:
        self.orchestrator = orchestrator.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device | str = "cpu") -> Predictor:
        # the one loader: weights_only, upgraded state, shapes checked (refiner.checkpoints.files)
        orchestrator = UnifiedRefinerOrchestrator.from_checkpoint(path, device)
        orchestrator.tokenizer = None  # predict decodes per row; the orchestrator needs none
        return cls(orchestrator)

    @property
    def seq_len(self) -> int:
        return self.orchestrator.core.config.seq_len

    @property
    def default_task_type(self) -> str:
        """The task type the model learned edits for (one type), else ``sequence``."""
        learned = list(self.orchestrator.edit_selector.history)
        return learned[0] if len(learned) == 1 else "sequence"

    def stopping(
        self, max_steps: int | None = None, early_stopping: bool | None = None
    ) -> dict[str, Any]:
        """The stopping settings ``predict`` runs with and their origin: the checkpoint's
        calibration if it has one ("calibrated at update N on M rows"), else its config."""
        config = self.orchestrator.config
        limit = config.max_steps_infer if max_steps is None else max_steps
        early = config.stopping.early_stopping if early_stopping is None else early_stopping
        calibration = self.orchestrator.calibration
        given = max_steps is not None
        return stopping_in_use(calibration, config.stopping, limit, early, limit_given=given)[2]

    def check_max_steps(self, max_steps: int | None) -> None:
        check_step_budget(max_steps)

    def check_fits(self, tasks: pa.Table, origin: str = "<inputs>") -> None:
        """Raise TaskFileError naming the rows this model cannot read (`check_readable`)."""
        check_readable(tasks, self.orchestrator.core.config, origin)

    def predict(
        self,
        tasks: pa.Table,
        max_steps: int | None = None,
        early_stopping: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> pa.Table:
        """Infer-few on every row of a validated task table; rows keep their order.

        Rows are refined in groups of one task type (the edit strategy history is per
        type) and in batches of ``batch_size``; rows never influence each other.
        """
        self.check_max_steps(max_steps)
        self.check_fits(tasks)
        n = tasks.num_rows
        inputs = tasks.column("input").to_pylist()
        targets = tasks.column("target").to_pylist()
        types = tasks.column("task_type").to_pylist()
        ids: list[list[int] | None] = [None] * n
        steps, reasons, scores = np.zeros(n, np.int32), [""] * n, np.zeros(n)
        for task_type in dict.fromkeys(types):
            rows = [i for i in range(n) if types[i] == task_type]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                try:
                    batch = batch_from_arrays(
                        [inputs[i] for i in chunk], [inputs[i] for i in chunk], self.seq_len
                    )
                except ValueError as err:
                    raise ValueError(f"inputs do not fit the model: {err}") from None
                out = self.orchestrator.inference(
                    batch["input"],
                    max_steps_override=max_steps,
                    early_stopping=early_stopping,
                    task_type=task_type,
                )
                for j, row in enumerate(chunk):
                    ids[row] = out["final_canvas_ids"][j]
                    steps[row] = out["steps_taken"][j]
                    reasons[row] = out["stopping_reason"][j]
                    scores[row] = out["final_canvas_scores"][j]
        heights = tasks.column("height").to_pylist()
        widths = tasks.column("width").to_pylist()
        symbols = tasks.column("num_symbols").to_pylist()
        done = [row if row is not None else [] for row in ids]  # every row was predicted
        decoded = [
            decode_canvas(done[i], types[i], symbols[i], heights[i], widths[i]) for i in range(n)
        ]
        correct = [
            None if targets[i] is None else _exact(done[i], targets[i], self.seq_len)
            for i in range(n)
        ]
        return pa.table(
            {
                "task_id": tasks.column("task_id"),
                "prediction": pa.array(ids, pa.list_(pa.int32())),
                "decoded": pa.array(decoded, pa.string()),
                "steps_taken": pa.array(steps, pa.int32()),
                "stopping_reason": pa.array(reasons, pa.string()),
                "score": pa.array(scores, pa.float64()),
                "correct": pa.array(correct, pa.bool_()),
            },
            schema=PREDICTION_SCHEMA,
        )


def check_readable(tasks: pa.Table, model: ModelConfig, origin: str = "<inputs>") -> None:
    """Raise TaskFileError naming the rows a model cannot read: inputs longer than its
    seq_len, and (a grid-layout model) grids of another width than it attends over."""
    lengths = pc.list_value_length(tasks.column("input")).to_numpy(zero_copy_only=False)
    problems = [
        (int(r), "input", f"{lengths[r]} tokens, longer than the model's seq_len {model.seq_len}")
        for r in np.flatnonzero(lengths > model.seq_len)
    ]
    if model.attention_layout == "grid":
        problems += [
            (
                r,
                "width",
                f"{'no grid' if w is None else f'a grid {w} wide'}; the model"
                f" attends over grids {model.grid_width} wide",
            )
            for r, w in enumerate(tasks.column("width").to_pylist())
            if w != model.grid_width
        ]
    if problems:
        ids = tasks.column("task_id")
        problems.sort()
        reported = [
            Problem(message, field=field, row=row, task_id=ids[row].as_py())
            for row, field, message in problems[:MAX_REPORTED_PROBLEMS]
        ]
        raise TaskFileError(origin, reported, len(problems))


def prediction_inputs(
    table: pa.Table, default_task_type: str = "sequence", origin: str = "<inputs>"
) -> pa.Table:
    """Complete and validate an input table (targets optional).

    Beyond the task format's leniency, a table to predict on may leave out ``task_id``
    (rows are then named ``row-0``, ``row-1``, ...) and ``task_type`` (the model's).
    """
    n = table.num_rows
    if "task_id" not in table.column_names:
        table = table.append_column("task_id", pa.array([f"row-{i}" for i in range(n)]))
    if "task_type" not in table.column_names:
        table = table.append_column("task_type", pa.array([default_task_type] * n))
    return validate(table, origin, require_target=False)


def inputs_from_ids(
    sequences: Sequence[Sequence[int]], default_task_type: str = "sequence"
) -> pa.Table:
    """A list of token-id lists as a validated input table (no targets)."""
    return prediction_inputs(
        pa.table({"input": pa.array([list(map(int, s)) for s in sequences], pa.list_(pa.int64()))}),
        default_task_type,
    )


@dataclass
class PredictionSummary:
    rows: int
    mean_steps: float
    sample_steps: int
    stopping_reasons: dict[str, int]
    labelled: int  # rows with a target
    accuracy: float | None  # exact match over the labelled rows
    stopping: dict[str, Any] | None = None  # Predictor.stopping(): settings and origin

    def lines(self) -> list[str]:
        reasons = describe_stop_counts(self.stopping_reasons)
        acc = (
            f"{self.accuracy:.4f} on {self.labelled} rows with a target"
            if self.accuracy is not None
            else "n/a (no targets)"
        )
        return [
            f"rows: {self.rows}",
            f"mean steps: {self.mean_steps:.2f} (sample-steps {self.sample_steps})",
            f"stopping reasons: {reasons}",
            f"accuracy: {acc}",
        ] + ([f"stopping: {describe_stopping(self.stopping)}"] if self.stopping else [])


def summarize(predictions: pa.Table, stopping: dict[str, Any] | None = None) -> PredictionSummary:
    steps = predictions.column("steps_taken").to_numpy()
    correct = pc.drop_null(predictions.column("correct")).to_numpy(zero_copy_only=False)
    return PredictionSummary(
        rows=predictions.num_rows,
        mean_steps=float(steps.mean()) if len(steps) else 0.0,
        sample_steps=int(steps.sum()),
        stopping_reasons=dict(Counter(predictions.column("stopping_reason").to_pylist())),
        labelled=len(correct),
        accuracy=float(correct.mean()) if len(correct) else None,
        stopping=stopping,
    )


def _exact(prediction: list[int], target: list[int], seq_len: int) -> bool:
    """Exact match over the padded canvas, as ``evaluate_refiner`` scores it."""
    padded = np.zeros(seq_len, np.int64)
    padded[: len(target)] = target
    return bool(np.array_equal(np.asarray(prediction), padded))


def decode_canvas(
    ids: list[int], task_type: str, num_symbols: int, height: int | None, width: int | None
) -> str:
    tokenizer = tokenizer_for(task_type, num_symbols)
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.decode(ids)
    assert isinstance(tokenizer, SymbolTokenizer)
    if height and width:  # a grid: the first height*width cells, row by row
        cells = tokenizer.decode(ids[: height * width], strip_special=False)
        return json.dumps(cells.reshape(height, width).tolist())
    return json.dumps(tokenizer.decode(ids).tolist())


def write_predictions(predictions: pa.Table, path: str | Path) -> Path:
    """Write a parquet file atomically: a temporary file renamed into place."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"{path}: predictions are written as parquet (.parquet)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            pq.write_table(predictions, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_output_path(out: str | Path) -> None:
    """``--out`` must name a parquet file (not a folder): refused before any work."""
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"--out {out}: predictions are written as parquet (.parquet)")
    if path.is_dir():
        raise ValueError(f"--out {out}: is a folder")
