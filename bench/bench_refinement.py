"""Benchmark 1: refinement helps. Train prefix parity on this CPU for a fixed time budget
with the plain loop of examples/train_parity_plain.py, then report exact-match accuracy
after every refinement step (acc@1 .. acc@16) on held-out sequences.

The setup makes one step genuinely unable to solve the task: local attention (radius
`--window`) moves information at most window * layers positions per step, fewer than the
sequence length, so the running parity has to travel through the canvas and latent
across steps. Positions are learned (absolute): with relative positions only, the model
could not tell the sequence start from a run of equal bits and failed on every input
starting 1111 in earlier runs. Saves the model to bench/artifacts/parity.pt for
bench_infer_few.py.

    python bench/bench_refinement.py [--time-budget 270] [--threads 2]
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from harness import Headline, parser, write_results

from refiner.evaluate.plots import plot_refinement_curve

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
BENCH_SETUP = [
    "--size", "16", "--window", "4", "--positional", "learned", "--n-layers", "2",
    "--latent-cycles", "1", "--d-model", "64", "--mlp-ratio", "2", "--train-steps", "8",
    "--schedule", "uniform", "--batch-size", "64", "--lr", "2e-3", "--act-threshold", "0.97",
    "--eval-steps", "16",
]  # fmt: skip


def load_example():
    path = HERE.parent / "examples" / "train_parity_plain.py"
    spec = importlib.util.spec_from_file_location("train_parity_plain", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> None:
    ours, argv = parser(
        __doc__, "refinement", "results file (other options go to train_parity_plain.py)"
    ).parse_known_args(argv)
    example = load_example()
    args = example.parse_args(
        BENCH_SETUP + ["--time-budget", "270", "--out", str(ARTIFACTS / "parity.pt")] + argv
    )
    window_reach = args.window * args.n_layers * args.latent_cycles
    print(f"setup: {' '.join(BENCH_SETUP + argv)}")
    print(
        f"one step moves information at most {window_reach} positions; sequence length {args.size}"
    )
    result = example.train(args)
    acc = result["val_acc_at"]
    print(
        f"\ntrained {result['updates']} updates in {result['train_seconds']:.0f} s; "
        f"{result['parameters']:,} parameters"
    )
    print("held-out exact match after each refinement step:")
    print("  ".join(f"@{t + 1}:{a:.1%}" for t, a in enumerate(acc)))
    print(f"acc@1 = {acc[0]:.1%}, acc@4 = {acc[3]:.1%} (target >= 95%), acc@16 = {acc[-1]:.1%}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "refinement.json").write_text(json.dumps(result, indent=2))
    plot_refinement_curve(acc, ARTIFACTS / "refinement_curve.png", title="parity: held-out acc@t")
    print(f"checkpoint: {result['checkpoint']}; curve: {ARTIFACTS / 'refinement_curve.png'}")
    write_results(
        "refinement",
        out=ours.out,
        headline=[
            Headline(
                "refinement helps: parity acc@4 vs acc@1",
                3,
                "acc@4 >= 95%, acc@1 far lower",
                f"acc@4 {acc[3]:.1%}, acc@1 {acc[0]:.1%} ({args.time_budget:g} s budget)",
                order=30,
            )
        ],
        results=result,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
