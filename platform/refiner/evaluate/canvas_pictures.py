"""Pictures of the canvas, step by step: what the model writes at step 1, 2, 3 and where
inference stops.

``trace_canvases`` runs the orchestrator's own inference (``inference(...,
return_traces=True)``, the path evaluation and serving use) on a few fixed held-out rows
twice: to the step limit without early stopping (every step's canvas), and as inference
normally runs (the step where each row stops, and why). ``draw_canvas_trace`` draws one
row per example and one column per step, for what the task is:

- sudoku: digits; givens black, filled cells green, wrong cells red;
- mazes: walls dark, the path marked, path cells missing or wrong in red;
- other grids (ARC): the colour palette, wrong cells crossed, the target beside;
- sequences (parity) and text: token strips, wrong tokens red.

The column where inference stopped has a blue frame and says why. ``step_counts`` gives
the per-step numbers ``jobs/evaluate.py --trace`` prints. No Ray, no MLflow.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from refiner.augment.batch import task_kind
from refiner.config.experiment import ExperimentConfig
from refiner.data.batches import batch_from_table
from refiner.data.tokenizers import NUM_SPECIAL, PAD
from refiner.infer.halting import STOP_REASON_WORDS
from refiner.model.puzzles import BATCH_KEY
from refiner.runs.tracker import RunTracker
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

PICTURE_ROWS = 4  # held-out examples drawn at each validation checkpoint
ARTIFACT_DIR = "canvas"  # canvas/update_NNNNNN/canvas.png in the run
ARC_COLOURS = np.array(
    [
        [0, 0, 0], [0, 116, 217], [255, 65, 54], [46, 204, 64], [255, 220, 0],
        [170, 170, 170], [240, 18, 190], [255, 133, 27], [127, 219, 255], [135, 12, 37],
    ],
    dtype=float,
) / 255  # fmt: skip
RIGHT, WRONG, GIVEN, EMPTY = "#d8f5d0", "#f8c8c8", "#ffffff", "#eeeeee"
MAZE_WALL, MAZE_OPEN, MAZE_PATH, MAZE_END = "#333333", "#ffffff", "#2e8b57", "#1f5fbf"


@dataclass
class CanvasTrace:
    """Canvases of a few rows after every step, and where inference stopped them."""

    kind: str  # refiner.augment.batch.task_kind: sudoku, grid (maze, ARC), parity, ...
    source: str
    inputs: np.ndarray  # [B, L] token ids
    targets: np.ndarray  # [B, L]
    canvases: np.ndarray  # [T, B, L]: after step t+1, to the step limit
    steps_taken: list[int]  # with the model's stopping settings
    reasons: list[str]
    shapes: list[tuple[int, int] | None]  # (height, width) of grid rows

    @property
    def steps(self) -> int:
        return int(self.canvases.shape[0])


@torch.no_grad()
def trace_canvases(
    orchestrator: UnifiedRefinerOrchestrator,
    rows: pa.Table,
    seq_len: int,
    max_steps: int | None = None,
) -> CanvasTrace:
    """Run inference on ``rows`` (held-out tasks) and keep every step's canvas."""
    batch = batch_from_table(rows, seq_len, orchestrator.device, orchestrator.puzzle_index)
    types = rows.column("task_type").to_pylist()
    sources = rows.column("source").to_pylist()
    task_type = types[0]
    puzzle_ids = batch.get(BATCH_KEY)
    limit = max_steps or orchestrator.config.max_steps_infer
    full = orchestrator.inference(
        batch["input"],
        return_traces=True,
        max_steps_override=limit,
        early_stopping=False,
        task_type=task_type,
        puzzle_ids=puzzle_ids,
    )
    stopped = orchestrator.inference(
        batch["input"], max_steps_override=max_steps, task_type=task_type, puzzle_ids=puzzle_ids
    )
    heights, widths = rows.column("height").to_pylist(), rows.column("width").to_pylist()
    return CanvasTrace(
        kind=task_kind(task_type, sources[0]),
        source=sources[0],
        inputs=batch["input"].cpu().numpy(),
        targets=batch["target"].cpu().numpy(),
        canvases=np.array([step["canvas"] for step in full["traces"]]),
        steps_taken=list(stopped["steps_taken"]),
        reasons=list(stopped["stopping_reason"]),
        shapes=[(h, w) if h and w else None for h, w in zip(heights, widths, strict=True)],
    )


def step_counts(trace: CanvasTrace) -> list[tuple[float, float, float]]:
    """Per step: (cells to fill that are right, wrong cells per row, exact).

    Cells to fill are the positions whose target differs from the input (a sudoku's
    blanks, a maze's path); a wrong cell differs from both the input and the target."""
    inputs, target = trace.inputs, trace.targets
    to_fill = target != inputs
    out = []
    for canvas in trace.canvases:
        right = (canvas == target) & to_fill
        wrong = (canvas != target) & (canvas != inputs)
        out.append(
            (
                right.sum() / max(1, to_fill.sum()),
                wrong.sum() / len(canvas),
                float((canvas == target).all(1).mean()),
            )
        )
    return [(float(a), float(b), float(c)) for a, b, c in out]


