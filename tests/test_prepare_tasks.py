"""jobs/prepare_tasks.py as a user runs it: a subprocess, its output file and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from refiner.tasks.io import read_tasks

JOB = Path(__file__).resolve().parents[1] / "jobs" / "prepare_tasks.py"


def run_job(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(JOB), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_writes_a_source_and_prints_a_summary(tmp_path):
    out = tmp_path / "data" / "sudoku.parquet"
    result = run_job(
        "--source", "sudoku", "--size", "4", "--count", "12", "--seed", "3",
        "--option", "givens=6-7", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "12 tasks" in result.stdout and "splits:" in result.stdout
    assert "input length: min 16" in result.stdout
    table = read_tasks(out)
    assert table.num_rows == 12 and set(table.column("source").to_pylist()) == {"sudoku"}


def test_text_input_file_to_jsonl(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"input": "ab", "target": "ba"}) + "\n")
    out = tmp_path / "text.jsonl"
    result = run_job(
        "--source", "text", "--input", str(pairs), "--out", str(out), cwd=tmp_path
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_tasks(out).num_rows == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--source", "sudoku", "--size", "9", "--option", "givens=10"], "at least 17 givens"),
        (["--source", "sudoku", "--size", "5"], "sudoku side must be one of"),
        (["--source", "text", "--input", "missing.jsonl"], "missing.jsonl: no such file"),
        (["--source", "parity", "--input", "x.jsonl"], "reads no input file"),
        (["--source", "arc", "--option", "version"], "--option expects KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out.parquet"
    result = run_job(*args, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "error:" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file either


def test_bad_text_file_reports_the_line(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"input": "a", "target": "b"}\n{"input": "a"}\n')
    out = tmp_path / "out.jsonl"
    result = run_job("--source", "text", "--input", str(pairs), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert "line 2" in result.stderr and "field 'target'" in result.stderr
    assert not out.exists()


def test_job_does_not_shadow_the_stdlib_platform_module():
    source = JOB.read_text()
    assert "sys.path" not in source
    probe = (
        "import runpy, sys; sys.argv = ['prepare_tasks.py', '--help'];\n"
        "import platform; assert hasattr(platform, 'python_version'), platform\n"
        f"try: runpy.run_path({str(JOB)!r}, run_name='__main__')\n"
        "except SystemExit: pass\n"
        "import platform; assert hasattr(platform, 'python_version')"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
