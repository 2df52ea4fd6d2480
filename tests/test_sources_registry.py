"""The source registry: load_source by name, load_tasks from a name or a task file."""

from __future__ import annotations

import pytest

from refiner.tasks.io import TaskFileError, write_tasks
from refiner.tasks.schema import TASK_SCHEMA
from refiner.tasks.sources import SOURCES, load_source, load_tasks, source_options


def test_registry_names_the_builtin_sources():
    assert set(SOURCES) == {"parity", "sudoku", "arc", "text", "maze"}


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("parity", dict(count=20, size=8)),
        ("sudoku", dict(count=5, size=4)),
        ("arc", dict(count=2, size=12)),
        ("text", dict(count=10)),
        ("maze", dict(count=4, size=9)),
    ],
)
def test_every_source_loads_in_the_task_schema(name, kwargs):
    table = load_source(name, seed=0, **kwargs)
    assert table.schema.equals(TASK_SCHEMA, check_metadata=False)
    assert table.num_rows > 0


def test_parity_count_defaults_through_the_registry():
    assert load_source("parity", size=12).num_rows == 1000


def test_source_options_are_checked():
    assert "givens" in source_options("sudoku")
    assert {"version", "subset"} <= set(source_options("arc"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) givns; known: givens"):
        load_source("sudoku", count=2, size=4, givns=6)
    assert load_source("sudoku", count=2, size=4, givens=8).num_rows == 2


def test_unknown_source_and_misplaced_input():
    with pytest.raises(ValueError, match="unknown task source 'mazes'; built-in sources: parity"):
        load_source("mazes")
    with pytest.raises(ValueError, match="reads no input file"):
        load_source("parity", input="pairs.jsonl")


def test_load_tasks_accepts_a_source_name_or_a_file(tmp_path):
    table = load_tasks("parity", count=30, size=6, seed=2)
    assert table.num_rows == 30
    path = tmp_path / "p.parquet"
    write_tasks(table, path)
    assert load_tasks(str(path)).equals(table)
    assert load_tasks(path, seed=9).equals(table)  # seed means nothing for a file
    assert load_tasks(path, count=5).equals(table.slice(0, 5))


def test_load_tasks_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a built-in task source .* nor a task file"):
        load_tasks("sudoku9")
    with pytest.raises(TaskFileError, match="no such file"):
        load_tasks(tmp_path / "missing.jsonl")
    path = tmp_path / "p.jsonl"
    write_tasks(load_tasks("parity", count=3, size=4), path)
    with pytest.raises(ValueError, match="options size apply to built-in sources"):
        load_tasks(path, size=9)