def describe_step_counts(trace: CanvasTrace) -> str:
    lines = ["  step  to fill, right  wrong cells/row  exact"]
    for t, (right, wrong, exact) in enumerate(step_counts(trace), 1):
        lines.append(f"  {t:4d}  {right:14.1%}  {wrong:15.2f}  {exact:5.1%}")
    return "\n".join(lines)


def draw_canvas_trace(trace: CanvasTrace, path: str | Path, title: str = "") -> Path:
    """One row per example, one column per step (+ the target for colour grids).

    Drawn as one image (panels side by side, one cell apart) with text only where the
    kind needs it: a figure of many small axes takes seconds per checkpoint."""
    shown = shown_steps(trace)
    with_target = trace.kind == "grid" and trace.source != "maze"
    panels = [
        [_panel(trace, r, trace.canvases[t - 1, r]) for t in shown]
        for r in range(len(trace.inputs))
    ]
    if with_target:
        for r, row in enumerate(panels):
            row.append(_panel(trace, r, trace.targets[r], target=True))
    ph = max(p[0].shape[0] for row in panels for p in row)
    pw = max(p[0].shape[1] for row in panels for p in row)
    gap_x, gap_y = 1, 2  # cells between panels; room for the stopping note
    image = np.ones(((ph + gap_y) * len(panels), (pw + gap_x) * len(panels[0]), 3))
    fig = Figure(figsize=(min(24, 0.9 + 0.16 * image.shape[1] * (1 if ph > 1 else 1.4)),
                          0.9 + 0.16 * image.shape[0] * (1 if ph > 1 else 2.2)), dpi=100)  # fmt: skip
    ax = fig.add_subplot()
    labels: list[tuple[float, float, str, str]] = []
    for r, row in enumerate(panels):
        for c, (rgb, cell_labels) in enumerate(row):
            y0, x0 = r * (ph + gap_y) + 1, c * (pw + gap_x)
            image[y0 : y0 + rgb.shape[0], x0 : x0 + rgb.shape[1]] = rgb
            labels += [(x0 + j, y0 + i, text, colour) for i, j, text, colour in cell_labels]
    ax.imshow(image, interpolation="nearest", aspect="auto")
    size = 7.0 if ph == 1 else max(4.0, min(9.0, 60 / max(pw, ph)))
    for x, y, text, colour in labels:
        ax.text(x, y, text, ha="center", va="center", fontsize=size, color=colour)
    for c, t in enumerate(shown):
        ax.text(c * (pw + gap_x) + pw / 2 - 0.5, -0.2, f"step {t}", ha="center", fontsize=8)
    if with_target:
        ax.text(len(shown) * (pw + gap_x) + pw / 2 - 0.5, -0.2, "target", ha="center", fontsize=8)
    for r, stop in enumerate(trace.steps_taken):
        if stop not in shown:
            continue
        c = shown.index(stop)
        y0, x0 = r * (ph + gap_y) + 1, c * (pw + gap_x)
        ax.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), pw, ph, fill=False, edgecolor="#1f5fbf", lw=2.5)
        )
        reason = STOP_REASON_WORDS.get(trace.reasons[r], trace.reasons[r])
        ax.text(x0 - 0.4, y0 + ph + 0.1, f"stopped at step {stop}: {reason}", fontsize=7,
                va="top", color="#1f5fbf")  # fmt: skip
    ax.set_axis_off()
    ax.set_title(title or f"{trace.source}: the canvas after each refinement step", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))
    return path


MAX_COLUMNS = 8


def shown_steps(trace: CanvasTrace) -> list[int]:
    """The steps drawn: all of them up to MAX_COLUMNS, else evenly spaced ones with the
    first, the last and every step where an example stopped."""
    if trace.steps <= MAX_COLUMNS:
        return list(range(1, trace.steps + 1))
    even = np.linspace(1, trace.steps, MAX_COLUMNS - len(set(trace.steps_taken))).round()
    return sorted({*map(int, even), *trace.steps_taken})


def log_canvas_pictures(
    orchestrator: UnifiedRefinerOrchestrator,
    rows: pa.Table | None,
    config: ExperimentConfig,
    tracker: RunTracker,
    step: int,
) -> float:
    """At a validation checkpoint: draw ``rows``, log the PNG under canvas/update_N and
    the seconds it took (metric ``canvas_pictures_s``); returns those seconds."""
    if rows is None or rows.num_rows == 0:
        return 0.0
    started = time.perf_counter()
    trace = trace_canvases(orchestrator, rows, config.model.seq_len)
    with tempfile.TemporaryDirectory(prefix="refiner-canvas-") as directory:
        png = draw_canvas_trace(
            trace, Path(directory) / "canvas.png", f"{trace.source}, update {step}"
        )
        tracker.log_artifact(str(png), f"{ARTIFACT_DIR}/update_{step:06d}")
    seconds = time.perf_counter() - started
    tracker.log_metrics({"canvas_pictures_s": seconds}, step)
    return seconds


