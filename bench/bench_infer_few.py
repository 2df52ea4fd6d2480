"""Benchmark 2: infer few. On the parity model trained by bench_refinement.py, ACT early
stopping with batch compaction vs always running 16 steps, on the held-out sequences.

Reports sample-steps (sum over samples of steps run), wall time (median of interleaved
rounds) and exact-match accuracy, plus a sweep over the ACT threshold.

    python bench/bench_infer_few.py [--checkpoint bench/artifacts/parity.pt] [--threads 2]
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pyarrow.compute as pc
import torch
from harness import Headline, parser, timed, write_results

from refiner.checkpoints.files import read_checkpoint
from refiner.data.batches import batch_from_table
from refiner.evaluate.plots import plot_halting_histogram
from refiner.tasks.sources import parity
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

MAX_STEPS = 16
HERE = Path(__file__).resolve().parent


def load(path: Path) -> tuple[UnifiedRefinerOrchestrator, dict]:
    o = UnifiedRefinerOrchestrator.from_checkpoint(path, num_symbols=2)
    return o, read_checkpoint(path)["extra"]


def run(o: UnifiedRefinerOrchestrator, batches: list[dict], early: bool) -> dict:
    results, seconds = timed(
        lambda: [
            o.inference(b["input"], max_steps_override=MAX_STEPS, early_stopping=early)
            for b in batches
        ]
    )
    correct = sum(
        int((torch.tensor(r["final_canvas_ids"]) == b["target"]).all(-1).sum())
        for r, b in zip(results, batches, strict=True)
    )
    reasons: dict[str, int] = {}
    for r in results:
        for k, v in r["stopping_reason_counts"].items():
            reasons[k] = reasons.get(k, 0) + v
    n = sum(len(r["steps_taken"]) for r in results)
    return {
        "seconds": seconds,
        "sample_steps": sum(r["sample_steps"] for r in results),
        "accuracy": correct / n,
        "mean_steps": sum(r["sample_steps"] for r in results) / n,
        "reasons": reasons,
        "steps_taken": [s for r in results for s in r["steps_taken"]],
    }


def with_act_threshold(o: UnifiedRefinerOrchestrator, threshold: float) -> None:
    stopping = dataclasses.replace(o.config.stopping, act_threshold=threshold)
    o.config = dataclasses.replace(o.config, stopping=stopping)


def main() -> None:
    p = parser(__doc__, "infer_few")
    p.add_argument("--checkpoint", default=str(HERE / "artifacts" / "parity.pt"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    o, extra = load(Path(args.checkpoint))
    train_args = extra["args"]
    table = parity.generate(train_args["tasks"], size=train_args["size"], seed=train_args["seed"])
    val = table.filter(pc.equal(table["split"], "val"))
    data = batch_from_table(val, o.core.config.seq_len)
    batches = [
        {k: v[i : i + args.batch_size] for k, v in data.items()}
        for i in range(0, len(val), args.batch_size)
    ]
    print(
        f"checkpoint {args.checkpoint}: {o.core.num_parameters():,} parameters, trained "
        f"{read_checkpoint(args.checkpoint)['orchestrator']['step_count']} updates; "
        f"{len(val)} held-out sequences of length {train_args['size']} in batches of {args.batch_size}; "
        f"threads={args.threads}; stopping={o.config.stopping}"
    )

    run(o, batches[:1], True)  # warm-up
    rounds: dict[str, list[dict]] = {"act": [], "max16": []}
    for _ in range(args.rounds):
        rounds["act"].append(run(o, batches, early=True))
        rounds["max16"].append(run(o, batches, early=False))
    act, full = rounds["act"][0], rounds["max16"][0]
    act_s = statistics.median(r["seconds"] for r in rounds["act"])
    full_s = statistics.median(r["seconds"] for r in rounds["max16"])
    print(
        f"{'mode':<26} {'sample-steps':>12} {'mean steps':>10} {'wall s':>8} {'accuracy':>9}  reasons"
    )
    print(
        f"{'ACT + compaction (<=16)':<26} {act['sample_steps']:>12} {act['mean_steps']:>10.2f} "
        f"{act_s:>8.3f} {act['accuracy']:>9.2%}  {act['reasons']}"
    )
    print(
        f"{'always 16 steps':<26} {full['sample_steps']:>12} {full['mean_steps']:>10.2f} "
        f"{full_s:>8.3f} {full['accuracy']:>9.2%}  {full['reasons']}"
    )
    step_ratio = full["sample_steps"] / act["sample_steps"]
    time_ratio = full_s / act_s
    loss = (full["accuracy"] - act["accuracy"]) * 100
    print(
        f"sample-steps ratio {step_ratio:.2f}x (target >= 3x), wall-time speedup {time_ratio:.2f}x "
        f"(target >= 2x), accuracy change {-loss:+.2f} points (target >= -1)"
    )
    histogram = HERE / "artifacts" / "halting_steps.png"
    plot_halting_histogram(act["steps_taken"], histogram, max_steps=MAX_STEPS)
    print(f"halting-steps histogram: {histogram}")
    print(
        f"median wall times over {args.rounds} interleaved rounds; all times s for {len(val)} sequences"
    )

    print("\nACT threshold sweep (single runs):")
    print(f"{'threshold':>9} {'mean steps':>10} {'accuracy':>9}  reasons")
    base = o.config.stopping.act_threshold
    for threshold in (0.5, 0.7, 0.9, 0.97, 0.99):
        with_act_threshold(o, threshold)
        r = run(o, batches, early=True)
        print(f"{threshold:>9} {r['mean_steps']:>10.2f} {r['accuracy']:>9.2%}  {r['reasons']}")
    with_act_threshold(o, base)
    write_results(
        "infer_few",
        out=args.out,
        headline=[
            Headline(
                "infer few vs run to 16 steps",
                3,
                ">= 3x fewer sample-steps, >= 2x wall, <= 1 pt lost",
                f"{step_ratio:.2f}x, {time_ratio:.2f}x, {-loss:+.2f} pt",
                order=40,
            )
        ],
        results={
            "checkpoint": args.checkpoint,
            "act": {k: v for k, v in act.items() if k != "steps_taken"},
            "max16": {k: v for k, v in full.items() if k != "steps_taken"},
            "act_s": act_s,
            "max16_s": full_s,
        },
    )


if __name__ == "__main__":
    main()
