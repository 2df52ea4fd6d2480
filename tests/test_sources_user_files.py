"""Users' own benchmark files: a Sudoku-Extreme CSV and an ARC-AGI JSON directory, through
the sources and through jobs/prepare_tasks.py (bad files: exit 2, file and line named)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refiner.data.tokenizers import NUM_SPECIAL
from refiner.tasks.io import read_tasks
from refiner.tasks.problems import TaskFileError
from refiner.tasks.sources import load_source
from refiner.tasks.sources.arc import extract_from_canvas
from refiner.tasks.sources.sudoku import generate as sudoku_generate

JOB = Path(__file__).resolve().parents[1] / "jobs" / "prepare_tasks.py"


def sudoku_lines(count: int) -> list[str]:
    """Real 9x9 puzzles from the built-in generator, written as Sudoku-Extreme lines."""
    table = sudoku_generate(count=count, size=9, seed=7)
    lines = []
    for i, (q, a) in enumerate(
        zip(table.column("input").to_pylist(), table.column("target").to_pylist(), strict=True)
    ):
        question = "".join("." if t == NUM_SPECIAL else str(t - NUM_SPECIAL) for t in q)
        answer = "".join(str(t - NUM_SPECIAL) for t in a)
        lines.append(f"gen,{question},{answer},{i}")
    return lines


def write_csv(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "train.csv"
    path.write_text("\n".join(["source,question,answer,rating", *lines]) + "\n")
    return path


def test_sudoku_csv_rows_match_the_file(tmp_path):
    lines = sudoku_lines(6)
    lines[2] = lines[2].replace(".", "0")  # '0' is a blank too
    table = load_source("sudoku", input=str(write_csv(tmp_path, lines)))
    assert table.num_rows == 6
    assert set(table.column("source").to_pylist()) == {"sudoku"}  # sudoku augmentation applies
    first = table.column("input")[0].as_py()
    question = lines[0].split(",")[1]
    assert [t - NUM_SPECIAL for t in first] == [0 if c == "." else int(c) for c in question]
    assert table.column("task_id")[0].as_py() == "sudoku-csv/train/2"
    rated = load_source("sudoku", input=str(write_csv(tmp_path, lines)), min_rating=4)
    assert rated.num_rows == 2  # ratings 4 and 5
    sample = load_source("sudoku", input=str(write_csv(tmp_path, lines)), count=3, seed=1)
    assert sample.num_rows == 3
    assert sample.equals(
        load_source("sudoku", input=str(write_csv(tmp_path, lines)), count=3, seed=1)
    )
    test = load_source("sudoku", input=str(write_csv(tmp_path, lines)), split="test")
    assert set(test.column("split").to_pylist()) == {"test"}


def test_sudoku_csv_problems_name_file_line_and_field(tmp_path):
    lines = sudoku_lines(4)
    q, a = lines[1].split(",")[1:3]
    lines[1] = f"gen,{q},{a[::-1]},1"  # reversed answer: not a solution of the question
    lines[2] = lines[2][:-1] + "hard"
    lines[3] = "gen,123,456,1"
    path = write_csv(tmp_path, lines)
    with pytest.raises(TaskFileError) as err:
        load_source("sudoku", input=str(path))
    text = str(err.value)
    assert f"{path}: " in text
    assert "row 2 (line 4), field 'rating': expected an integer" in text
    assert "row 3 (line 5), field 'question': expected 81 characters, got 3" in text
    with pytest.raises(TaskFileError, match=r"line 3, field 'answer': is not a valid sudoku"):
        load_source("sudoku", input=str(write_csv(tmp_path, sudoku_lines(1) + [lines[1]])))
    with pytest.raises(TaskFileError, match="no such file"):
        load_source("sudoku", input=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="drop size/givens options"):
        load_source("sudoku", input=str(path), givens=30)


def write_arc_dir(tmp_path: Path, puzzles: dict[str, object]) -> Path:
    folder = tmp_path / "evaluation"
    folder.mkdir(exist_ok=True)
    for pid, puzzle in puzzles.items():
        (folder / f"{pid}.json").write_text(
            puzzle if isinstance(puzzle, str) else json.dumps(puzzle)
        )
    return folder


def puzzle(seed: int, train: int = 2, side: int = 3) -> dict:
    rng = np.random.default_rng(seed)

    def pair():
        grid = rng.integers(0, 10, size=(side, side + 1)).tolist()
        return {"input": grid, "output": [row[::-1] for row in grid]}

    return {"train": [pair() for _ in range(train)], "test": [pair()]}


def test_arc_directory_trains_on_demonstrations_and_tests_on_test_pairs(tmp_path):
    folder = write_arc_dir(tmp_path, {"aa": puzzle(0), "bb": puzzle(1, train=3)})
    table = load_source("arc", input=str(folder), size=8)
    assert table.num_rows == 7
    splits = list(
        zip(table.column("group_id").to_pylist(), table.column("split").to_pylist(), strict=True)
    )
    assert splits.count(("aa", "train")) == 2 and splits.count(("bb", "train")) == 3
    assert splits.count(("aa", "test")) == 1 and splits.count(("bb", "test")) == 1
    assert set(table.column("source").to_pylist()) == {"arc-evaluation"}
    assert table.column("task_id")[0].as_py() == "arc-evaluation/aa/train/0"
    first = extract_from_canvas(table.column("target")[0].as_py())
    assert first.tolist() == puzzle(0)["train"][0]["output"]


def test_arc_directory_problems_name_the_file(tmp_path):
    bad = puzzle(2)
    bad["train"][1]["output"][1] = [1]
    bad["test"][0]["input"][0][0] = 12
    folder = write_arc_dir(
        tmp_path, {"ok": puzzle(0), "bad": bad, "broken": "{", "odd": {"train": []}}
    )
    with pytest.raises(TaskFileError) as err:
        load_source("arc", input=str(folder))
    text = str(err.value)
    assert "bad.json: train[1].output row 1: 1 cells, row 0 has 4" in text
    assert "bad.json: test[0].input row 0: 12 is not a colour 0..9" in text
    assert "broken.json: invalid JSON" in text
    assert "odd.json: train: expected a non-empty list of pairs" in text
    assert "odd.json: test: expected a non-empty list of pairs" in text
    with pytest.raises(TaskFileError, match="not a directory"):
        load_source("arc", input=str(tmp_path / "nowhere"))


def run_job(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(JOB), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_prepare_tasks_reads_each_benchmark_layout(tmp_path):
    out = tmp_path / "sudoku.parquet"
    csv = write_csv(tmp_path, sudoku_lines(5))
    done = run_job("--source", "sudoku", "--input", str(csv), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_tasks(out).num_rows == 5
    folder = write_arc_dir(tmp_path, {"aa": puzzle(0)})
    out = tmp_path / "arc.jsonl"
    done = run_job(
        "--source", "arc", "--input", str(folder), "--size", "6", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert read_tasks(out).num_rows == 3


def test_prepare_tasks_bad_benchmark_file_exits_2_and_writes_nothing(tmp_path):
    lines = sudoku_lines(2)
    lines[1] = lines[1].replace(".", "x", 1)
    out = tmp_path / "sudoku.parquet"
    csv = write_csv(tmp_path, lines)
    done = run_job("--source", "sudoku", "--input", str(csv), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2
    assert "train.csv: row 1 (line 3), field 'question': unexpected character(s) 'x'" in done.stderr
    assert not out.exists()
