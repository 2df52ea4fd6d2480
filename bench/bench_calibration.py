"""Benchmark (issue 14): halting calibrated on held-out data vs fixed stopping settings.

Trains a small refiner on this CPU for a fixed time budget (built-in sudoku or parity),
calibrates the stopping settings on the validation split (one recorded pass, then the
search of refiner.infer.calibration) and measures on the test split, which calibration never
saw: always running the step limit, the config defaults, and the calibrated settings
(real inference with batch compaction: sample-steps, wall time, exact match). A second
table replays more fixed settings on the recorded test pass (the simulator reproduces
inference's stopping decisions exactly), e.g. score vs canvas patience.

    python bench/bench_calibration.py --task sudoku --size 4 --time-budget 90
    python bench/bench_calibration.py --task sudoku --size 6 --time-budget 600 --d-model 128
    python bench/bench_calibration.py --task parity --size 16 --window 4

With --checkpoint the model is one ``jobs/train.py`` trained (the recipe's model, e.g.
``python jobs/train.py --task sudoku``) and the rows are that run's task: calibrated on
its val split, measured on its test split (a task with one held-out split, e.g. parity's
val or the built-in sudoku's test, has it halved: the first half calibrates, the second
half measures; training's own calibration is dropped, it saw all of them). --tracking-uri/--experiment log
the calibration (settings, frontier table and plot) and the test results as an MLflow run.

    python bench/bench_calibration.py --checkpoint outputs/ray_results/RUN/checkpoint_000005 \\
        --max-steps 16 --tracking-uri sqlite:///bench.db --experiment bench-calibration
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import torch
from harness import parser, write_results

from refiner.checkpoints.files import read_checkpoint
from refiner.checkpoints.restore import evaluation_tasks, local_checkpoint_file
from refiner.config.experiment import ExperimentConfig, calibration_rows
from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.batches import batch_from_table, iterate_batches
from refiner.infer.calibration import (
    CalibrationResult,
    StoppingSettings,
    calibrate_orchestrator,
    plot_frontier,
    record_pass,
    simulated_accuracy,
)
from refiner.infer.calibration_log import log_calibration
from refiner.model.network import RefinerModel
from refiner.model.puzzles import BATCH_KEY as PUZZLE_KEY
from refiner.tasks.schema import describe_tasks
from refiner.tasks.sources import parity, sudoku
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = parser(
        __doc__,
        "calibration_<task><size>",
        "results file (default: bench/results/calibration_"
        "<task><size>.json, or _<run> of a --checkpoint; rows of the headline table are "
        "composites of several runs, kept by hand in calibration_sudoku6.json and "
        "calibration_selection.json)",
    )
    p.add_argument("--task", choices=["sudoku", "parity"], default="sudoku")
    p.add_argument("--size", type=int, default=4, help="sudoku side or parity length")
    p.add_argument("--count", type=int, default=2000, help="distinct tasks generated")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--window", type=int, default=0, help="local attention radius (0: global)")
    p.add_argument("--train-steps", type=int, default=8, help="refinement steps in training")
    p.add_argument("--max-steps", type=int, default=16, help="the user's inference step limit")
    p.add_argument("--halting-weight", type=float, default=None, help="default: the config's")
    p.add_argument("--max-accuracy-loss", type=float, default=0.5, help="accuracy points")
    p.add_argument(
        "--margin-sigmas",
        type=float,
        default=None,
        help="stopping.loss_margin_sigmas (default: the config's)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--time-budget", type=float, default=90.0, help="seconds of training")
    p.add_argument("--updates", type=int, default=0, help="stop after this many (0: time only)")
    p.add_argument("--rounds", type=int, default=3, help="timed inference rounds (median)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(HERE / "artifacts" / "calibration"))
    p.add_argument("--checkpoint", help="a jobs/train.py checkpoint (skips training)")
    p.add_argument("--max-rows", type=int, default=4096, help="--checkpoint: rows per split")
    p.add_argument("--tracking-uri", help="--checkpoint: log the result to this MLflow store")
    p.add_argument("--experiment", default="bench-calibration")
    p.add_argument(
        "--fresh-seed",
        type=int,
        help="--checkpoint: held-out rows from the task's source with this seed instead of the"
        " run's own (all rows, halved into val and test; for sources with far more puzzles"
        " than the run drew, e.g. sudoku 6x6, where the run's test split is small)",
    )
    p.add_argument("--fresh-count", type=int, default=2000, help="rows drawn with --fresh-seed")
    p.add_argument(
        "--val-rows", type=int, help="--checkpoint: calibrate on at most this many val rows"
    )
    p.add_argument(
        "--calibration-views",
        type=int,
        default=1,
        help="--checkpoint: calibrate on each val row in this many augmented views (the"
        " run's label-consistent augmentation), more rows without more held-out puzzles",
    )
    return p.parse_args()


def make_splits(args: argparse.Namespace) -> dict[str, dict[str, torch.Tensor]]:
    if args.task == "sudoku":
        table = sudoku.generate(
            args.count, size=args.size, seed=args.seed, test_fraction=0.2, val_fraction=0.2
        )
        seq_len = args.size * args.size
        return {
            split: batch_from_table(table.filter(pc.equal(table["split"], split)), seq_len)
            for split in ("train", "val", "test")
        }
    # parity has one held-out split: its first half calibrates, the second half measures
    table = parity.generate(args.count, size=args.size, seed=args.seed, val_fraction=0.4)
    held_out = batch_from_table(table.filter(pc.equal(table["split"], "val")), args.size)
    half = held_out["input"].shape[0] // 2
    return {
        "train": batch_from_table(table.filter(pc.equal(table["split"], "train")), args.size),
        "val": {k: v[:half] for k, v in held_out.items()},
        "test": {k: v[half:] for k, v in held_out.items()},
    }


def stopping_overrides(args: argparse.Namespace) -> dict[str, float]:
    out = {"max_accuracy_loss": args.max_accuracy_loss}
    if args.margin_sigmas is not None:
        out["loss_margin_sigmas"] = args.margin_sigmas
    return out


def load_trained(
    args: argparse.Namespace,
) -> tuple[
    UnifiedRefinerOrchestrator,
    dict[str, dict[str, torch.Tensor]],
    str,
    str,
    CalibrationResult | None,
]:
    """(orchestrator, {"val", "test"} batches, task type, task source, the calibration
    training stored) of a jobs/train.py checkpoint; inference may run up to --max-steps
    (past the trained unroll)."""
    path = local_checkpoint_file(args.checkpoint)
    source = read_checkpoint(path)["extra"]["experiment"]["task"]["source"]
    fresh = args.fresh_seed is not None
    tasks = (
        evaluation_tasks(path, source, args.fresh_count, seed=args.fresh_seed)
        if fresh
        else evaluation_tasks(path, source)
    )
    task_type, num_symbols = describe_tasks(tasks)
    o = UnifiedRefinerOrchestrator.from_checkpoint(
        path, task_type=task_type, num_symbols=num_symbols
    )
    stored = o.calibration  # training's own choice, measured on its own row below
    o.calibration = None  # "config defaults" must mean the config's, not training's choice
    config = o.config.to_dict()
    config["max_steps_train"] = max(config["max_steps_train"], args.max_steps)
    config["max_steps_infer"] = args.max_steps
    config["stopping"] = {**config["stopping"], **stopping_overrides(args)}
    o.config = OrchestrationConfig.from_dict(config)

    def rows(table: pa.Table) -> dict[str, torch.Tensor]:
        return batch_from_table(table, o.core.config.seq_len, puzzles=o.puzzle_index)

    splits = set(tasks.column("split").to_pylist())
    if {"val", "test"} <= splits and not fresh:
        val, test = (tasks.filter(pc.equal(tasks["split"], s)) for s in ("val", "test"))
    else:  # one held-out set: its first half calibrates, the second half measures
        held_out = (
            tasks
            if fresh
            else tasks.filter(pc.equal(tasks["split"], "val" if "val" in splits else "test"))
        )
        held_out = held_out.slice(0, 2 * args.max_rows)
        half = held_out.num_rows // 2
        val, test = held_out.slice(0, half), held_out.slice(half)
    val = val.slice(0, args.val_rows or args.max_rows)
    if args.calibration_views > 1:
        experiment = ExperimentConfig.from_dict(read_checkpoint(path)["extra"]["experiment"])
        experiment.orchestration.stopping.calibration_views = args.calibration_views
        val = calibration_rows(experiment, val)
    data = {"val": rows(val), "test": rows(test.slice(0, args.max_rows))}
    return o, data, task_type, source, stored


def build(args: argparse.Namespace, seq_len: int) -> UnifiedRefinerOrchestrator:
    model_config = ModelConfig(
        seq_len=seq_len,
        d_model=args.d_model,
        n_heads=4,
        n_layers=args.n_layers,
        latent_cycles=1,
        mlp_ratio=2.0,
        attention_window=args.window or None,
        positional="learned",
    )
    weights = {"schedule": "uniform"}
    if args.halting_weight is not None:
        weights["halting"] = args.halting_weight
    config = OrchestrationConfig.from_dict(
        {
            "max_steps_train": args.max_steps,  # >= max_steps_infer; training unrolls fewer
            "max_steps_infer": args.max_steps,
            "step_loss_weights": weights,
            "stopping": stopping_overrides(args),
            "seed": args.seed,
        }
    )
    return UnifiedRefinerOrchestrator(RefinerModel(model_config), config=config)


def train(o: UnifiedRefinerOrchestrator, data: dict, args: argparse.Namespace) -> int:
    # train_step unrolls config.max_steps_train: train on args.train_steps, infer up to max
    train_config = o.config
    o.config = OrchestrationConfig.from_dict(
        {**train_config.to_dict(), "max_steps_train": args.train_steps, "max_steps_infer": 1}
    )
    optimizer = make_optimizer(o.model, lr=args.lr, weight_decay=0.1)
    scheduler = warmup_cosine(optimizer, 50, int(args.time_budget / 0.05))
    start, epoch, updates = time.perf_counter(), 0, 0

    def done() -> bool:
        over_time = time.perf_counter() - start >= args.time_budget
        return over_time or 0 < args.updates <= updates

    while not done():
        for batch in iterate_batches(data, args.batch_size, seed=args.seed * 1000 + epoch):
            o.train_step(batch, optimizer, lr_scheduler=scheduler)
            updates += 1
            if done():
                break
        epoch += 1
    o.config = train_config
    return updates


def measure(o: UnifiedRefinerOrchestrator, batch: dict, early: bool, rounds: int) -> dict:
    seconds = []
    extra = {k: batch[k] for k in (PUZZLE_KEY,) if k in batch}  # a conditioned model's ids
    for _ in range(rounds):
        start = time.perf_counter()
        r = o.inference(batch["input"], early_stopping=early, **extra)
        seconds.append(time.perf_counter() - start)
    exact = (torch.tensor(r["final_canvas_ids"]) == batch["target"]).all(-1).float().mean()
    return {
        "mean_steps": r["mean_steps"],
        "sample_steps": r["sample_steps"],
        "exact": exact.item(),
        "seconds": statistics.median(seconds),
        "reasons": r["stopping_reason_counts"],
        "origin": r["stopping"]["origin"],
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    task_type = "sequence"
    stored = None
    if args.checkpoint:
        o, data, task_type, args.task, stored = load_trained(args)
        o.eval()
        rows = {k: v["input"].shape[0] for k, v in data.items()}
        print(
            f"{args.checkpoint}: {args.task} ({task_type}), update {o.step_count}; {rows}; "
            f"{o.core.num_parameters():,} parameters; infer up to {args.max_steps}; "
            f"threads {args.threads}"
        )
    else:
        data = make_splits(args)
        seq_len = data["train"]["input"].shape[1]
        o = build(args, seq_len)
        rows = {k: v["input"].shape[0] for k, v in data.items()}
        print(
            f"{args.task} size {args.size}: {rows}; {o.core.num_parameters():,} parameters; "
            f"train {args.train_steps} steps, infer up to {args.max_steps}; "
            f"halting weight {o.config.step_loss_weights.halting}; threads {args.threads}"
        )
        start = time.perf_counter()
        updates = train(o, data["train"], args)
        o.eval()
        print(f"trained {updates} updates in {time.perf_counter() - start:.0f} s")

    full = measure(o, data["test"], early=False, rounds=args.rounds)
    defaults = measure(o, data["test"], early=True, rounds=args.rounds)
    measured = {f"always {args.max_steps} steps": full, "config defaults": defaults}
    if stored is not None:  # what the trained checkpoint infers with, as shipped
        o.calibration = stored
        measured[f"stored by training ({stored.rows} rows)"] = measure(
            o, data["test"], early=True, rounds=args.rounds
        )
        o.calibration = None
        print(f"stored by training: {stored.summary()}")
    start = time.perf_counter()
    result = calibrate_orchestrator(o, data["val"], task_type)
    calibration_seconds = time.perf_counter() - start
    calibrated = measure(o, data["test"], early=True, rounds=args.rounds)
    print(f"calibration on val ({calibration_seconds:.1f} s): {result.summary()}")

    print(
        f"\ntest split ({rows['test']} rows)\n{'stopping':<34} {'mean steps':>10} "
        f"{'exact':>8} {'loss pts':>8} {'wall s':>8}  reasons"
    )
    measured["calibrated on val"] = calibrated
    for name, m in measured.items():
        loss = 100 * (full["exact"] - m["exact"])
        print(
            f"{name:<34} {m['mean_steps']:>10.2f} {m['exact']:>8.2%} {loss:>8.2f} "
            f"{m['seconds']:>8.3f}  {m['reasons']}"
        )
    print(
        f"calibrated vs always {args.max_steps}: "
        f"{full['sample_steps'] / calibrated['sample_steps']:.2f}x fewer sample-steps, "
        f"{full['seconds'] / calibrated['seconds']:.2f}x less wall time, "
        f"{100 * (full['exact'] - calibrated['exact']):+.2f} points lost "
        f"(bound {args.max_accuracy_loss}); defaults lose "
        f"{100 * (full['exact'] - defaults['exact']):+.2f} points"
    )

    # More fixed settings, replayed on a recorded pass over the test rows.
    trace = record_pass(o, data["test"], args.max_steps, task_type)
    at_limit = float(trace.exact[:, -1].mean())
    d = o.config.stopping
    replay = {
        "config defaults: " + StoppingSettings.from_config(d, args.max_steps).describe(): (
            StoppingSettings.from_config(d, args.max_steps)
        ),
        "defaults, patience on score": StoppingSettings(
            d.act_threshold, d.quality_threshold, d.patience, "score", args.max_steps
        ),
        "defaults, patience on canvas": StoppingSettings(
            d.act_threshold, d.quality_threshold, d.patience, "canvas", args.max_steps
        ),
        "defaults, no patience": StoppingSettings(
            d.act_threshold, d.quality_threshold, None, "score", args.max_steps
        ),
        "ACT 0.9, no patience": StoppingSettings(0.9, None, None, "score", args.max_steps),
        "ACT 0.99, no patience": StoppingSettings(0.99, None, None, "score", args.max_steps),
        "patience 3 on score only": StoppingSettings(None, None, 3, "score", args.max_steps),
        "patience 3 on canvas only": StoppingSettings(None, None, 3, "canvas", args.max_steps),
        "patience 1 on canvas only": StoppingSettings(None, None, 1, "canvas", args.max_steps),
        "ACT 0.99, patience 3 on score": StoppingSettings(0.99, None, 3, "score", args.max_steps),
        "ACT 0.99, patience 3 on canvas": StoppingSettings(0.99, None, 3, "canvas", args.max_steps),
        "calibrated: " + result.settings.describe(): result.settings,
    }
    print(f"\nreplayed on the recorded test pass (exact at {args.max_steps} steps {at_limit:.2%})")
    print(f"{'stopping':<72} {'mean steps':>10} {'exact':>8} {'loss pts':>8}")
    for name, settings in replay.items():
        acc, steps = simulated_accuracy(trace, settings)
        print(f"{name:<72} {steps:>10.2f} {acc:>8.2%} {100 * (at_limit - acc):>8.2f}")
    print("acc@t on test: " + " ".join(f"{a:.3f}" for a in trace.accuracy_at()))

    out = Path(args.out_dir)
    name = Path(args.checkpoint).parent.name if args.checkpoint else f"{args.task}{args.size}"
    plot = plot_frontier(result, out / f"frontier_{name}.png")
    print(f"frontier plot: {plot}")
    if args.tracking_uri:
        log_to_mlflow(args, result, {"full": full, "defaults": defaults, "calibrated": calibrated})
    write_results(
        f"calibration_{name}",
        out=args.out,
        results={
            "task": args.task,
            "max_steps": args.max_steps,
            "measured": {
                k: {m: v for m, v in r.items() if m != "steps"} for k, r in measured.items()
            },
            "calibrated": result.settings.describe(),
            "replayed": {k: simulated_accuracy(trace, s) for k, s in replay.items()},
        },
    )


def log_to_mlflow(args: argparse.Namespace, result, measured: dict[str, dict]) -> None:
    """One run: the calibration (settings as tags, frontier table and plot, via the same
    code as training) and the test split's numbers for every stopping mode."""
    from refiner.tracking import tracked_run  # MLflow only when asked for

    run = Path(args.checkpoint or "trained").parent.name
    name = f"calibration-{args.task}-{run}-{time.strftime('%Y%m%d-%H%M%S')}"  # a new run each time
    with (
        tracked_run(args.tracking_uri, args.experiment, name) as run,
        tempfile.TemporaryDirectory() as scratch,
    ):
        run.log_params({"checkpoint": args.checkpoint, "max_steps": args.max_steps})
        log_calibration(run, result, 0, Path(scratch))
        metrics = {}
        for mode, m in measured.items():
            metrics.update(
                {
                    f"test_{mode}_exact": m["exact"],
                    f"test_{mode}_mean_steps": m["mean_steps"],
                    f"test_{mode}_seconds": m["seconds"],
                }
            )
        run.log_metrics(metrics, step=0)
        print(f"MLflow run {run.run_id} in {args.experiment!r} at {args.tracking_uri}")


if __name__ == "__main__":
    main()
