"""bench/gpu_agreement.py's comparison of two inference runs on the same rows (issue 30):
which rows differ, by how many steps, and where the two first part (the step, the cell
and both top-2 logit margins there). Pure functions on made-up runs: no model, fast."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_agreement  # noqa: E402

from refiner.tasks.schema import TASK_SCHEMA  # noqa: E402

TARGETS = [[5, 6, 5], [6, 5, 6], [5, 5, 5]]


def _run(canvases, steps, margins):
    """A run as infer_rows returns it; the trace's canvas at every step is the final one
    except where `margins` gives an earlier canvas."""
    trace = []
    for canvas, n, row in zip(canvases, steps, margins, strict=True):
        trace.append(
            [(row.get(t, (canvas, None))[0], row.get(t, (None, [0.5] * 3))[1]) for t in range(n)]
        )
    exact = np.array([c == t for c, t in zip(canvases, TARGETS, strict=True)])
    return {"canvases": canvases, "steps": steps, "trace": trace, "exact": exact}


def _table():
    n = len(TARGETS)
    return pa.table(
        {
            "task_id": [str(i) for i in range(n)],
            "task_type": ["grid"] * n,
            "source": ["sudoku"] * n,
            "group_id": [str(i) for i in range(n)],
            "split": ["test"] * n,
            "input": [[0, 0, 0]] * n,
            "target": TARGETS,
            "height": [1] * n,
            "width": [3] * n,
            "num_symbols": [3] * n,
        },
        schema=TASK_SCHEMA,
    )


def test_rows_that_differ_and_where_they_first_part():
    # row 0 agrees; row 1: compiled flips cell 2 at step 2 (a near tie, margin 0.01) and
    # ends wrong; row 2: same canvas, but compiled stops one step later
    eager = _run(
        [[5, 6, 5], [6, 5, 6], [5, 5, 5]],
        [2, 2, 2],
        [{}, {0: ([6, 5, 6], [1.0] * 3), 1: ([6, 5, 6], [2.0, 2.0, 0.01])}, {}],
    )
    compiled = _run(
        [[5, 6, 5], [6, 5, 5], [5, 5, 5]],
        [2, 2, 3],
        [{}, {0: ([6, 5, 6], [1.0] * 3), 1: ([6, 5, 5], [2.0, 2.0, 0.02])}, {}],
    )
    report = gpu_agreement.compare(eager, compiled, _table())
    assert report["exact_eager"] == 1.0 and report["exact_compiled"] == 2 / 3
    assert report["rows_exact_differs"] == 1 and report["rows_right_only_eager"] == 1
    assert report["rows_canvas_differs"] == 1 and report["rows_steps_differ"] == 1
    assert report["step_differences"] == {"1": 1}
    flipped, later = report["differing_rows"]
    assert (flipped["row"], flipped["step"], flipped["cell"]) == (1, 2, 2)
    assert (flipped["margin_eager"], flipped["margin_compiled"]) == (0.01, 0.02)
    assert later["row"] == 2 and later["stopping_only"] and later["step"] == 3
    assert report["median_margin_where_they_part"] == 0.01
