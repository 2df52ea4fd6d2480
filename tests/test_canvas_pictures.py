"""Canvas pictures (refiner.evaluate.canvas_pictures): what they draw is the canvas, cell by cell,
for each task kind; the picture marks where inference stopped; `jobs/evaluate.py --trace`
writes one for a checkpoint, with the per-step counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from sweep_fixtures import job
from test_checkpoint_tools import write_checkpoint

from refiner.data.tokenizers import NUM_SPECIAL
from refiner.evaluate.canvas_pictures import (
    GIVEN,
    RIGHT,
    WRONG,
    CanvasTrace,
    _panel,
    _rgb,
    draw_canvas_trace,
    shown_steps,
    trace_canvases,
)

S = NUM_SPECIAL  # symbol s is token S + s


def sudoku_trace() -> CanvasTrace:
    """One 2x2 'sudoku': cell 0 given, the others to fill; two steps."""
    inputs = np.array([[S + 1, S + 0, S + 0, S + 0]])
    target = np.array([[S + 1, S + 2, S + 2, S + 1]])
    canvases = np.array([[[S + 1, S + 2, S + 1, S + 0]], [[S + 1, S + 2, S + 2, S + 1]]])
    return CanvasTrace(
        "sudoku", "sudoku", inputs, target, canvases, [2], ["act_confidence"], [(2, 2)]
    )


def test_sudoku_panel_colours_givens_filled_and_wrong_cells_and_writes_the_canvas_digits():
    trace = sudoku_trace()
    rgb, labels = _panel(trace, 0, trace.canvases[0, 0])
    expected = [[GIVEN, RIGHT], [WRONG, WRONG]]  # given; filled right; wrong; left empty
    for i, j in np.ndindex(2, 2):
        assert rgb[i, j] == pytest.approx(_rgb(expected[i][j]))
    assert [text for _, _, text, _ in labels] == ["1", "2", "1", "0"]  # the canvas's digits
    rgb, _ = _panel(trace, 0, trace.canvases[1, 0])
    assert rgb[1, 1] == pytest.approx(_rgb(RIGHT))


def test_strip_maze_and_colour_panels_follow_the_canvas():
    seq = CanvasTrace(
        "parity", "parity", np.array([[S, S + 1, S]]), np.array([[S, S + 1, S + 1]]),
        np.array([[[S, S, S + 1]]]), [1], ["max_steps"], [None],
    )  # fmt: skip
    rgb, labels = _panel(seq, 0, seq.canvases[0, 0])
    assert rgb.shape == (1, 3, 3) and [t for _, _, t, _ in labels] == ["0", "0", "1"]
    assert [tuple(c) for c in rgb[0]] == [tuple(_rgb(c)) for c in (RIGHT, WRONG, RIGHT)]
    # maze: open 0, wall 1, S 2, G 3, path 4; a path cell missing is red, walls dark
    maze_in = np.array([[S + 2, S + 0, S + 1, S + 3]])
    maze_target = np.array([[S + 2, S + 4, S + 1, S + 3]])
    maze = CanvasTrace(
        "grid", "maze", maze_in, maze_target, np.array([maze_in]), [1], ["max_steps"], [(2, 2)]
    )
    rgb, _ = _panel(maze, 0, maze_in[0])
    assert rgb[0, 1] == pytest.approx(_rgb("#e74c3c")) and rgb[1, 0] == pytest.approx(
        _rgb("#333333")
    )
    arc = CanvasTrace(
        "grid", "arc-agi-1", np.array([[S + 0, S + 1]]), np.array([[S + 2, S + 1]]),
        np.array([[[S + 3, S + 1]]]), [1], ["max_steps"], [(1, 2)],
    )  # fmt: skip
    rgb, labels = _panel(arc, 0, arc.canvases[0, 0])
    assert labels == [(0, 0, "x", "white")]  # the wrong cell crossed, the right one not
    target_rgb, _ = _panel(arc, 0, arc.targets[0], target=True)
    assert not np.allclose(rgb[0, 0], target_rgb[0, 0]) and np.allclose(rgb[0, 1], target_rgb[0, 1])


def test_picture_is_a_png_with_a_column_per_step(tmp_path):
    trace = sudoku_trace()
    path = draw_canvas_trace(trace, tmp_path / "p.png")
    assert imread(path).shape[2] in (3, 4)
    long = CanvasTrace("sudoku", "sudoku", trace.inputs, trace.targets,
                       np.repeat(trace.canvases[:1], 20, 0), [13], ["patience"], [(2, 2)])  # fmt: skip
    assert len(shown_steps(long)) <= 8 and {1, 13, 20} <= set(shown_steps(long))


def test_a_checkpoint_is_traced_through_inference_and_evaluate_draws_it(tmp_path, capsys):
    """The trace is the inference path's own canvases: its last step equals a full-length
    inference's final canvas; `evaluate --trace` prints the counts and writes the PNG."""
    orchestrator, held_out, config, task_type = write_checkpoint(tmp_path / "ckpt")
    trace = trace_canvases(orchestrator, held_out, config.model.seq_len, 5)
    assert trace.canvases.shape == (5, held_out.num_rows, config.model.seq_len)
    full = orchestrator.inference(
        torch.as_tensor(trace.inputs), max_steps_override=5, early_stopping=False
    )
    assert trace.canvases[-1].tolist() == full["final_canvas_ids"]
    out = tmp_path / "trace.png"
    args = ["--checkpoint", str(tmp_path / "ckpt"), "--task", "maze", "--size", "7"]
    code = job("evaluate").main([*args, "--count", "80", "--trace", "8", "--trace-out", str(out)])
    assert code == 0 and out.is_file()
    printed = capsys.readouterr().out
    assert "canvas trace on 8 rows" in printed and "to fill, right" in printed
