"""The checkpoint tools of bench/: canvas_trace.py (what a model does to its canvas, step
by step) and replay_checkpoint.py (train on from a checkpoint, with changes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from refiner.checkpoints.files import save_checkpoint
from refiner.config.experiment import build_optimizer, build_orchestrator, prepare_experiment
from refiner.data.batches import batch_from_table
from refiner.evaluate.canvas_pictures import CanvasTrace, step_counts
from refiner.tasks.schema import describe_tasks, split_validation

ROOT = Path(__file__).resolve().parents[1]


sys.path.insert(0, str(ROOT / "bench"))  # the scripts import bench/harness.py


def bench_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


canvas_trace = bench_script("canvas_trace")
replay_checkpoint = bench_script("replay_checkpoint")

TINY_MAZES = [
    "task.size=7",
    "task.count=80",
    "task.val_max_rows=8",
    "model.d_model=16",
    "model.n_heads=2",
    "orchestration.max_steps_train=3",
    "orchestration.max_steps_infer=5",
    "training.batch_size=8",
    "training.num_workers=0",
]


def write_checkpoint(folder: Path):
    """A maze run's checkpoint as the training loop writes it (weights, optimizer, EMA,
    the resolved config beside it), after a few real updates."""
    config, tasks = prepare_experiment(ROOT / "jobs" / "configs" / "maze.yaml", TINY_MAZES)
    train_rows, held_out = split_validation(tasks, config.task.val_split)
    task_type, num_symbols = describe_tasks(tasks)
    orchestrator = build_orchestrator(config, task_type, num_symbols, torch.device("cpu"))
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    batch = batch_from_table(train_rows.slice(0, 8), config.model.seq_len)
    for _ in range(3):
        orchestrator.train_step(batch, optimizer, task_type=task_type, lr_scheduler=scheduler)
    folder.mkdir()
    save_checkpoint(folder / "checkpoint.pt", orchestrator, optimizer, scheduler)
    config.to_yaml(folder / "config.yaml")
    return orchestrator, held_out.slice(0, 8), config, task_type


def trace_rows(out: str, title: str) -> list[list[str]]:
    lines = out.split(title, 1)[1].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_trace_prints_each_step_for_live_and_ema_weights_and_agrees_with_evaluate(tmp_path, capsys):
    orchestrator, held_out, config, task_type = write_checkpoint(tmp_path / "ckpt")
    assert canvas_trace.main([str(tmp_path / "ckpt"), "--rows", "8"]) == 0
    out = capsys.readouterr().out
    assert f"(update 3): {held_out.num_rows} held-out rows of maze, 5 steps" in out
    batch = batch_from_table(held_out, config.model.seq_len)
    live = orchestrator.evaluate(batch, task_type=task_type, steps=5)["acc_at"]
    with orchestrator.averaged_weights():
        ema = orchestrator.evaluate(batch, task_type=task_type, steps=5)["acc_at"]
    for title, acc_at in (("live weights", live), ("EMA of the weights", ema)):
        rows = trace_rows(out, title)
        assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
        for _, right, wrong, _ in rows:
            assert 0.0 <= float(right.rstrip("%")) <= 100.0 and float(wrong) >= 0.0
        # the same unroll as the platform's own evaluation: exact after each step agrees
        assert [float(row[3].rstrip("%")) for row in rows] == pytest.approx(
            [100 * a for a in acc_at], abs=0.05
        )


def test_a_folder_without_its_config_is_refused(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.yaml").unlink()
    assert canvas_trace.main([str(tmp_path / "ckpt" / "checkpoint.pt")]) == 2
    assert "no config.yaml beside the checkpoint" in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_refused_by_name(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert canvas_trace.main([str(tmp_path / "ckpt")]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err


def test_step_counts_count_cells_to_fill_wrong_cells_and_exact_rows():
    inputs = np.array([[1, 1, 1, 1], [1, 1, 1, 1]])
    target = np.array([[1, 2, 2, 1], [1, 1, 2, 1]])  # 3 cells to fill in all
    canvases = [
        [[1, 3, 1, 1], [4, 1, 1, 1]],  # nothing filled; a wrong cell in each row
        [[1, 2, 1, 1], [1, 1, 2, 1]],  # 2 of 3 filled, no wrong cell, row 2 exact
        [[1, 2, 2, 1], [1, 1, 2, 3]],  # all filled; row 2 now has a wrong cell
    ]
    trace = CanvasTrace(
        "sequence", "x", inputs, target, np.array(canvases), [3, 3], ["max_steps"] * 2, [None] * 2
    )
    rows = step_counts(trace)
    assert rows == [
        pytest.approx((0.0, 1.0, 0.0)),
        pytest.approx((2 / 3, 0.0, 0.5)),
        pytest.approx((1.0, 0.5, 0.5)),
    ]


def test_replay_trains_on_from_the_checkpoint_with_changes(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    args = [str(tmp_path / "ckpt"), "--updates", "3", "--every", "2"]
    assert (
        replay_checkpoint.main([*args, "--set", "orchestration.gradient_clip_threshold=0.3"]) == 0
    )
    out = capsys.readouterr().out
    assert "update 3," in out and "3 more updates of 8 rows" in out
    assert "with orchestration.gradient_clip_threshold=0.3" in out
    updates = [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("  ") and line.split()[0].isdigit()
    ]
    assert updates == ["5", "6"]  # the checkpoint's update count goes on


def test_replay_scales_the_learning_rate_from_the_next_update_on(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    args = [str(tmp_path / "ckpt"), "--updates", "1"]
    assert replay_checkpoint.main(args) == 0
    plain = float(capsys.readouterr().out.split(", lr ")[1].split(";")[0])
    assert replay_checkpoint.main([*args, "--lr-scale", "0.5"]) == 0
    scaled = float(capsys.readouterr().out.split(", lr ")[1].split(";")[0])
    assert scaled == pytest.approx(plain / 2, rel=1e-2)


def test_replay_refuses_an_unknown_key_by_name(tmp_path, capsys):
    write_checkpoint(tmp_path / "ckpt")
    assert replay_checkpoint.main([str(tmp_path / "ckpt"), "--set", "orchestration.nope=1"]) == 2
    assert "orchestration.nope" in capsys.readouterr().err


def test_both_tools_write_a_results_file_when_asked(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    trace = tmp_path / "trace.md"
    assert canvas_trace.main([str(tmp_path / "ckpt"), "--rows", "4", "--out", str(trace)]) == 0
    text = trace.read_text()
    assert text.startswith("# Canvas trace of") and "- Machine: " in text
    assert "## live weights" in text and json.loads(trace.with_suffix(".json").read_text())
    replay = tmp_path / "replay.json"
    args = [str(tmp_path / "ckpt"), "--updates", "2", "--every", "1", "--out", str(replay)]
    assert replay_checkpoint.main(args) == 0
    results = json.loads(replay.read_text())["results"]
    assert results["updates"] == 2 and [r["update"] for r in results["rows"]] == [4, 5]
