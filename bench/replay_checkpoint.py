"""Replay training from a run's checkpoint, with changes, and watch what happens next
(issue 15: which changes stop a maze run from collapsing).

Loads a `jobs/train.py` checkpoint (weights, EMA, optimizer and schedule state) and the
config stored beside it, applies `--set` changes, and trains `--updates` more updates in
one process (no Ray, no MLflow) on the run's own training rows, augmented as the run
augments them, with the run's global batch (batch_size x num_workers: the gradient DDP
averages). Every `--every` updates it prints the training exact match at the unroll's
last step, the token loss, the gradient norm and the share of clipped updates.

A collapse that a checkpoint is heading for shows within a few dozen updates, so several
changes can be tried from the same point in minutes instead of a 30-minute run each.
`--data-seed` draws another data order (augmentations and batches), to tell a change's
effect from the luck of the batches.

    PYTHONPATH=platform python bench/replay_checkpoint.py CHECKPOINT --updates 100
    PYTHONPATH=platform python bench/replay_checkpoint.py CHECKPOINT --set orchestration.backprop_window=random
    PYTHONPATH=platform python bench/replay_checkpoint.py CHECKPOINT --lr-scale 0.3 --data-seed 7

Changes of the learning rate go through --lr-scale (the schedule is restored from the
checkpoint, so `--set training.lr` would not reach it). `--out FILE` also writes the
printed rows to a results file (bench/harness.py: command, machine, date).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from harness import parser, timed, write_results

from refiner.checkpoints.files import CheckpointError
from refiner.checkpoints.restore import restore_run
from refiner.config.experiment import augmentation_spec
from refiner.runs.cli import input_checks, job_main
from refiner.train.fit import Update, augmented_batches, fit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "replay_checkpoint", "results file, .json or .md (default: none)")
    p.add_argument("checkpoint", help="a training checkpoint folder or its checkpoint.pt")
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--every", type=int, default=25, help="print every N updates")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the stored config, e.g. orchestration.gradient_clip_threshold=0.3",
    )
    p.add_argument("--lr-scale", type=float, help="multiply the learning-rate schedule")
    p.add_argument("--data-seed", type=int, default=1, help="augmentation and batch order")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with input_checks(CheckpointError):
        run = restore_run(args.checkpoint, args.overrides)
    config, orchestrator, optimizer, scheduler = (
        run.config,
        run.orchestrator,
        run.optimizer,
        run.scheduler,
    )
    if args.lr_scale:  # the schedule and the rate it has already set for the next update
        scheduler.base_lrs = [lr * args.lr_scale for lr in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["lr"] *= args.lr_scale
    torch.manual_seed(args.data_seed)
    batch_size = config.training.batch_size * max(1, config.training.num_workers)
    print(
        f"{args.checkpoint}: update {orchestrator.step_count}, lr {optimizer.param_groups[0]['lr']:.2e};"
        f" {args.updates} more updates of {batch_size} rows"
        + (f", with {' '.join(args.overrides)}" if args.overrides else "")
    )
    print("  update  exact@last  token loss  grad norm  clipped")
    window: list[tuple[float, float, float, float]] = []
    printed: list[dict[str, float]] = []
    start = orchestrator.step_count

    def print_every(update: Update) -> None:
        m = update.metrics
        window.append((m.acc_at[-1], _or_nan(m.loss_token), _or_nan(m.grad_norm), float(m.clipped)))
        done = update.step - start
        if done % args.every == 0 or done == args.updates:
            exact, loss, norm, clipped = np.mean(window, axis=0)
            printed.append(
                {"update": update.step, "exact_at_last": exact, "token_loss": loss}
                | {"grad_norm": norm, "clipped": clipped}
            )
            print(
                f"  {update.step:6d}  {exact:10.3f}  {loss:10.3f}  {norm:9.3f}  {clipped:7.2f}",
                flush=True,
            )
            window.clear()

    batches = augmented_batches(
        run.train_rows,
        augmentation_spec(config),
        config.seed,
        config.model.seq_len,
        batch_size,
        puzzles=orchestrator.puzzle_index if orchestrator.core.puzzle_embed is not None else None,
        first_round=args.data_seed,
    )
    result, seconds = timed(
        lambda: fit(
            orchestrator,
            optimizer,
            scheduler,
            batches,
            steps=start + args.updates,
            task_type=run.task_type,
            on_update=print_every,
        )
    )
    print(f"{result.updates} updates in {seconds:.0f} s")
    if args.out is not None:
        rows = {"updates": result.updates, "seconds": seconds, "rows": printed}
        write_results("replay_checkpoint", out=args.out, results=rows, command=None)
    return 0


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


if __name__ == "__main__":
    sys.exit(main())
