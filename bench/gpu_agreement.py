"""Compiled vs eager inference on a trained model (issue 30, point 3), one command.

Trains the Sudoku-Extreme GPU recipe's model on puzzles from the built-in 9x9 generator
for a time (or update) budget, then runs infer-few twice on the same held-out rows with
the same weights (the trained orchestrator's state loaded into a fresh eager and a
fresh compiled one) and reports:
- exact-match accuracy of each, and the rows whose exact-match differs (either way);
- the rows whose final canvas differs, and whose stopping step differs (and by how much);
- for each differing row, where the two first part: the step, the cell, and both
  models' top-1 minus top-2 logit margin there (from inference's traces), beside the
  median margin over every cell: a near tie (margin ~ 0) that bf16 rounding of a
  differently fused computation flips is the expected cause on CUDA. On CPU (fp32) the
  two agree exactly (tests/test_fast_path.py).

    PYTHONPATH=platform python3 bench/gpu_agreement.py --budget 120 --out agreement.json  # GPU
    PYTHONPATH=platform python bench/gpu_agreement.py --smoke                            # CPU

The core loop only (torch, numpy, pyarrow, PyYAML; no Ray, MLflow): the package's
training loop (refiner.train.fit), its inference (orchestrator.inference) and its
exact-match rule (refiner.evaluate.voting.exact_rows).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from gpu_field_check import CONFIGS, SMOKE, generated, split
from harness import command_line, parser, write_results

from refiner.config.experiment import (
    ExperimentConfig,
    augmentation_spec,
    build_optimizer,
    build_orchestrator,
    prepare_experiment,
)
from refiner.data.batches import batch_from_table
from refiner.evaluate.voting import exact_rows
from refiner.model.puzzles import BATCH_KEY
from refiner.tasks.schema import describe_tasks
from refiner.train.fit import Update, augmented_batches, fit
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

RECIPE = "sudoku_extreme_gpu.yaml"
# a schedule that fits minutes (as the first GPU session's sudoku run)
SCHEDULE = [
    "training.lr=1e-3",
    "training.warmup_steps=100",
    "training.weight_decay=0.1",
    "training.steps=3000",
]
SHOWN_ROWS = 12  # differing rows printed one per line


def parse_args(argv: list[str] | None = None) -> Any:
    p = parser(__doc__, "gpu_agreement")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds")
    p.add_argument("--updates", type=int, help="train this many updates instead")
    p.add_argument("--count", type=int, default=3000, help="generated 9x9 puzzles (10%% held out)")
    p.add_argument("--rows", type=int, default=1000, help="held-out rows compared (at most)")
    p.add_argument("--aug-per-round", type=int, default=8, help="augmented copies per round")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = 4 if args.smoke else 9
    if args.smoke:
        args.budget, args.count, args.aug_per_round = min(args.budget, 5.0), 200, 2
    overrides = [
        *(SMOKE if args.smoke else []),
        *SCHEDULE,
        f"task.size={size}",
        f"task.count={args.count}",
        f"task.val_max_rows={args.rows}",
        *args.overrides,
    ]
    config, tasks = prepare_experiment(
        CONFIGS / RECIPE, overrides, task=generated(RECIPE, "sudoku")
    )
    train_rows, held_out = split(tasks, config)
    task_type, num_symbols = describe_tasks(tasks)
    print(
        f"device {device}; {train_rows.num_rows} training rows, {held_out.num_rows} held out;"
        + (
            f" training {args.updates} updates"
            if args.updates
            else f" training {args.budget:.0f} s"
        ),
        flush=True,
    )
    trained, seconds = train(config, train_rows, task_type, num_symbols, device, args)
    state = trained.state_dict()
    results: dict[str, Any] = {"device": str(device), "train_s": seconds, "rows": held_out.num_rows}
    runs = {}
    for name, setting in (("eager", "off"), ("compiled", "on")):
        o = fresh(config, task_type, num_symbols, device, setting)
        o.load_state_dict(state)
        runs[name] = infer_rows(o, held_out, config, task_type)
        results[f"{name}_infer_s"] = runs[name]["seconds"]
    results.update(compare(runs["eager"], runs["compiled"], held_out))
    print_report(results)
    write_results(
        "gpu_agreement", out=args.out, results=results, command=command_line(argv), smoke=args.smoke
    )
    return 0


def fresh(
    config: ExperimentConfig, task_type: str, num_symbols: int, device: torch.device, setting: str
) -> UnifiedRefinerOrchestrator:
    """An orchestrator of the config with `training.compile` set to `setting`."""
    config = copy.deepcopy(config)
    config.training.compile = setting  # type: ignore[assignment]
    return build_orchestrator(config, task_type, num_symbols, device)


def train(
    config: ExperimentConfig,
    rows: pa.Table,
    task_type: str,
    num_symbols: int,
    device: torch.device,
    args: Any,
) -> tuple[UnifiedRefinerOrchestrator, float]:
    """The recipe trained for --budget seconds (or --updates), the fast path as on a GPU run."""
    orchestrator = build_orchestrator(config, task_type, num_symbols, device)
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    spec = replace(augmentation_spec(config), count=args.aug_per_round)
    batches = augmented_batches(
        rows, spec, config.seed, config.model.seq_len, config.training.batch_size, device=device
    )
    trained_s = 0.0

    def until_budget(update: Update) -> bool:
        nonlocal trained_s
        trained_s += update.wait_s + update.compute_s
        if update.step % 100 == 0:
            print(f"  update {update.step}: {trained_s:.0f} s", flush=True)
        return not args.updates and trained_s >= args.budget

    fit(
        orchestrator,
        optimizer,
        scheduler,
        batches,
        steps=args.updates or sys.maxsize,
        task_type=task_type,
        on_update=until_budget,
        synchronize=True,
    )
    print(f"trained {orchestrator.step_count} updates in {trained_s:.0f} s", flush=True)
    return orchestrator, trained_s


def infer_rows(
    o: UnifiedRefinerOrchestrator, held_out: pa.Table, config: ExperimentConfig, task_type: str
) -> dict[str, Any]:
    """Infer-few on every held-out row in batches of the training batch size: each row's
    final canvas, stopping step, and per step its canvas and cell margins (None once stopped)."""
    size = config.training.batch_size
    canvases, steps, reasons = [], [], []
    per_row: list[list[tuple[list[int], list[float]]]] = []  # row -> steps -> (canvas, margin)
    seconds = 0.0
    for start in range(0, held_out.num_rows, size):
        part = held_out.slice(start, size)
        batch = batch_from_table(part, config.model.seq_len, o.device, o.puzzle_index)
        mark = time.perf_counter()
        result = o.inference(
            batch["input"], return_traces=True, task_type=task_type, puzzle_ids=batch.get(BATCH_KEY)
        )
        seconds += time.perf_counter() - mark  # traces included: for scale, not speed
        canvases += result["final_canvas_ids"]
        steps += result["steps_taken"]
        reasons += result["stopping_reason"]
        rows: list[list[tuple[list[int], list[float]]]] = [[] for _ in range(part.num_rows)]
        for step in result["traces"]:
            for r, canvas, margin in zip(
                step["rows"], step["canvas"], step["logit_margin"], strict=True
            ):
                rows[r].append((canvas, margin))
        per_row += rows
    exact = exact_rows(held_out, np.asarray(canvases))
    return {
        "canvases": canvases,
        "steps": steps,
        "reasons": reasons,
        "trace": per_row,
        "exact": exact,
        "seconds": round(seconds, 3),
    }


def compare(eager: dict[str, Any], compiled: dict[str, Any], held_out: pa.Table) -> dict[str, Any]:
    """Agreement figures and, per differing row, where eager and compiled first part."""
    n = held_out.num_rows
    exact_e, exact_c = eager["exact"], compiled["exact"]
    step_diff = [c - e for e, c in zip(eager["steps"], compiled["steps"], strict=True)]
    differing = [
        r for r in range(n) if eager["canvases"][r] != compiled["canvases"][r] or step_diff[r] != 0
    ]
    parts = [first_difference(r, eager["trace"][r], compiled["trace"][r]) for r in differing]
    for part, r in zip(parts, differing, strict=True):
        part.update(
            row=r,
            exact_eager=bool(exact_e[r]),
            exact_compiled=bool(exact_c[r]),
            steps_eager=eager["steps"][r],
            steps_compiled=compiled["steps"][r],
        )
    all_margins = [m for row in eager["trace"] for _, margins in row for m in margins]
    at_split = [p["margin_eager"] for p in parts if "margin_eager" in p]
    return {
        "exact_eager": float(exact_e.mean()),
        "exact_compiled": float(exact_c.mean()),
        "rows_exact_differs": int((exact_e != exact_c).sum()),
        "rows_right_only_eager": int((exact_e & ~exact_c).sum()),
        "rows_right_only_compiled": int((exact_c & ~exact_e).sum()),
        "rows_canvas_differs": sum(
            eager["canvases"][r] != compiled["canvases"][r] for r in range(n)
        ),
        "rows_steps_differ": sum(d != 0 for d in step_diff),
        "step_differences": {str(d): step_diff.count(d) for d in sorted(set(step_diff)) if d},
        "median_margin_all_cells": statistics.median(all_margins) if all_margins else None,
        "median_margin_where_they_part": statistics.median(at_split) if at_split else None,
        "max_margin_where_they_part": max(at_split) if at_split else None,
        "differing_rows": parts,
    }


def first_difference(
    row: int,
    eager: list[tuple[list[int], list[float]]],
    compiled: list[tuple[list[int], list[float]]],
) -> dict[str, Any]:
    """The first step both ran where their canvases differ, its first differing cell and
    both margins there; else the step where one stopped and the other went on."""
    for t, ((canvas_e, margin_e), (canvas_c, margin_c)) in enumerate(
        zip(eager, compiled, strict=False)
    ):
        if canvas_e != canvas_c:
            cell = next(
                i for i, (a, b) in enumerate(zip(canvas_e, canvas_c, strict=True)) if a != b
            )
            return {
                "step": t + 1,
                "cell": cell,
                "margin_eager": round(margin_e[cell], 5),
                "margin_compiled": round(margin_c[cell], 5),
            }
    return {"step": min(len(eager), len(compiled)) + 1, "cell": None, "stopping_only": True}


def print_report(r: dict[str, Any]) -> None:
    n = r["rows"]
    print(f"\nagreement on {n} held-out rows after {r['train_s']:.0f} s of training:")
    print(f"  exact: eager {r['exact_eager']:.2%}, compiled {r['exact_compiled']:.2%}")
    print(
        f"  rows whose exact-match differs: {r['rows_exact_differs']} (right only eager"
        f" {r['rows_right_only_eager']}, only compiled {r['rows_right_only_compiled']})"
    )
    print(f"  rows whose final canvas differs: {r['rows_canvas_differs']}")
    print(
        f"  rows whose stopping step differs: {r['rows_steps_differ']}"
        f" (compiled - eager: count) {r['step_differences']}"
    )
    print(
        f"  top-2 logit margin: median over all cells {r['median_margin_all_cells']}, where"
        f" they part median {r['median_margin_where_they_part']}, max {r['max_margin_where_they_part']}"
    )
    for part in r["differing_rows"][:SHOWN_ROWS]:
        print(f"    {part}")
    print(
        f"  inference s (with traces): eager {r['eager_infer_s']}, compiled {r['compiled_infer_s']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
