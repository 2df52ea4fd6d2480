"""Train a refiner on prefix parity in a plain Python loop (no Ray, no MLflow).

    python examples/train_parity_plain.py --time-budget 240 --out bench/artifacts/parity.pt

Reads top to bottom: make the task, build model + orchestrator, train on shuffled
batches with the package's loop (`refiner.train.fit.fit`, one `train_step` per
batch; a hook logs and stops at the time budget), then report acc@t on held-out sequences, what ACT early
stopping does with the trained model, and save a checkpoint.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Iterator

import torch

from refiner.checkpoints.files import save_checkpoint
from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.batches import batch_from_table, iterate_batches
from refiner.tasks.sources import parity
from refiner.train.fit import Update, fit
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=16, help="parity sequence length")
    p.add_argument(
        "--tasks", type=int, default=20000, help="distinct sequences generated (10%% held out)"
    )
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--latent-cycles", type=int, default=1)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--positional", default="learned", help="rope or learned")
    p.add_argument("--window", type=int, default=4, help="local attention radius (0: global)")
    p.add_argument("--memory", type=int, default=0, help="memory bank capacity (0: off)")
    p.add_argument(
        "--train-steps", type=int, default=8, help="refinement steps unrolled in training"
    )
    p.add_argument(
        "--truncate", type=int, default=0, help="backprop through the last K steps (0: all)"
    )
    p.add_argument("--schedule", default="uniform", help="step loss weight schedule")
    p.add_argument("--halting-weight", type=float, default=0.5)
    p.add_argument("--quality-weight", type=float, default=0.5)
    p.add_argument("--edits", default="replace", help="comma-separated canvas edit strategies")
    p.add_argument(
        "--act-threshold",
        type=float,
        default=0.97,
        help="inference: halt when sigmoid(halt) >= this",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--max-updates", type=int, default=100000)
    p.add_argument("--time-budget", type=float, default=240.0, help="seconds of training")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-steps", type=int, default=16, help="steps for the held-out acc@t curve")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="checkpoint path to write")
    return p.parse_args(argv)


def build(
    args: argparse.Namespace,
) -> tuple[UnifiedRefinerOrchestrator, ModelConfig, OrchestrationConfig]:
    model_config = ModelConfig(
        seq_len=args.size,
        d_model=args.d_model,
        n_heads=4,
        n_layers=args.n_layers,
        latent_cycles=args.latent_cycles,
        mlp_ratio=args.mlp_ratio,
        memory_capacity=args.memory,
        attention_window=args.window or None,
        positional=args.positional,
    )
    edits = args.edits.split(",")
    config = OrchestrationConfig.from_dict(
        {
            "max_steps_train": args.train_steps,
            "max_steps_infer": min(4, args.train_steps),
            "truncated_backprop": args.truncate > 0,
            "backprop_truncate_steps": args.truncate or args.train_steps,
            "step_loss_weights": {
                "schedule": args.schedule,
                "halting": args.halting_weight,
                "quality": args.quality_weight,
            },
            "canvas_edit_strategies": edits,
            "stopping": {"act_threshold": args.act_threshold},
            "adaptive_edit_selection": len(edits) > 1,
            "seed": args.seed,
        }
    )
    orchestrator = UnifiedRefinerOrchestrator.from_config(
        model_config, config, num_symbols=parity.NUM_SYMBOLS
    )
    return orchestrator, model_config, config


def train(args: argparse.Namespace, log=print) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    table = parity.generate(args.tasks, size=args.size, seed=args.seed)
    is_val = table.column("split").to_pylist()
    val_rows = [i for i, s in enumerate(is_val) if s == "val"]
    train_rows = [i for i, s in enumerate(is_val) if s != "val"]
    train_data = batch_from_table(table.take(train_rows), args.size)
    val_data = batch_from_table(table.take(val_rows), args.size)

    orchestrator, model_config, config = build(args)
    log(
        f"model: {orchestrator.core.num_parameters():,} parameters; {len(train_rows)} train / {len(val_rows)} val"
    )
    optimizer = make_optimizer(orchestrator.model, lr=args.lr, weight_decay=args.weight_decay)
    # Time-budgeted runs do not know their step count; assume ~ the budget at 0.1 s/step.
    expected = min(args.max_updates, int(args.time_budget / 0.1))
    scheduler = warmup_cosine(optimizer, warmup_steps=50, total_steps=expected)

    def shuffled_epochs() -> Iterator[dict[str, torch.Tensor]]:
        for epoch in itertools.count():
            yield from iterate_batches(train_data, args.batch_size, seed=args.seed * 1000 + epoch)

    def log_and_stop_at_budget(update: Update) -> bool:
        m = update.metrics
        if update.step % args.log_every == 0:
            acc = " ".join(f"{a:.2f}" for a in m.acc_at)
            log(
                f"update {update.step:5d}  {time.perf_counter() - start:6.1f}s  loss {m.smoothed_loss:.4f}  "
                f"grad {m.grad_norm:.2f}  acc@t {acc}"
            )
        return time.perf_counter() - start >= args.time_budget

    start = time.perf_counter()
    updates = fit(
        orchestrator,
        optimizer,
        scheduler,
        shuffled_epochs(),
        steps=args.max_updates,
        task_type="sequence",
        on_update=log_and_stop_at_budget,
    ).updates
    train_seconds = time.perf_counter() - start

    evaluation = orchestrator.evaluate(val_data, steps=args.eval_steps)
    inference = orchestrator.inference(val_data["input"], max_steps_override=args.eval_steps)
    final = torch.tensor(inference["final_canvas_ids"])
    act_accuracy = (final == val_data["target"]).all(-1).float().mean().item()
    result = {
        "updates": updates,
        "train_seconds": train_seconds,
        "parameters": orchestrator.core.num_parameters(),
        "val_acc_at": evaluation["acc_at"],
        "val_token_acc_at": evaluation["token_acc_at"],
        "act_accuracy": act_accuracy,
        "act_mean_steps": inference["mean_steps"],
        "act_stopping_reasons": inference["stopping_reason_counts"],
    }
    if args.out:
        save_checkpoint(
            args.out,
            orchestrator,
            optimizer,
            scheduler,
            extra={"updates": updates, "args": vars(args)},
        )
        result["checkpoint"] = args.out
    return result


def main(argv: list[str] | None = None) -> None:
    result = train(parse_args(argv))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
