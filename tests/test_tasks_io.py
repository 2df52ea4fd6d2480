"""Task files: round trips, defaults, leniency rules, atomic writes, in-memory validation."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refiner.tasks import io as task_io
from refiner.tasks.io import TaskFileError, read_tasks, validate_table, write_tasks
from refiner.tasks.schema import DEFAULT_NUM_SYMBOLS, TASK_SCHEMA
from refiner.tasks.sources import parity


def mixed_table() -> pa.Table:
    """One row of each task type, with nulls where the format allows them."""
    return pa.table(
        {
            "task_id": ["seq-0", "grid-0", "text-0"],
            "task_type": ["sequence", "grid", "text"],
            "source": ["parity", "sudoku", ""],
            "group_id": ["g", "grid-0", "text-0"],
            "split": ["train", "test", "val"],
            "input": [[4, 5, 4], [4, 5, 5, 4, 0, 1], [104, 105, 200]],
            "target": [[4, 5, 5], [5, 4, 4, 5, 6, 6], [3]],
            "height": [None, 2, None],
            "width": [None, 3, None],
            "num_symbols": [2, 3, 256],
        },
        schema=TASK_SCHEMA,
    )


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip_keeps_every_column(tmp_path, suffix):
    table = mixed_table()
    path = tmp_path / f"tasks{suffix}"
    written = write_tasks(table, path)
    assert written.equals(table)
    back = read_tasks(path)
    assert back.schema.equals(TASK_SCHEMA, check_metadata=False)
    assert back.equals(table)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_round_trip_of_a_generated_source(tmp_path, suffix):
    table = parity.generate(200, size=12, seed=3)
    write_tasks(table, tmp_path / f"p{suffix}")
    assert read_tasks(tmp_path / f"p{suffix}").equals(table)


def test_jsonl_is_one_object_per_line_with_int_lists(tmp_path):
    write_tasks(mixed_table(), tmp_path / "t.jsonl")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["input"] == [4, 5, 4] and first["height"] is None
    assert set(first) == set(TASK_SCHEMA.names)


def test_optional_columns_take_their_defaults(tmp_path):
    path = tmp_path / "minimal.jsonl"
    rows = [
        {"task_id": "a", "task_type": "sequence", "input": [4, 259], "target": [5]},
        {"task_id": "b", "task_type": "text", "input": [104], "target": [105]},
        {"task_id": "c", "task_type": "sequence", "input": [4], "target": [5], "split": None},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = read_tasks(path)
    assert table.column("source").to_pylist() == ["", "", ""]
    assert table.column("group_id").to_pylist() == ["a", "b", "c"]
    assert table.column("split").to_pylist() == ["train"] * 3
    assert table.column("height").null_count == 3
    assert table.column("num_symbols").to_pylist() == [
        DEFAULT_NUM_SYMBOLS,
        256,
        DEFAULT_NUM_SYMBOLS,
    ]


def test_lenient_inputs_are_accepted(tmp_path):
    """Integral floats for integer fields (pandas), empty group_id, pandas index columns."""
    path = tmp_path / "lenient.parquet"
    pq.write_table(
        pa.table(
            {
                "__index_level_0__": [10, 11],
                "task_id": ["a", "b"],
                "task_type": ["grid", "sequence"],
                "group_id": ["", None],
                "input": pa.array([[4, 4], [4]], pa.list_(pa.int64())),
                "target": pa.array([[5, 5], [5]], pa.list_(pa.int8())),
                "height": [1.0, float("nan")],
                "width": [2.0, None],
                "num_symbols": [2.0, None],
            }
        ),
        path,
    )
    table = read_tasks(path)
    assert table.column("height").to_pylist() == [1, None]
    assert table.column("group_id").to_pylist() == ["a", "b"]
    assert table.column("num_symbols").to_pylist() == [2, DEFAULT_NUM_SYMBOLS]
    assert table.schema.equals(TASK_SCHEMA, check_metadata=False)


def test_jsonl_with_loose_types_goes_through_the_line_parser(tmp_path):
    """Arrow infers double for a column mixing 2 and 2.0; the result must still be exact."""
    path = tmp_path / "loose.jsonl"
    rows = [
        {"task_id": "a", "task_type": "sequence", "input": [4], "target": [5], "num_symbols": 2},
        {"task_id": "b", "task_type": "sequence", "input": [5], "target": [4], "num_symbols": 2.0},
    ]
    path.write_text("\ufeff" + "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert read_tasks(path).column("num_symbols").to_pylist() == [2, 2]


def test_validate_table_normalises_column_order_and_types():
    table = mixed_table()
    shuffled = table.select(list(reversed(table.column_names)))
    shuffled = shuffled.set_column(
        shuffled.column_names.index("input"),
        "input",
        shuffled.column("input").cast(pa.large_list(pa.int64())),
    )
    assert validate_table(shuffled).equals(table)


def test_validate_table_handles_sliced_and_chunked_tables():
    table = parity.generate(50, size=6, seed=1)
    chunked = pa.concat_tables([table.slice(0, 20), table.slice(20)])
    assert validate_table(chunked).equals(table)
    bad = chunked.slice(5, 30)
    inputs = bad.column("input").to_pylist()
    inputs[7] = [4, 77]
    bad = bad.set_column(bad.column_names.index("input"), "input", pa.array(inputs))
    with pytest.raises(TaskFileError, match=r"<mem>: row 7 .*field 'input': token id 77"):
        validate_table(bad, origin="<mem>")


def test_validate_table_rejects_an_empty_table():
    with pytest.raises(TaskFileError, match="no rows"):
        validate_table(mixed_table().slice(0, 0))


def test_error_carries_structured_problems(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"task_id": "x", "task_type": "sequence", "input": [], "target": [4]})
    )
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.origin == str(path) and err.total == 1
    (problem,) = err.problems
    assert (problem.row, problem.line, problem.field, problem.task_id) == (0, 1, "input", "x")


def test_write_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "tasks.parquet"
    write_tasks(mixed_table(), path)
    before = path.read_bytes()

    def broken_write(table, out):
        out.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(task_io.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_tasks(parity.generate(10, size=4), path)
    assert path.read_bytes() == before  # the old file is untouched
    assert os.listdir(tmp_path) == ["tasks.parquet"]  # and no temp file is left behind


def test_write_refuses_an_invalid_table_and_writes_nothing(tmp_path):
    table = mixed_table()
    table = table.set_column(
        table.column_names.index("task_id"), "task_id", pa.array(["a", "a", "b"])
    )
    path = tmp_path / "out" / "tasks.jsonl"
    with pytest.raises(TaskFileError, match="duplicate task_id 'a', first used in row 0"):
        write_tasks(table, path)
    assert not path.exists()


def test_written_files_have_normal_permissions(tmp_path):
    path = tmp_path / "t.parquet"
    write_tasks(mixed_table(), path)
    assert os.stat(path).st_mode & 0o777 == 0o644  # not mkstemp's 0600
    os.chmod(path, 0o664)
    write_tasks(mixed_table(), path)
    assert os.stat(path).st_mode & 0o777 == 0o664  # a replaced file keeps its mode


@pytest.mark.parametrize("name", ["tasks.csv", "tasks", "tasks.json"])
def test_unsupported_suffix_is_an_error(tmp_path, name):
    with pytest.raises(TaskFileError, match="unsupported file suffix"):
        write_tasks(mixed_table(), tmp_path / name)
    with pytest.raises(TaskFileError, match="unsupported file suffix"):
        read_tasks(tmp_path / name)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(TaskFileError, match=r"nope\.parquet: no such file"):
        read_tasks(tmp_path / "nope.parquet")


def test_large_file_round_trip_is_vectorised(tmp_path):
    """20k grid rows: a smoke test that validation does not walk rows in Python."""
    n = 20_000
    cells = np.random.default_rng(0).integers(4, 14, size=(n, 81)).astype(np.int32)
    table = pa.table(
        {
            "task_id": [f"t{i}" for i in range(n)],
            "task_type": ["grid"] * n,
            "input": list(cells),
            "target": list(cells),
            "height": np.full(n, 9, np.int32),
            "width": np.full(n, 9, np.int32),
            "num_symbols": np.full(n, 10, np.int32),
        }
    )
    write_tasks(table, tmp_path / "big.jsonl")
    back = read_tasks(tmp_path / "big.jsonl")
    assert back.num_rows == n
    assert back.column("input").to_pylist()[n - 1] == cells[n - 1].tolist()
