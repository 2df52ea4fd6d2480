"""Every bad-input case of the task format: the error names the file, the row and the field.

The jsonl corpus lives in tests/data/bad_tasks/ with its expectations in expected.json
(reused by the hardening work); parquet cases are generated here, since parquet is binary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refiner.tasks.io import TaskFileError, read_tasks
from refiner.tasks.validation import MAX_SEQUENCE_LENGTH

BAD_TASKS = Path(__file__).parent / "data" / "bad_tasks"
EXPECTED = json.loads((BAD_TASKS / "expected.json").read_text())


def assert_names(err: TaskFileError, path: Path, row=None, field=None, line=None, contains=()):
    message = str(err)
    assert str(path) in message
    if row is not None:
        assert f"row {row}" in message
    if line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert f"field {field!r}" in message
    for fragment in contains:
        assert fragment in message


def test_corpus_lists_every_file():
    on_disk = {p.name for p in BAD_TASKS.glob("*.jsonl")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_jsonl_file_is_rejected_with_a_precise_message(name):
    path = BAD_TASKS / name
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    assert_names(caught.value, path, **EXPECTED[name])


# -- generated cases -----------------------------------------------------------------------


def good_columns(n: int = 3) -> dict[str, object]:
    return {
        "task_id": [f"t{i}" for i in range(n)],
        "task_type": ["sequence"] * n,
        "input": pa.array([[4, 5]] * n, pa.list_(pa.int32())),
        "target": pa.array([[5, 4]] * n, pa.list_(pa.int32())),
        "num_symbols": pa.array([2] * n, pa.int32()),
    }


def write_parquet(path: Path, **changes: object) -> Path:
    columns = good_columns()
    for name, value in changes.items():
        if value is None:
            columns.pop(name)
        else:
            columns[name] = value
    pq.write_table(pa.table(columns), path)
    return path


PARQUET_CASES = {
    "input_string_column": (
        {"input": ["4 5", "4", "5"]},
        dict(row=0, field="input", contains=["expected a list of integer token ids", "string"]),
    ),
    "num_symbols_fractional": (
        {"num_symbols": [2.0, 2.5, 2.0]},
        dict(row=1, field="num_symbols", contains=["expected an integer, got 2.5"]),
    ),
    "float_tokens": (
        {"target": pa.array([[5.0, 4.0]] * 3)},
        dict(row=0, field="target", contains=["expected a list of integer token ids"]),
    ),
    "token_above_vocab": (
        {"input": pa.array([[4, 5], [4, 5], [4, 300]], pa.list_(pa.int64()))},
        dict(row=2, field="input", contains=["token id 300", "task_id 't2'"]),
    ),
    "uint_token_above_vocab": (
        {"input": pa.array([[4, 5], [2**63, 5], [4, 5]], pa.list_(pa.uint64()))},
        dict(row=1, field="input", contains=[f"token id {2**63}"]),
    ),
    "null_task_id": (
        {"task_id": ["t0", None, "t2"]},
        dict(row=1, field="task_id", contains=["missing value"]),
    ),
    "null_input": (
        {"input": pa.array([[4, 5], [4, 5], None], pa.list_(pa.int32()))},
        dict(row=2, field="input", contains=["missing value"]),
    ),
    "empty_target": (
        {"target": pa.array([[5], [], [5]], pa.list_(pa.int32()))},
        dict(row=1, field="target", contains=["empty token list"]),
    ),
    "duplicate_ids": (
        {"task_id": ["a", "b", "a"]},
        dict(row=2, field="task_id", contains=["duplicate task_id 'a', first used in row 0"]),
    ),
    "unknown_column": (
        {"targets": [[1]] * 3},
        dict(field="targets", contains=["unknown column", "did you mean 'target'"]),
    ),
    "missing_columns": (
        {"task_type": None, "target": None},
        dict(contains=["missing required column(s): task_type, target"]),
    ),
    "grid_shape_mismatch": (
        {
            "task_type": ["grid"] * 3,
            "height": [1, 1, 2],
            "width": [2, 2, 2],
        },
        dict(row=2, field="input", contains=["2 tokens, but height*width = 2*2 = 4"]),
    ),
    "grid_without_width": (
        {"task_type": ["grid"] * 3, "height": [1, 1, 1], "width": [2, None, 2]},
        dict(row=1, field="width", contains=["grid rows need a shape"]),
    ),
    "shape_on_text_row": (
        {"task_type": ["text"] * 3, "width": [None, None, 2], "num_symbols": None},
        dict(row=2, field="width", contains=["only grid rows have a shape"]),
    ),
    "unknown_split": (
        {"split": ["train", "holdout", "test"]},
        dict(row=1, field="split", contains=["unknown split 'holdout'"]),
    ),
}


@pytest.mark.parametrize("case", sorted(PARQUET_CASES))
def test_bad_parquet_file_is_rejected_with_a_precise_message(tmp_path, case):
    changes, expected = PARQUET_CASES[case]
    path = write_parquet(tmp_path / f"{case}.parquet", **changes)
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    assert_names(caught.value, path, **expected)


def test_parquet_with_no_rows(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table(good_columns()).slice(0, 0), path)
    with pytest.raises(TaskFileError, match=r"empty\.parquet: no rows"):
        read_tasks(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_parquet(tmp_path, damage):
    path = tmp_path / "corrupt.parquet"
    if damage == "garbage":
        path.write_bytes(b"this is not parquet at all")
    else:
        pq.write_table(pa.table(good_columns()), path)
        path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(TaskFileError, match=r"corrupt\.parquet: not a readable parquet file"):
        read_tasks(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sequence_longer_than_the_limit(tmp_path, suffix):
    n = MAX_SEQUENCE_LENGTH + 1
    path = tmp_path / f"long{suffix}"
    row = {"task_id": "long", "task_type": "sequence", "input": [4] * n, "target": [4]}
    if suffix == ".jsonl":
        path.write_text(json.dumps(row) + "\n")
    else:
        pq.write_table(pa.table({k: [v] for k, v in row.items()}), path)
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    assert_names(caught.value, path, row=0, field="input", contains=[f"{n} tokens", "limit"])


def test_jsonl_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"task_id": "a", "task_type": "sequence", "input": [4], "target": [4]})
    path.write_bytes(good.encode() + b'\n{"task_id": "caf\xe9"}\n')
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    assert_names(caught.value, path, row=1, line=2, contains=["not valid UTF-8"])


def test_problems_are_capped_but_counted(tmp_path):
    path = tmp_path / "many.jsonl"
    rows = [{"task_id": "x", "task_type": "nope", "input": [4], "target": [4]}] * 30
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    err = caught.value
    assert len(err.problems) == 10
    assert err.total == 30 + 29  # 30 unknown task types, 29 duplicates of row 0
    assert "... and 49 more" in str(err)
