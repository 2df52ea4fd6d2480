"""Bad input to ``jobs/train.py`` fails before Ray or MLflow start: exit 2, a precise message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sweep_fixtures import job
from train_fixtures import TINY, run_train_job, set_args

BAD_TASKS = Path(__file__).parent / "data" / "bad_tasks"


TRAIN = job("train")


def run_in_process(tmp: Path, capsys, *args: str) -> subprocess.CompletedProcess[str]:
    """``main(argv)`` of jobs/train.py without a new interpreter: same path, much faster."""
    argv = ["--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--storage", f"{tmp}/storage"]
    code = TRAIN.main([*argv, *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_rejected_before_anything_started(done, tmp: Path, *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr)
    assert "Traceback" not in done.stderr
    # No MLflow run was opened (so none can be left RUNNING) and Ray never started.
    assert not (tmp / "mlflow.db").exists()
    assert not (tmp / "storage").exists()
    assert "Ray" not in done.stdout


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("token_above_vocab.jsonl", ["token_above_vocab.jsonl", "row 1", "input"]),
        ("duplicate_task_id.jsonl", ["duplicate_task_id.jsonl", "task_id", "row 2"]),
        ("missing_target_column.jsonl", ["missing_target_column.jsonl", "target"]),
        ("empty.jsonl", ["empty.jsonl", "no rows"]),
    ],
)
def test_malformed_task_file(tmp_path, capsys, name: str, fragments: list[str]) -> None:
    done = run_in_process(tmp_path, capsys, "--task", str(BAD_TASKS / name), *set_args(TINY[3:]))
    assert_rejected_before_anything_started(done, tmp_path, *fragments)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            ["orchestration.truncated_backprop=true", "orchestration.backprop_truncate_steps=9"],
            ["backprop_truncate_steps", "9"],
        ),
        (["training.stepz=5"], ["training.stepz", "steps"]),
        (["model.d_model=abc"], ["model.d_model", "abc"]),
        (["orchestration.canvas_edit_strategies=[rewrite]"], ["rewrite", "replace"]),
        (["training.num_workers=-1"], ["num_workers"]),
    ],
)
def test_invalid_config_override(
    tmp_path, capsys, overrides: list[str], fragments: list[str]
) -> None:
    done = run_in_process(tmp_path, capsys, *set_args([*TINY, *overrides]))
    assert_rejected_before_anything_started(done, tmp_path, *fragments)


def test_invalid_config_file_names_the_file_and_key(tmp_path) -> None:
    # A real interpreter once: the exit status a shell or `ray job submit` sees.
    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  steps: 10\n  batch_sise: 8\n")
    done = run_train_job(tmp_path, "--config", str(config), timeout=90)
    assert_rejected_before_anything_started(done, tmp_path, "bad.yaml", "training.batch_sise")


def test_missing_task_file(tmp_path, capsys) -> None:
    done = run_in_process(tmp_path, capsys, "--task", str(tmp_path / "nope.parquet"))
    assert_rejected_before_anything_started(done, tmp_path, "nope.parquet")
