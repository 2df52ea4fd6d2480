"""Benchmark (issue 14): how the calibration's selection rule carries over to new rows.

One calibration on one small held-out set says little: whether the chosen settings lose
0.4 or 0.9 points on new puzzles depends on which puzzles happened to be in the set. So
this records one pass over many new puzzles of a trained model's task (a pool, and a
test set kept apart), then draws many calibration sets of --rows puzzles from the pool,
calibrates each with every selection rule and replays the chosen settings on the test
set (the replay reproduces inference's stopping decisions exactly). It prints, per rule,
the loss on the test set (mean, 90th percentile, how often over the bound) and the mean
steps, side by side on the same draws.

    python bench/bench_calibration_selection.py --checkpoint CKPT --rows 200 --draws 100

Rules: "plain" (the fewest steps within the bound on the calibration rows), "margin m"
(stopping.loss_margin_sigmas). A k-fold cross-validated bound was measured with it too
(commit 1da3eac) and dropped: it did worse than the margin on every model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_calibration import load_trained
from harness import parser, write_results

from refiner.checkpoints.files import read_checkpoint
from refiner.checkpoints.restore import evaluation_tasks, local_checkpoint_file
from refiner.config.experiment import ExperimentConfig, calibration_rows
from refiner.data.batches import batch_from_table
from refiner.infer.calibration import StoppingTrace, calibrate, record_pass, simulated_accuracy

RULES = {  # name -> calibrate() keyword arguments
    "plain": {},
    "margin 1": {"margin_sigmas": 1.0},
    "margin 1.64": {"margin_sigmas": 1.64},
    "margin 2.5": {"margin_sigmas": 2.5},
}


def parse_args() -> argparse.Namespace:
    p = parser(__doc__, "calibration_selection_run")
    p.add_argument("--checkpoint", required=True, help="a jobs/train.py checkpoint")
    p.add_argument("--pool", type=int, default=4096, help="new puzzles to draw sets from")
    p.add_argument("--test", type=int, default=4096, help="new puzzles to measure on")
    p.add_argument("--rows", type=int, nargs="+", default=[200], help="calibration set sizes")
    p.add_argument("--draws", type=int, nargs="+", default=[100], help="calibration sets per size")
    p.add_argument("--max-steps", type=int, default=16)
    p.add_argument("--max-accuracy-loss", type=float, default=0.5)
    p.add_argument("--fresh-seed", type=int, default=1, help="seed of the new puzzles")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--views",
        type=int,
        default=1,
        help="also calibrate on this many views of each drawn puzzle (calibration_views)",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.views > 1 and args.pool != args.test:
        raise SystemExit("--views needs --pool equal to --test (the pool is the first half)")
    torch.set_num_threads(args.threads)
    loading = argparse.Namespace(
        checkpoint=args.checkpoint,
        fresh_seed=args.fresh_seed,
        fresh_count=args.pool + args.test,
        max_rows=max(args.pool, args.test),
        val_rows=args.pool,
        calibration_views=1,
        max_steps=args.max_steps,
        max_accuracy_loss=args.max_accuracy_loss,
        margin_sigmas=None,
    )
    o, data, task_type, task, _ = load_trained(loading)
    o.eval()
    start = time.perf_counter()
    pool = record_pass(o, data["val"], args.max_steps, task_type)
    test = record_pass(o, data["test"], args.max_steps, task_type)
    at_limit = float(test.exact[:, -1].mean())
    print(
        f"{args.checkpoint}: {task}, update {o.step_count}; recorded {pool.rows} pool and"
        f" {test.rows} test rows to {args.max_steps} steps in {time.perf_counter() - start:.0f}"
        f" s; test exact at {args.max_steps} steps {at_limit:.2%}; bound"
        f" {args.max_accuracy_loss} points"
    )
    views, puzzle_of_view = (
        record_views(o, args, task_type) if args.views > 1 else (None, np.zeros(0, np.int64))
    )
    rng = np.random.default_rng(0)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for size, draws in zip(args.rows, args.draws * len(args.rows), strict=False):
        rules = [*RULES, *(f"{name}, {args.views} views" for name in VIEW_RULES if views)]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in rules}
        for _ in range(draws):
            rows = rng.choice(pool.rows, size=size, replace=False)
            drawn = {name: _subset(pool, rows) for name in RULES}
            if views is not None:
                of_drawn = np.nonzero(np.isin(puzzle_of_view, rows))[0]
                drawn.update(
                    {f"{n}, {args.views} views": _subset(views, of_drawn) for n in VIEW_RULES}
                )
            for name, trace in drawn.items():
                options = RULES[name.split(",")[0]] if name not in RULES else RULES[name]
                settings = calibrate(trace, args.max_accuracy_loss, args.max_steps, **options)
                accuracy, steps = simulated_accuracy(test, settings.settings)
                results[name].append((100 * (at_limit - accuracy), steps))
        print(
            f"\n{draws} calibration sets of {size} rows: loss on the {test.rows} test rows"
            " (points)",
            flush=True,
        )
        print(f"{'rule':<14} {'mean':>6} {'p90':>6} {'> bound':>8} {'mean steps':>11}")
        for name, values in results.items():
            loss = np.array([v[0] for v in values])
            steps = np.array([v[1] for v in values])
            print(
                f"{name:<14} {loss.mean():>6.2f} {np.quantile(loss, 0.9):>6.2f}"
                f" {(loss > args.max_accuracy_loss + 1e-9).mean():>8.0%} {steps.mean():>11.2f}"
            )
            table.setdefault(f"{draws} sets of {size} rows", {})[name] = {
                "mean_loss_pt": float(loss.mean()),
                "p90_loss_pt": float(np.quantile(loss, 0.9)),
                "over_bound": float((loss > args.max_accuracy_loss + 1e-9).mean()),
                "mean_steps": float(steps.mean()),
            }
    # A run apart from calibration_selection.json: its headline rows combine several runs.
    write_results("calibration_selection_run", out=args.out, results=table)


VIEW_RULES = ("plain", "margin 1")  # also run on the views of the drawn puzzles


def _subset(trace: StoppingTrace, rows: np.ndarray) -> StoppingTrace:
    return StoppingTrace(
        trace.halt_prob[rows], trace.score[rows], trace.canvas_changed[rows], trace.exact[rows]
    )


def record_views(o, args: argparse.Namespace, task_type: str) -> tuple[StoppingTrace, np.ndarray]:
    """A recorded pass over --views views of every pool puzzle, and each view's puzzle (its
    index in the pool, the rows load_trained put first)."""
    path = local_checkpoint_file(args.checkpoint)
    experiment = ExperimentConfig.from_dict(read_checkpoint(path)["extra"]["experiment"])
    experiment.orchestration.stopping.calibration_views = args.views
    tasks = evaluation_tasks(
        path, experiment.task.source, args.pool + args.test, seed=args.fresh_seed
    )
    pool = tasks.slice(0, args.pool)
    position = {task: i for i, task in enumerate(pool.column("task_id").to_pylist())}
    views = calibration_rows(experiment, pool)
    puzzle = np.array([position[t] for t in views.column("task_id").to_pylist()])
    batch = batch_from_table(views, o.core.config.seq_len, puzzles=o.puzzle_index)
    start = time.perf_counter()
    trace = record_pass(o, batch, args.max_steps, task_type)
    print(f"recorded {trace.rows} views in {time.perf_counter() - start:.0f} s")
    return trace, puzzle


if __name__ == "__main__":
    main()
