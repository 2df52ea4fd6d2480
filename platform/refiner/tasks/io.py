"""Reading and writing task files (parquet and jsonl), validated, written atomically.

jsonl: one JSON object per line with the schema's columns (token lists as lists of ints);
blank lines are skipped and line numbers in errors are the file's own. A valid jsonl file
is parsed by Arrow's JSON reader (fast); anything it rejects or types loosely is parsed
again line by line, which is what locates each problem by line, row and field.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from refiner.tasks.problems import MAX_REPORTED_PROBLEMS, Problem, TaskFileError
from refiner.tasks.schema import TASK_SCHEMA
from refiner.tasks.validation import (
    INT_COLUMNS,
    STRING_COLUMNS,
    TOKEN_COLUMNS,
    unknown_column_problem,
    validate,
    validate_table,
)

__all__ = ["TaskFileError", "read_tasks", "task_file_format", "validate_table", "write_tasks"]

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def task_file_format(path: str | os.PathLike) -> str:
    """ "parquet" or "jsonl", from the file name's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise TaskFileError(
            str(path),
            [Problem(f"unsupported file suffix {suffix!r}; use one of {', '.join(FORMATS)}")],
        )
    return FORMATS[suffix]


def read_tasks(path: str | os.PathLike, require_target: bool = True) -> pa.Table:
    """Read a task file into a table in exactly TASK_SCHEMA, or raise TaskFileError.

    ``require_target=False``: inputs to predict on (UNLABELLED_SCHEMA, targets optional)."""
    origin = str(path)
    fmt = task_file_format(path)
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(origin, [Problem("no such file")])
    if fmt == "parquet":
        return validate(_read_parquet(path, origin), origin, require_target=require_target)
    table, lines = _read_jsonl(path, origin, require_target)
    return validate(table, origin, lines, require_target=require_target)


