"""Benchmarks of the training platform (issue 4), measured side by side in one run.

1. Overhead: steady-state time per update of the default model and batch under
   TorchTrainer (1 worker, Ray Data stream, reports) vs. a bare PyTorch loop over
   pre-built batches in this process. Startup (fit() to first update) reported apart.
2. Data starvation: the fraction of update time spent waiting for the Ray Data shard
   during the default job (2 workers).
3. Scaling: samples/s with 2 workers vs. 1 worker, one torch thread each.

    python bench/bench_platform.py [--steps 200] [--out bench/results/platform.md]

Per-update times come from wall-clock stamps of rank 0's reports (every 20 updates):
the window after the first report is steady state (no compilation, warm caches, the
data stream running). The bare loop runs twice (before and after the Ray runs) and its
faster pass is the baseline, which keeps machine noise from flattering the platform.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from harness import Headline, parser, write_results

from refiner.augment import augment_batch
from refiner.config.experiment import (
    augmentation_spec,
    build_optimizer,
    build_orchestrator,
    prepare_experiment,
)
from refiner.distributed.cluster import init_ray
from refiner.distributed.trainer import run_training
from refiner.runs.tracker import NullTracker
from refiner.tasks.schema import describe_tasks, split_validation

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "jobs" / "configs" / "parity.yaml"


class StampTracker(NullTracker):
    """A RunTracker that appends (wall time, step, metrics) of each report to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def log_metrics(self, metrics, step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"t": time.time(), "step": step, **metrics}) + "\n")


def ray_run(steps: int, workers: int, label: str, storage: str) -> dict:
    overrides = [
        f"training.steps={steps}",
        f"training.num_workers={workers}",
        "training.report_every=20",
        f"training.checkpoint_every={steps}",  # one checkpoint, at the end
        "training.cpus_per_worker=0.5",
    ]
    config, tasks = prepare_experiment(DEFAULT_CONFIG, overrides)
    stamps = Path(storage) / f"{label}.jsonl"
    started = time.time()
    run_training(config, tasks, label, storage, StampTracker(str(stamps)))
    rows = [json.loads(line) for line in stamps.read_text().splitlines()]
    # Training reports without a checkpoint: the only checkpoint (with its validation
    # pass) comes at the end and is not part of the per-update cost.
    rows = [r for r in rows if "loss" in r and "val_acc_infer" not in r]
    first, last = rows[0], rows[-1]
    per_update = (last["t"] - first["t"]) / (last["step"] - first["step"])
    global_batch = config.training.batch_size * max(1, workers)
    waits = [r["data_wait_frac"] for r in rows[1:]]
    return {
        "per_update_s": per_update,
        "samples_per_s": global_batch / per_update,
        "startup_s": first["t"] - started - first["step"] * per_update,
        "data_wait_mean": statistics.mean(waits),
        "data_wait_max": max(waits),
    }


def bare_loop(steps: int) -> float:
    """Seconds per update of the same model and batch, batches built up front."""
    config, tasks = prepare_experiment(DEFAULT_CONFIG, [])
    torch.set_num_threads(config.training.torch_threads)
    train, _ = split_validation(tasks, config.task.val_split)
    task_type, num_symbols = describe_tasks(tasks)
    columns = {n: train.column(n).to_numpy(zero_copy_only=False) for n in train.column_names}
    rows = augment_batch(
        {k: v[:64] for k, v in columns.items()},
        augmentation_spec(config),
        config.seed,
        epoch=0,
        pad_to=config.model.seq_len,
    )
    b = config.training.batch_size
    order = np.random.default_rng(0).permutation(len(rows["input"]))
    batches = [
        {
            "input": torch.as_tensor(rows["input"][order[i : i + b]], dtype=torch.long),
            "target": torch.as_tensor(rows["target"][order[i : i + b]], dtype=torch.long),
        }
        for i in range(0, len(order) - b + 1, b)
    ]
    orchestrator = build_orchestrator(config, task_type, num_symbols, "cpu")
    optimizer, scheduler = build_optimizer(orchestrator, config.training)
    warmup = 20
    for i in range(steps + warmup):
        if i == warmup:
            start = time.perf_counter()
        orchestrator.train_step(
            batches[i % len(batches)], optimizer, task_type=task_type, lr_scheduler=scheduler
        )
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = parser(__doc__, "platform")
    p.add_argument("--steps", type=int, default=200, help="updates per Ray run")
    args = p.parse_args()
    print(f"[bench] {init_ray(None, 3)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-platform-") as storage:
        bare_a = bare_loop(args.steps)
        one = ray_run(args.steps, 1, "one-worker", storage)
        two = ray_run(args.steps, 2, "two-workers", storage)
        bare_b = bare_loop(args.steps)
    ray.shutdown()
    bare = min(bare_a, bare_b)
    lines = [
        f"Config: jobs/configs/parity.yaml, {args.steps} updates per Ray run, batch 64/worker",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| bare loop, s/update (passes: {bare_a:.4f}, {bare_b:.4f}) | {bare:.4f} |",
        f"| TorchTrainer 1 worker, s/update (steady state) | {one['per_update_s']:.4f} |",
        f"| **overhead vs bare loop** (target <= 10%) | "
        f"**{one['per_update_s'] / bare - 1:+.1%}** |",
        f"| TorchTrainer startup (fit() to first update), 1 worker | {one['startup_s']:.1f} s |",
        f"| TorchTrainer startup, 2 workers | {two['startup_s']:.1f} s |",
        f"| data wait, 2 workers: mean / max over reports (target <= 5%) | "
        f"**{two['data_wait_mean']:.1%}** / {two['data_wait_max']:.1%} |",
        f"| data wait, 1 worker: mean / max | "
        f"{one['data_wait_mean']:.1%} / {one['data_wait_max']:.1%} |",
        f"| samples/s, 1 worker | {one['samples_per_s']:.0f} |",
        f"| samples/s, 2 workers | {two['samples_per_s']:.0f} |",
        f"| **scaling 2 vs 1 worker** (ideal 2.0) | "
        f"**{two['samples_per_s'] / one['samples_per_s']:.2f}x** |",
    ]
    report = "\n".join(lines)
    print("\n" + report)
    overhead = one["per_update_s"] / bare - 1
    scaling = two["samples_per_s"] / one["samples_per_s"]
    headline = [
        Headline(
            "TorchTrainer (1 worker) vs bare loop, steady state",
            4,
            "<= 10% overhead",
            f"{overhead:+.1%} (startup {one['startup_s']:.0f} s, separate)",
            order=70,
        ),
        Headline(
            "time waiting for Ray Data, default job, 2 workers",
            4,
            "<= 5%",
            f"{two['data_wait_mean']:.1%} mean, {two['data_wait_max']:.1%} max",
            order=80,
        ),
        Headline("samples/s, 2 workers vs 1", 4, "report (ideal 2.0)", f"{scaling:.2f}x", order=90),
    ]
    write_results(
        "platform",
        out=args.out,
        headline=headline,
        results={"steps": args.steps, "bare_s": [bare_a, bare_b], "one": one, "two": two},
        markdown=f"# Platform benchmarks\n\n{report}\n",
    )


if __name__ == "__main__":
    main()
