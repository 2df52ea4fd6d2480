"""Benchmark 4: achieved training FLOP/s of the default model vs this machine's fp32
matmul peak, both measured in this run.

FLOPs per train_step are counted by torch.utils.flop_counter.FlopCounterMode (matmuls
and attention, forward and backward, of the default T=16 / K=8 unroll). The peak is the
best of several 2048^3 fp32 matmuls, measured before and after the training timing.

    python bench/bench_flops.py [--threads 2] [--steps 5]
"""

from __future__ import annotations

import statistics

import torch
from harness import Headline, matmul_peak, parser, timed, write_results
from torch.utils.flop_counter import FlopCounterMode

from refiner.config.sections import ModelConfig, OrchestrationConfig
from refiner.data.tokenizers import NUM_SPECIAL
from refiner.train.optim import make_optimizer
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def main() -> None:
    p = parser(__doc__, "flops")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model_config, config = ModelConfig(), OrchestrationConfig()  # the defaults
    o = UnifiedRefinerOrchestrator.from_config(model_config, config)
    model = o.core
    optimizer = make_optimizer(model, lr=1e-4)
    shape = (args.batch_size, model_config.seq_len)
    batch = {
        "input": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 10, shape),
        "target": torch.randint(NUM_SPECIAL, NUM_SPECIAL + 10, shape),
    }
    counter = FlopCounterMode(display=False)
    with counter:
        o.train_step(batch, optimizer)  # also the warm-up
    flops = counter.get_total_flops()

    peak_before = matmul_peak("cpu", 2048, repeats=5)
    times = [timed(lambda: o.train_step(batch, optimizer))[1] for _ in range(args.steps)]
    peak_after = matmul_peak("cpu", 2048, repeats=5)
    step = statistics.median(times)
    peak = max(peak_before, peak_after)
    achieved = flops / step
    print(
        f"default model: {model.num_parameters():,} parameters, d_model={model_config.d_model}, "
        f"{model_config.n_layers} layers x {model_config.latent_cycles} cycles, seq_len={model_config.seq_len}; "
        f"T={config.max_steps_train}, K={config.gradient_window()}, batch={args.batch_size}, threads={args.threads}"
    )
    print(f"FLOPs per train_step (counted): {flops / 1e9:.2f} GFLOP")
    print(f"train_step median of {args.steps}: {step:.3f} s -> {achieved / 1e9:.1f} GFLOP/s")
    print(
        f"fp32 matmul peak (2048^3, best of 5): before {peak_before / 1e9:.1f}, after {peak_after / 1e9:.1f} GFLOP/s"
    )
    print(f"achieved / peak = {achieved / peak:.1%}")
    write_results(
        "flops",
        out=args.out,
        headline=[
            Headline(
                "training FLOP/s vs fp32 matmul peak",
                3,
                "report",
                f"{achieved / peak:.1%} ({achieved / 1e9:.1f} of {peak / 1e9:.1f} GFLOP/s)",
                order=60,
            )
        ],
        results={
            "flops_per_step": flops,
            "step_s": times,
            "achieved_flops": achieved,
            "peak_before": peak_before,
            "peak_after": peak_after,
            "batch_size": args.batch_size,
            "threads": args.threads,
        },
    )


if __name__ == "__main__":
    main()
