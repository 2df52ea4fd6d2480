"""jobs/compare.py reads a sweep back from MLflow: table sorted by the sweep metric, PNG, CSV."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from sweep_fixtures import job

from refiner.tracking import MlflowTracker, open_run
from refiner.tracking.sweeps import BEST_TAG, KIND_TAG, SWEEP_TAG, SWEPT_TAG


def make_sweep(uri: str) -> str:
    parent = open_run(uri, "sweeps", "demo", {KIND_TAG: "sweep", SWEEP_TAG: "demo"})
    parent.log_params({"scheduler": {"metric": "val_acc_infer", "mode": "max"}})
    for i, (k, acc) in enumerate([(2, 0.5), (8, 0.9), (4, 0.1)]):
        child = open_run(
            uri,
            "sweeps",
            f"demo-t{i}",
            {KIND_TAG: "trial", SWEPT_TAG: "orchestration.backprop_truncate_steps"},
            parent.run_id,
        )
        child.log_params({"orchestration": {"backprop_truncate_steps": k, "max_steps_infer": 2}})
        for step in (10, 20):
            child.log_metrics(
                {
                    "loss": 1.0 / step + i,
                    "val_acc_infer": acc * step / 20,
                    "val_mean_steps": 2.0,
                    **{f"val_acc_at_{t}": acc * t / 4 for t in range(1, 5)},
                    "val_pass_at_2": acc / step,  # the field's metric at checkpoints
                },
                step,
            )
        child.log_metrics({"final_val_pass_at_2": acc / 2}, 20)  # the end-of-run number
        if acc == 0.9:
            MlflowTracker(uri, child.run_id).set_tags({BEST_TAG: "true"})
        child.finish()
    parent.finish()
    return parent.run_id


def test_compare_table_plot_csv(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent_id = make_sweep(uri)
    out = tmp_path / "out"
    for which in (["--parent-run", parent_id], ["--experiment", "sweeps"]):
        assert job("compare").main([*which, "--tracking-uri", uri, "--out", str(out), "--csv"]) == 0
        table = capsys.readouterr().out
        rows = [line.split() for line in table.splitlines() if line.startswith("demo-")]
        assert [r[0] for r in rows] == ["demo-t1", "demo-t0", "demo-t2"]  # by val_acc_infer, max
        assert rows[0][1] == "*" and rows[0][2] == "8"
        assert "acc_at_budget" in table and "mean_steps" in table and "final_loss" in table
        header = table.splitlines()[1].split()
        assert "pass_at_2" in header and "puzzle_exact" not in header  # only those logged
        assert rows[0][header.index("pass_at_2") + 1] == "0.45"  # the final one (after "*")
    assert (out / "demo" / "refinement_curves.png").stat().st_size > 1000
    csv_lines = (out / "demo" / "trials.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and "orchestration.backprop_truncate_steps" in csv_lines[0]
    assert MlflowClient(uri).get_run(parent_id).info.status == "FINISHED"


def test_compare_unknown_experiment(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert job("compare").main(["--experiment", "nope", "--tracking-uri", uri]) == 2
    assert "no MLflow experiment 'nope'" in capsys.readouterr().err
