"""Reading task rows from CSV (spreadsheets, pandas ``to_csv``), for prediction inputs.

A header row names the task format's columns. Token lists are integers separated by commas or
spaces, in brackets or not: ``"[4, 5, 6]"`` (a JSON list), ``[4 5 6]`` (how pandas
writes a numpy array), ``4 5 6``; an empty cell is null. Errors name the file, the row and its line.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError
from refiner.tasks.validation import INT_COLUMNS, TOKEN_COLUMNS, validate

_SEPARATORS = re.compile(r"[,\s]+")


def read_csv_tasks(path: str | os.PathLike, require_target: bool = True) -> pa.Table:
    """A CSV task file as a validated table (TASK_SCHEMA, or UNLABELLED_SCHEMA)."""
    origin = str(path)
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(origin, [Problem("no such file")])
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            records, lines = [], []
            for record in reader:
                if any(cell.strip() for cell in record):
                    records.append(record)
                    lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error, OSError) as err:
        raise TaskFileError(origin, [Problem(f"not a readable CSV file: {err}")]) from None
    if not header or not records:
        raise TaskFileError(origin, [Problem("no rows: a task file needs a header and a task")])
    problems: list[Problem] = []
    columns: dict[str, list] = {name: [] for name in header}
    for row, (record, line) in enumerate(zip(records, lines, strict=True)):
        if len(record) != len(header):
            problems.append(
                Problem(f"{len(record)} cells, the header has {len(header)}", row=row, line=line)
            )
            continue
        for name, cell in zip(header, record, strict=True):
            value, message = _parse_cell(name, cell.strip())
            if message:
                problems.append(Problem(message, field=name, row=row, line=line))
            columns[name].append(value)
    if problems:
        raise TaskFileError(origin, problems[:MAX_REPORTED_PROBLEMS], len(problems))
    table = pa.table({name: _array(name, values) for name, values in columns.items()})
    return validate(table, origin, np.array(lines), require_target=require_target)


def _parse_cell(name: str, cell: str) -> tuple[object, str | None]:
    if cell == "":
        return None, None
    if name in TOKEN_COLUMNS:
        inner = cell[1:-1] if cell.startswith("[") and cell.endswith("]") else cell
        if not inner.strip():
            return [], None  # validate reports the empty list
        try:
            return [int(v) for v in _SEPARATORS.split(inner.strip())], None
        except ValueError:
            return None, f"expected a list of integer token ids, got {cell[:40]!r}"
    if name in INT_COLUMNS:
        try:
            number = float(cell)
        except ValueError:
            return None, f"expected an integer, got {cell[:40]!r}"
        if not number.is_integer():
            return None, f"expected an integer, got {cell[:40]!r}"
        return int(number), None
    return cell, None


def _array(name: str, values: list) -> pa.Array:
    if name in TOKEN_COLUMNS:
        return pa.array(values, pa.list_(pa.int64()))
    if name in INT_COLUMNS:
        return pa.array(values, pa.int64())
    return pa.array(values, pa.string())  # unknown columns are reported by validate
