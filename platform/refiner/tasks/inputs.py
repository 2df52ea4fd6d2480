"""Task files to predict on: parquet, jsonl or csv, in the task format with targets optional."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from refiner.tasks.csv_io import read_csv_tasks
from refiner.tasks.io import FORMATS, read_tasks
from refiner.tasks.problems import Problem, TaskFileError

INPUT_SUFFIXES = (*FORMATS, ".csv")


def read_prediction_inputs(path: str | os.PathLike) -> pa.Table:
    """A validated table in UNLABELLED_SCHEMA (``target`` null where a row has none)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return read_csv_tasks(path, require_target=False)
    if suffix not in FORMATS:
        raise TaskFileError(
            str(path),
            [
                Problem(
                    f"unsupported file suffix {suffix!r}; use one of {', '.join(INPUT_SUFFIXES)}"
                )
            ],
        )
    return read_tasks(path, require_target=False)
