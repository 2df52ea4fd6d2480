"""Validation of task tables: every rule of the task format (see ``refiner.tasks.schema``).

``validate_table`` turns any Arrow table that follows the format into a table in exactly
``TASK_SCHEMA`` (optional columns filled with their defaults) or raises ``TaskFileError``
listing the first problems, each naming the origin (file), the row and the field, so a
user can fix a file in one go. Checks are vectorised with pyarrow/numpy: a Python object
is created only for the rows that are reported.

Leniency, decided once for every reader:
- Optional columns may be absent or null per row; nulls take the column default
  (source "", group_id = task_id (also for ""), split "train", num_symbols 256).
- Integer scalars (height, width, num_symbols) may be stored as floats when integral
  (pandas stores nullable ints as float64); token lists must hold integers.
- Non-grid rows must leave height/width null: a shape on a sequence or text row almost
  always means a mislabelled grid, which would then miss the grid augmentations.
- pandas index columns (``__index_level_0__``) are ignored; any other unknown column is
  an error (a typo such as ``targets`` must not pass silently).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refiner.data.tokenizers import MAX_SYMBOLS, NUM_SPECIAL
from refiner.tasks.problems import Problem, ProblemCollector, TaskFileError
from refiner.tasks.schema import (
    DEFAULT_NUM_SYMBOLS,
    GRID_TASK_TYPES,
    REQUIRED_COLUMNS,
    SPLITS,
    TASK_SCHEMA,
    TASK_TYPES,
    UNLABELLED_SCHEMA,
)

MAX_SEQUENCE_LENGTH = 65536  # tokens per input/target; longer is a broken file, not a task
TEXT_NUM_SYMBOLS = 256  # bytes

STRING_COLUMNS = ("task_id", "task_type", "source", "group_id", "split")
TOKEN_COLUMNS = ("input", "target")
INT_COLUMNS = ("height", "width", "num_symbols")
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")


def validate_table(table: pa.Table, origin: str = "<table>") -> pa.Table:
    """Check ``table`` against the task format; return it in exactly TASK_SCHEMA."""
    return validate(table, origin)


def validate(
    table: pa.Table,
    origin: str,
    lines: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    require_target: bool = True,
) -> pa.Table:
    """``validate_table`` for readers: ``lines[i]`` is the file line of table row ``i`` and
    ``rows[i]`` its row in the file (when the reader left out rows it could not parse).

    ``require_target=False`` (inputs to predict on): the target column may be absent or
    null per row; the result is then in UNLABELLED_SCHEMA (nullable target)."""
    if table.num_rows == 0:
        raise TaskFileError(origin, [Problem("no rows: a task file needs at least one task")])
    table = _check_columns(table, origin, require_target)
    if "target" not in table.column_names:
        table = table.append_column("target", pa.nulls(table.num_rows, pa.list_(pa.int32())))
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    task_ids = columns["task_id"] if pa.types.is_string(columns["task_id"].type) else None
    collector = ProblemCollector(task_ids, lines, rows)
    _check_types(columns, collector)
    collector.raise_if_any(origin)
    columns = {name: _decode_dictionary(array) for name, array in columns.items()}
    for name in TOKEN_COLUMNS:  # all null (jsonl "target": null on every line): type null
        if pa.types.is_null(columns[name].type):
            columns[name] = columns[name].cast(pa.list_(pa.int32()))

    n = table.num_rows
    task_id = _strings(columns, "task_id", n)
    collector.task_ids = task_id
    task_type = _strings(columns, "task_type", n)
    _check_present(task_id, "task_id", collector)
    _report(collector, pc.equal(task_id, ""), "task_id", lambda r: "empty task_id")
    _check_duplicates(task_id, collector)
    _check_present(task_type, "task_type", collector)
    _check_choice(task_type, "task_type", TASK_TYPES, collector)

    source = pc.fill_null(_strings(columns, "source", n), "")
    group_id = _strings(columns, "group_id", n)
    group_id = pc.if_else(pc.fill_null(pc.not_equal(group_id, ""), False), group_id, task_id)
    split = pc.fill_null(_strings(columns, "split", n), "train")
    _check_choice(split, "split", SPLITS, collector)

    num_symbols = _integers(columns, "num_symbols", n, collector)
    num_symbols = np.where(np.isnan(num_symbols), DEFAULT_NUM_SYMBOLS, num_symbols)
    is_text = _is_value(task_type, "text")
    num_symbols = np.where(
        is_text & ~_present(columns, "num_symbols", n), TEXT_NUM_SYMBOLS, num_symbols
    ).astype(np.int64)
    bad = np.flatnonzero((num_symbols < 1) | (num_symbols > MAX_SYMBOLS))
    collector.add_rows(
        bad, "num_symbols", lambda r: f"{num_symbols[r]} is outside [1, {MAX_SYMBOLS}]"
    )

    lengths = {}
    for name in TOKEN_COLUMNS:
        required = name != "target" or require_target
        lengths[name] = _check_tokens(columns[name], name, num_symbols, collector, required)
    height = _integers(columns, "height", n, collector)
    width = _integers(columns, "width", n, collector)
    _check_shapes(task_type, height, width, lengths, collector)
    collector.raise_if_any(origin)

    return pa.table(
        {
            "task_id": task_id,
            "task_type": task_type,
            "source": source,
            "group_id": group_id,
            "split": split,
            "input": columns["input"].cast(pa.list_(pa.int32())),
            "target": columns["target"].cast(pa.list_(pa.int32())),
            "height": pa.array(height, pa.int32(), from_pandas=True),
            "width": pa.array(width, pa.int32(), from_pandas=True),
            "num_symbols": pa.array(num_symbols, pa.int32()),
        },
        schema=TASK_SCHEMA if require_target else UNLABELLED_SCHEMA,
    )


# -- columns and types ---------------------------------------------------------------------


def _check_columns(table: pa.Table, origin: str, require_target: bool = True) -> pa.Table:
    keep = [i for i, name in enumerate(table.column_names) if not _PANDAS_INDEX.match(name)]
    table = table.select(keep)  # by index: selecting a duplicated name would be ambiguous
    names = table.column_names
    problems = []
    required = [c for c in REQUIRED_COLUMNS if require_target or c != "target"]
    missing = [c for c in required if c not in names]
    if missing:
        problems.append(Problem(f"missing required column(s): {', '.join(missing)}"))
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("column appears more than once", field=name))
    problems += [unknown_column_problem(n) for n in names if n not in TASK_SCHEMA.names]
    if problems:
        raise TaskFileError(origin, problems)
    return table


def unknown_column_problem(name: str, line: int | None = None) -> Problem:
    """An unknown column, with a guess at the intended name (``targets`` -> ``target``)."""
    known = TASK_SCHEMA.names
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    seen = f", first seen on line {line}" if line is not None else ""
    return Problem(f"unknown column{hint}{seen}; known columns: {', '.join(known)}", field=name)


def _check_types(columns: dict[str, pa.Array], collector: ProblemCollector) -> None:
    """Column-level type errors, reported at the first row that holds a value."""
    for name, array in columns.items():
        kind = array.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if name in STRING_COLUMNS:
            ok = pa.types.is_string(kind) or pa.types.is_large_string(kind)
            expected = "a string"
        elif name in INT_COLUMNS:
            ok = pa.types.is_integer(kind) or pa.types.is_floating(kind)
            expected = "an integer"
        else:
            ok = _is_list(kind) and (
                pa.types.is_integer(kind.value_type) or pa.types.is_null(kind.value_type)
            )
            expected = "a list of integer token ids"
        if ok or pa.types.is_null(kind):
            continue
        valid = np.flatnonzero(array.is_valid().to_numpy(zero_copy_only=False))
        row = int(valid[0]) if len(valid) else 0
        collector.total += 1
        collector.problems.append(
            collector.problem(row, name, f"expected {expected}, the column holds {kind}")
        )


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _decode_dictionary(array: pa.Array) -> pa.Array:
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _strings(columns: dict[str, pa.Array], name: str, n: int) -> pa.Array:
    if name not in columns:
        return pa.nulls(n, pa.string())
    return columns[name].cast(pa.string())


def _present(columns: dict[str, pa.Array], name: str, n: int) -> np.ndarray:
    if name not in columns:
        return np.zeros(n, dtype=bool)
    return columns[name].is_valid().to_numpy(zero_copy_only=False)


def _integers(
    columns: dict[str, pa.Array], name: str, n: int, collector: ProblemCollector
) -> np.ndarray:
    """An integer column as float64 with NaN for null (so one array carries both)."""
    if name not in columns:
        return np.full(n, np.nan)
    values = columns[name].cast(pa.float64()).to_numpy(zero_copy_only=False)
    values = np.array(values, dtype=np.float64)  # a writable copy
    finite = np.isfinite(values)
    nonintegral = ~np.isnan(values) & (~finite | (np.floor(np.where(finite, values, 0)) != values))
    bad = np.flatnonzero(nonintegral)
    collector.add_rows(bad, name, lambda r: f"expected an integer, got {values[r]:g}")
    values[bad] = np.nan
    return values


# -- row checks ----------------------------------------------------------------------------


def _report(
    collector: ProblemCollector, mask: pa.Array, field: str, message: Callable[[int], str]
) -> None:
    rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    collector.add_rows(rows, field, message)


def _is_value(array: pa.Array, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(array, value), False).to_numpy(zero_copy_only=False)


def _check_present(array: pa.Array, field: str, collector: ProblemCollector) -> None:
    _report(collector, array.is_null(), field, lambda r: "missing value")


def _check_choice(
    array: pa.Array, field: str, choices: Sequence[str], collector: ProblemCollector
) -> None:
    allowed = pa.array(list(choices))
    unknown = pc.and_(array.is_valid(), pc.invert(pc.is_in(array, value_set=allowed)))
    _report(
        collector,
        unknown,
        field,
        lambda r: f"unknown {field} {array[r].as_py()!r}; expected one of {', '.join(choices)}",
    )


def _check_duplicates(task_id: pa.Array, collector: ProblemCollector) -> None:
    valid = pc.drop_null(task_id)
    if len(pc.unique(valid)) == len(valid):
        return  # the common case stays vectorised
    first_row: dict[str, int] = {}
    dup_rows, dup_of = [], {}
    for row, value in enumerate(task_id.to_pylist()):
        if value is None:
            continue
        if value in first_row:
            dup_rows.append(row)
            dup_of[row] = first_row[value]
        else:
            first_row[value] = row
    collector.add_rows(
        np.array(dup_rows, dtype=np.int64),
        "task_id",
        lambda r: f"duplicate task_id {task_id[r].as_py()!r}, first used in row {dup_of[r]}",
    )


def _check_tokens(
    array: pa.Array,
    field: str,
    num_symbols: np.ndarray,
    collector: ProblemCollector,
    required: bool = True,
) -> np.ndarray:
    """Presence, length and vocabulary of one token column; returns lengths (0 if null)."""
    n = len(array)
    if pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    present = array.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    if required:
        collector.add_rows(np.flatnonzero(~present), field, lambda r: "missing value")
    collector.add_rows(
        np.flatnonzero(present & (lengths == 0)), field, lambda r: "empty token list"
    )
    collector.add_rows(
        np.flatnonzero(lengths > MAX_SEQUENCE_LENGTH),
        field,
        lambda r: f"{lengths[r]} tokens, more than the limit of {MAX_SEQUENCE_LENGTH}",
    )
    flat = pc.list_flatten(array)
    if flat.null_count:
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        null_rows = np.unique(parents[flat.is_null().to_numpy(zero_copy_only=False)])
        collector.add_rows(null_rows, field, lambda r: "null token id inside the list")
        flat = pc.fill_null(flat, 0)
    if n == 0 or pa.types.is_null(flat.type):
        return lengths
    values = flat.to_numpy(zero_copy_only=False)
    # Null lists have length 0, so repeating per-row limits lines up with the flat values.
    limit = np.repeat(NUM_SPECIAL + num_symbols, lengths)
    if np.issubdtype(values.dtype, np.unsignedinteger):
        bad = values >= limit.astype(np.uint64)
    else:
        bad = (values < 0) | (values >= limit)
    if bad.any():
        parents = np.repeat(np.arange(n), lengths)
        bad_rows, first = np.unique(parents[bad], return_index=True)
        offending = values[bad][first]
        by_row = dict(zip(bad_rows.tolist(), offending.tolist(), strict=True))
        collector.add_rows(
            bad_rows,
            field,
            lambda r: (
                f"token id {by_row[r]} is outside the vocabulary [0, {NUM_SPECIAL + num_symbols[r]})"
                f" of num_symbols={num_symbols[r]}"
            ),
        )
    return lengths


def _check_shapes(
    task_type: pa.Array,
    height: np.ndarray,
    width: np.ndarray,
    lengths: dict[str, np.ndarray],
    collector: ProblemCollector,
) -> None:
    is_grid = np.zeros(len(task_type), dtype=bool)
    for grid_type in GRID_TASK_TYPES:
        is_grid |= _is_value(task_type, grid_type)
    known_type = pc.fill_null(
        pc.is_in(task_type, value_set=pa.array(list(TASK_TYPES))), False
    ).to_numpy(zero_copy_only=False)
    for name, values in (("height", height), ("width", width)):
        has = ~np.isnan(values)
        collector.add_rows(
            np.flatnonzero(is_grid & ~has), name, lambda r: "missing value: grid rows need a shape"
        )

        def outside(r: int, v: np.ndarray = values) -> str:
            return f"{v[r]:.0f} is outside [1, {MAX_SEQUENCE_LENGTH}]"

        collector.add_rows(
            np.flatnonzero(has & ((values < 1) | (values > MAX_SEQUENCE_LENGTH))), name, outside
        )
        collector.add_rows(
            np.flatnonzero(known_type & ~is_grid & has),
            name,
            lambda r: (
                f"set on a {task_type[r].as_py()!r} row; only grid rows have a shape"
                " (use task_type 'grid' or leave height/width null)"
            ),
        )
    in_range = (height >= 1) & (width >= 1) & (height <= MAX_SEQUENCE_LENGTH)
    shaped = is_grid & in_range & (width <= MAX_SEQUENCE_LENGTH)  # NaN compares False
    cells = np.where(shaped, np.nan_to_num(height) * np.nan_to_num(width), 0).astype(np.int64)
    for name, length in lengths.items():

        def mismatch(r: int, length: np.ndarray = length) -> str:
            return (
                f"{length[r]} tokens, but height*width = {height[r]:.0f}*{width[r]:.0f}"
                f" = {cells[r]}"
            )

        collector.add_rows(
            np.flatnonzero(shaped & (length > 0) & (length != cells)), name, mismatch
        )