def picture_rows(held_out: pa.Table, count: int = PICTURE_ROWS) -> pa.Table | None:
    """The fixed held-out rows a run draws at every checkpoint: the first ``count`` of
    the most common task type (one type per picture)."""
    if held_out.num_rows == 0:
        return None
    types = held_out.column("task_type").to_pylist()
    common = max(set(types), key=types.count)
    keep = [i for i, t in enumerate(types) if t == common][:count]
    return held_out.take(keep)


Label = tuple[int, int, str, str]  # row, column, text, colour within one panel


def _panel(
    trace: CanvasTrace, r: int, canvas: np.ndarray, target: bool = False
) -> tuple[np.ndarray, list[Label]]:
    """One canvas as an RGB cell image [h, w, 3] and the text to write on its cells."""
    shape = trace.shapes[r]
    if shape is None:
        return _strip(trace, r, canvas)
    if trace.kind == "sudoku":
        return _sudoku(trace, r, canvas, shape)
    if trace.source == "maze":
        return _maze(trace, r, canvas, shape), []
    return _colours(trace, r, canvas, shape, target)


def _length(trace: CanvasTrace, r: int) -> int:
    nonpad = np.flatnonzero((trace.inputs[r] != PAD) | (trace.targets[r] != PAD))
    return int(nonpad[-1] + 1) if len(nonpad) else trace.inputs.shape[1]


def _cells(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return values[: h * w].reshape(h, w)


def _symbol(token: int) -> str:
    return "" if token < NUM_SPECIAL else str(token - NUM_SPECIAL)


def _sudoku(trace: CanvasTrace, r: int, canvas: np.ndarray, shape: tuple[int, int]):  # noqa: ANN202
    given = _cells(trace.inputs[r], shape)
    target, drawn = _cells(trace.targets[r], shape), _cells(canvas, shape)
    is_given = given == target  # a clue: the input already holds the answer there
    right = drawn == target
    fill = np.where(right & is_given, 0, np.where(right, 1, 2))  # given, filled, wrong
    rgb = np.stack([_rgb(GIVEN), _rgb(RIGHT), _rgb(WRONG)])[fill]
    ink = ("black", "#1a7f37", "#c0392b")
    labels = [(i, j, _symbol(int(drawn[i, j])), ink[fill[i, j]]) for i, j in np.ndindex(*shape)]
    return rgb, labels


def _maze(trace: CanvasTrace, r: int, canvas: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Symbols: open 0, wall 1, S 2, G 3, path 4 (refiner.tasks.sources.maze)."""
    source, target, drawn = (_cells(a, shape) - NUM_SPECIAL for a in
                             (trace.inputs[r], trace.targets[r], canvas))  # fmt: skip
    image = np.ones((*shape, 3))
    for symbol, colour in {2: MAZE_END, 3: MAZE_END, 4: MAZE_PATH}.items():
        image[drawn == symbol] = _rgb(colour)
    image[source == 1] = _rgb(MAZE_WALL)
    image[(drawn != target) & (source != 1)] = _rgb("#e74c3c")  # missing or wrong path
    return image


def _colours(trace: CanvasTrace, r: int, canvas: np.ndarray, shape: tuple[int, int], target: bool):  # noqa: ANN202
    drawn = _cells(canvas, shape)
    rgb = ARC_COLOURS[np.clip(drawn - NUM_SPECIAL, 0, len(ARC_COLOURS) - 1)]
    if target:
        return rgb, []
    wrong = np.argwhere(drawn != _cells(trace.targets[r], shape))
    return rgb, [(int(i), int(j), "x", "white") for i, j in wrong]


def _strip(trace: CanvasTrace, r: int, canvas: np.ndarray):  # noqa: ANN202
    n = _length(trace, r)
    right = canvas[:n] == trace.targets[r][:n]
    rgb = np.where(right[None, :, None], _rgb(RIGHT), _rgb(WRONG))
    text = trace.kind == "text"
    labels = [
        (0, i, _char(int(canvas[i])) if text else _symbol(int(canvas[i])), "black")
        for i in range(n)
    ]
    return rgb, labels


def _char(token: int) -> str:
    """A byte as a printable character; others (and special tokens) as a dot."""
    byte = token - NUM_SPECIAL
    return chr(byte) if 32 < byte < 127 else "·" if byte >= 0 else ""


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
