"""Predictions without Ray or MLflow: inputs with optional targets (parquet, jsonl, csv),
the Predictor against the evaluate path, and jobs/predict.py's bad-input exits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prediction_fixtures import parity_tasks, trained_checkpoint
from refiner_fixtures import SEQ_LEN, tiny_config, tiny_model_config
from sweep_fixtures import job

from refiner.checkpoints.files import CheckpointError, load_checkpoint
from refiner.data.batches import batch_from_table
from refiner.data.tokenizers import SymbolTokenizer
from refiner.evaluate.evaluation import evaluate_refiner
from refiner.infer.prediction import Predictor, inputs_from_ids, prediction_inputs, summarize
from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel
from refiner.tasks.inputs import read_prediction_inputs
from refiner.tasks.io import read_tasks, write_tasks
from refiner.tasks.problems import TaskFileError
from refiner.tasks.schema import UNLABELLED_SCHEMA
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return trained_checkpoint(tmp_path_factory.mktemp("model"))


def write_csv(table: pa.Table, path: Path, lists_as: str = "json") -> Path:
    lines = [",".join(table.column_names)]
    for row in table.to_pylist():
        cells = []
        for name in table.column_names:
            value = row[name]
            if isinstance(value, list):
                cell = json.dumps(value) if lists_as == "json" else " ".join(map(str, value))
                cells.append(f'"{cell}"')
            else:
                cells.append("" if value is None else str(value))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_inputs_read_with_and_without_targets_in_every_format(tmp_path: Path) -> None:
    tasks = parity_tasks(12)
    unlabelled = tasks.drop_columns(["target"])
    write_tasks(tasks, tmp_path / "labelled.parquet")
    write_tasks(tasks, tmp_path / "labelled.jsonl")
    pq.write_table(unlabelled, tmp_path / "unlabelled.parquet")
    (tmp_path / "unlabelled.jsonl").write_text(
        "\n".join(json.dumps(r) for r in unlabelled.to_pylist()) + "\n"
    )
    write_csv(tasks.select(["task_id", "task_type", "input", "target"]), tmp_path / "l.csv")
    write_csv(unlabelled.select(["task_id", "task_type", "input"]), tmp_path / "u.csv", "spaces")
    for name in [
        "labelled.parquet",
        "labelled.jsonl",
        "unlabelled.parquet",
        "unlabelled.jsonl",
        "l.csv",
        "u.csv",
    ]:
        table = read_prediction_inputs(tmp_path / name)
        assert table.schema == UNLABELLED_SCHEMA, name
        assert table.column("input").to_pylist() == tasks.column("input").to_pylist(), name
        expected = tasks.column("target").to_pylist() if name.startswith("l") else [None] * 12
        assert table.column("target").to_pylist() == expected, name


def test_some_rows_without_target(tmp_path: Path) -> None:
    rows = parity_tasks(3).select(["task_id", "task_type", "input", "target"]).to_pylist()
    rows[1]["target"] = None
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    table = read_prediction_inputs(path)
    assert [t is None for t in table.column("target").to_pylist()] == [False, True, False]
    with pytest.raises(TaskFileError, match=r"row 1 \(line 2.*'target': missing value"):
        read_tasks(path)  # training data still needs every target
    for row in rows:
        row["target"] = None  # every line null: Arrow types the column as null
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert read_prediction_inputs(path).column("target").to_pylist() == [None] * 3
    with pytest.raises(TaskFileError, match="3 problems"):
        read_tasks(path)


def test_bad_csv_names_file_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('task_id,task_type,input\na,sequence,"[4, 5]"\nb,sequence,"[4, x]"\n')
    with pytest.raises(TaskFileError) as err:
        read_prediction_inputs(path)
    assert str(err.value).startswith(f"{path}: row 1 (line 3), field 'input'")
    path.write_text('task_id,task_type,input\na,sequence,"[4, 999]"\n')
    with pytest.raises(TaskFileError, match=r"row 0 \(line 2.*token id 999"):
        read_prediction_inputs(path)
    with pytest.raises(TaskFileError, match="unsupported file suffix '.txt'"):
        read_prediction_inputs(tmp_path / "tasks.txt")


def test_predictor_matches_evaluate_and_a_plain_orchestrator(checkpoint: Path) -> None:
    tasks = parity_tasks(40)
    predictor = Predictor.from_checkpoint(checkpoint)
    predictions = predictor.predict(prediction_inputs(tasks), max_steps=5)

    # The evaluate path: the orchestrator load_checkpoint fills, evaluate_refiner's numbers.
    model_config = predictor.orchestrator.core.config
    orchestrator = UnifiedRefinerOrchestrator(
        RefinerModel(model_config),
        SymbolTokenizer(2),
        MemoryBank.from_config(model_config),
        predictor.orchestrator.config,
    )
    load_checkpoint(checkpoint, orchestrator)
    orchestrator.eval()
    batch = batch_from_table(tasks, SEQ_LEN)
    report = evaluate_refiner(orchestrator, batch, max_steps_infer=5)
    reference = orchestrator.inference(batch["input"], max_steps_override=5)

    assert predictions.column("prediction").to_pylist() == reference["final_canvas_ids"]
    assert predictions.column("steps_taken").to_pylist() == report.steps_taken
    assert predictions.column("stopping_reason").to_pylist() == reference["stopping_reason"]
    np.testing.assert_allclose(
        predictions.column("score").to_numpy(), reference["final_canvas_scores"], rtol=1e-6
    )
    summary = summarize(predictions)
    assert summary.accuracy == pytest.approx(report.acc_infer)
    assert summary.stopping_reasons == report.stopping_reasons
    decoded = [json.loads(d) for d in predictions.column("decoded").to_pylist()]
    assert decoded == [
        SymbolTokenizer(2).decode(ids).tolist() for ids in reference["final_canvas_ids"]
    ]


def test_predictor_options_and_unlabelled_rows(checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    inputs = inputs_from_ids([[4, 5, 4], [5, 5, 5, 5, 4]], predictor.default_task_type)
    always = predictor.predict(inputs, max_steps=3, early_stopping=False)
    assert always.column("steps_taken").to_pylist() == [3, 3]
    assert always.column("stopping_reason").to_pylist() == ["max_steps", "max_steps"]
    assert always.column("correct").to_pylist() == [None, None]
    assert always.column("task_id").to_pylist() == ["row-0", "row-1"]
    assert summarize(always).accuracy is None
    with pytest.raises(ValueError, match=r"max_steps: must be in \[1, 256\], got 257"):
        predictor.predict(inputs, max_steps=257)
    past_the_unroll = predictor.predict(inputs, max_steps=9, early_stopping=False)  # trained 6
    assert past_the_unroll.column("steps_taken").to_pylist() == [9, 9]
    too_long = inputs_from_ids([[4] * 4, [4] * (SEQ_LEN + 1)])
    with pytest.raises(TaskFileError, match=r"in.csv: row 1 \(task_id 'row-1'\), field 'input'"):
        predictor.check_fits(too_long, "in.csv")


def test_grid_layout_model_refuses_grids_of_another_width() -> None:
    model = RefinerModel(
        tiny_model_config(attention_window=1, attention_layout="grid", grid_width=3)
    )
    memory = MemoryBank.from_config(model.config, "cpu")
    orchestrator = UnifiedRefinerOrchestrator(model, None, memory, tiny_config(), "cpu")
    grids = pa.table(
        {
            "task_id": ["fits", "narrow", "sequence"],
            "task_type": ["grid", "grid", "sequence"],
            "input": [[4] * 6, [4] * 6, [4] * 6],
            "height": [2, 3, None],
            "width": [3, 2, None],
            "num_symbols": [2, 2, 2],
        }
    )
    with pytest.raises(TaskFileError) as err:
        Predictor(orchestrator).check_fits(prediction_inputs(grids), "in.parquet")
    message = str(err.value)
    assert (
        "row 1 (task_id 'narrow'), field 'width': a grid 2 wide; the model attends over grids 3 wide"
        in message
    )
    assert (
        "row 2 (task_id 'sequence'), field 'width': no grid" in message and "'fits'" not in message
    )


def test_grid_rows_decode_as_rows(checkpoint: Path) -> None:
    table = pa.table(
        {
            "task_id": ["g"],
            "task_type": ["grid"],
            "input": [[4, 5, 4, 5, 4, 5]],
            "height": [2],
            "width": [3],
            "num_symbols": [2],
        }
    )
    out = Predictor.from_checkpoint(checkpoint).predict(prediction_inputs(table))
    grid = json.loads(out.column("decoded")[0].as_py())
    assert len(grid) == 2 and all(len(r) == 3 for r in grid)


def test_predict_job_bad_inputs_exit_2_and_write_nothing(
    tmp_path: Path, checkpoint: Path, capsys
) -> None:
    predict = job("predict")
    out = tmp_path / "preds.parquet"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "a", "task_type": "sequence", "input": [4, 5]}\n{"task_id": "b"}\n')
    cases = [
        (["--model", str(checkpoint), "--input", str(bad)], "row 1 (line 2"),
        (["--model", str(tmp_path / "none.pt"), "--input", str(bad)], "no such checkpoint"),
        (["--model", str(checkpoint), "--input", str(bad), "--max-steps", "300"], "max_steps"),
    ]
    for argv, message in cases:
        assert predict.main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
        assert not out.exists()
    fine = tmp_path / "ok.parquet"
    write_tasks(parity_tasks(4), fine)
    code = predict.main(["--model", str(checkpoint), "--input", str(fine), "--out", "p.csv"])
    assert code == 2 and "written as parquet" in capsys.readouterr().err


def test_unsafe_checkpoint_is_refused(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "refiner-checkpoint", "payload": Path("x")}, path)
    with pytest.raises(CheckpointError, match="refused"):
        Predictor.from_checkpoint(path)