def write_tasks(table: pa.Table, path: str | os.PathLike) -> pa.Table:
    """Validate ``table`` and write it to ``path`` atomically; returns the written table.

    The data goes to a temporary file in the target directory which then replaces
    ``path`` in one step, so a crash or an error never leaves a half-written file.
    """
    fmt = task_file_format(path)
    path = Path(path)
    table = validate_table(table, origin=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            if fmt == "parquet":
                pq.write_table(table, out)
            else:
                _write_jsonl(table, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, _file_mode(path))  # mkstemp makes 0600
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return table


def _file_mode(path: Path) -> int:
    """Keep the mode of the file being replaced; 0644 for a new one.

    (Reading the umask would mean setting it, which races with other threads.)
    """
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


# -- parquet -------------------------------------------------------------------------------


def _read_parquet(path: Path, origin: str) -> pa.Table:
    try:
        table = pq.read_table(path)
        table.validate(full=True)  # e.g. strings that are not UTF-8
        return table
    except (pa.ArrowException, OSError) as err:
        raise TaskFileError(origin, [Problem(f"not a readable parquet file: {err}")]) from err


# -- jsonl ---------------------------------------------------------------------------------


def _write_jsonl(table: pa.Table, out: IO[bytes]) -> None:
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for row in range(table.num_rows):
        record = {name: values[row] for name, values in columns.items()}
        out.write(json.dumps(record, separators=(",", ":")).encode("utf-8"))
        out.write(b"\n")


def _read_jsonl(
    path: Path, origin: str, require_target: bool = True
) -> tuple[pa.Table, np.ndarray]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TaskFileError(origin, [Problem(f"cannot read file: {err}")]) from err
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark is harmless
    raw_lines = data.split(b"\n")
    lines = np.array([i + 1 for i, line in enumerate(raw_lines) if line.strip()], dtype=np.int64)
    if len(lines) == 0:
        raise TaskFileError(origin, [Problem("no rows: a task file needs at least one task")])
    table = _read_jsonl_fast(data) if _is_utf8(data) else None  # Arrow lets bad UTF-8 pass
    if table is not None and table.num_rows == len(lines) and _cleanly_typed(table):
        return table, lines
    return _read_jsonl_by_line(raw_lines, origin, require_target), lines


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_jsonl_fast(data: bytes) -> pa.Table | None:
    try:
        return pa_json.read_json(
            pa.py_buffer(data), read_options=pa_json.ReadOptions(block_size=1 << 24)
        )
    except pa.ArrowException:
        return None


def _cleanly_typed(table: pa.Table) -> bool:
    """Whether Arrow's type inference matches what the line parser would accept."""
    for field in table.schema:
        kind = field.type
        if pa.types.is_null(kind) or field.name not in TASK_SCHEMA.names:
            continue
        if field.name in STRING_COLUMNS:
            ok = pa.types.is_string(kind)
        elif field.name in INT_COLUMNS:
            ok = pa.types.is_int64(kind) or pa.types.is_float64(kind)
        else:
            ok = pa.types.is_list(kind) and (
                pa.types.is_int64(kind.value_type) or pa.types.is_null(kind.value_type)
            )
        if not ok:
            return False
    return True


def _read_jsonl_by_line(
    raw_lines: list[bytes], origin: str, require_target: bool = True
) -> pa.Table:
    """The slow, precise reader: checks every line and value, then builds the table.

    Lines that parse are validated even when others do not, so one error message lists
    the problems of the whole file (up to MAX_REPORTED_PROBLEMS).
    """
    problems: list[Problem] = []
    total = 0
    records: list[dict[str, Any]] = []
    record_rows, record_lines = [], []
    unknown_first_line: dict[str, int] = {}
    row = 0
    for index, raw in enumerate(raw_lines):
        if not raw.strip():
            continue
        record, found = _parse_record(raw, unknown_first_line, index + 1)
        if not found:
            records.append(record)
            record_rows.append(row)
            record_lines.append(index + 1)
        else:
            total += len(found)
            task_id = record.get("task_id")
            task_id = task_id if isinstance(task_id, str) else None
            if len(problems) < MAX_REPORTED_PROBLEMS:  # rows come in order: keep the first
                problems += [
                    Problem(m, field=f, row=row, task_id=task_id, line=index + 1) for f, m in found
                ]
        row += 1
    for name, line in unknown_first_line.items():
        total += 1
        problems.append(unknown_column_problem(name, line))
    if not total:
        return _records_to_table(records)
    if records and not unknown_first_line:
        try:
            validate(
                _records_to_table(records),
                origin,
                np.array(record_lines),
                np.array(record_rows),
                require_target,
            )
        except TaskFileError as err:
            total += err.total
            problems += err.problems
    problems.sort(key=lambda p: (p.row is not None, p.row or 0))
    raise TaskFileError(origin, problems[:MAX_REPORTED_PROBLEMS], total)


def _parse_record(
    raw: bytes, unknown_first_line: dict[str, int], line: int
) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    """The record of one line (integral floats made ints) and its (field, message) problems."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        return {}, [(None, f"not valid UTF-8 ({err.reason} at byte {err.start})")]
    except json.JSONDecodeError as err:
        return {}, [(None, f"invalid JSON: {err.msg} (column {err.colno})")]
    if not isinstance(obj, dict):
        return {}, [(None, f"expected a JSON object, got {_json_type(obj)}")]
    found = []
    for name, value in obj.items():
        if name not in TASK_SCHEMA.names:
            unknown_first_line.setdefault(name, line)
            continue
        message = _value_problem(name, value)
        if message:
            found.append((name, message))
        elif name in INT_COLUMNS and isinstance(value, float):
            obj[name] = int(value)
    return obj, found


def _value_problem(name: str, value: Any) -> str | None:
    if value is None:
        return None  # null: a default for optional columns, "missing" for required ones
    if name in STRING_COLUMNS:
        ok, expected = isinstance(value, str), "a string"
    elif name in INT_COLUMNS:
        ok = type(value) is int or (isinstance(value, float) and value.is_integer())
        expected = "an integer"
    else:
        ok = isinstance(value, list) and all(type(v) is int or v is None for v in value)
        expected = "a list of integer token ids"
    if ok:
        return None
    return f"expected {expected}, got {_json_type(value)} {_short(value)}"


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return names.get(type(value), "object")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _records_to_table(records: list[dict[str, Any]]) -> pa.Table:
    present = [n for n in TASK_SCHEMA.names if any(n in r for r in records)]
    types = {
        **{n: pa.string() for n in STRING_COLUMNS},
        **{n: pa.int64() for n in INT_COLUMNS},
        **{n: pa.list_(pa.int64()) for n in TOKEN_COLUMNS},
    }
    return pa.table({n: pa.array([r.get(n) for r in records], type=types[n]) for n in present})
