"""jobs/evaluate.py on a saved checkpoint (file and folder), and its clear errors."""

from __future__ import annotations

from pathlib import Path

from refiner_fixtures import tiny_orchestrator
from sweep_fixtures import job

from refiner.checkpoints.files import save_checkpoint


def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint_000001"
    save_checkpoint(folder / "checkpoint.pt", tiny_orchestrator())
    return folder


def test_evaluate_reports_accuracy_steps_and_reasons(tmp_path: Path, capsys) -> None:
    folder = saved(tmp_path)
    for target in (folder, folder / "checkpoint.pt"):
        code = job("evaluate").main(
            [
                "--checkpoint",
                str(target),
                "--task",
                "parity",
                "--size",
                "8",
                "--count",
                "64",
                "--max-steps",
                "2",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert "tasks: parity (6 rows)" in out  # the held-out rows of 64
        assert "accuracy (infer-few, max 2 steps):" in out
        assert "steps taken: " in out and "stopping reasons: " in out


def test_evaluate_logs_to_mlflow(tmp_path: Path, capsys) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = job("evaluate").main(
        [
            "--checkpoint",
            str(saved(tmp_path)),
            "--task",
            "parity",
            "--size",
            "8",
            "--count",
            "64",
            "--tracking-uri",
            uri,
            "--experiment",
            "evals",
        ]
    )
    assert code == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("evals").experiment_id])
    assert run.info.status == "FINISHED"
    assert "eval_acc_infer" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "eval_acc_at_t")) == 4


def test_evaluate_errors(tmp_path: Path, capsys) -> None:
    evaluate = job("evaluate")
    assert evaluate.main(["--checkpoint", str(tmp_path / "nope.pt"), "--task", "parity"]) == 2
    assert "nope.pt: no such checkpoint file" in capsys.readouterr().err
    folder = saved(tmp_path)
    args = ["--checkpoint", str(folder), "--task", "parity", "--size", "8", "--count", "64"]
    assert evaluate.main([*args, "--max-steps", "0"]) == 2
    assert "--max-steps: must be in [1, 256], got 0" in capsys.readouterr().err
