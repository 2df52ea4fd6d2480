"""Estimated GPU cost of the GPU recipes (README, "The field's benchmarks").

FLOPs of one refinement step's block stack on one row are counted with FlopCounterMode
(CPU, no GPU needed; embeddings and heads left out); an update is the forward of all
max_steps_train steps plus the backward (twice a forward) of the last
backprop_truncate_steps, over batch_size x num_workers rows. The hours assume --mfu of
the bf16 dense peak of --peak-tflops per GPU on num_workers GPUs: an estimate until
bench/gpu_field_check.py measures the real rate.

    PYTHONPATH=platform python bench/gpu_recipe_cost.py [--mfu 0.3] [--peak-tflops 989]
"""

from __future__ import annotations

from pathlib import Path

import torch
from harness import parser, write_results
from torch.utils.flop_counter import FlopCounterMode

from refiner.config.experiment import load_experiment_config
from refiner.model.network import RefinerModel

CONFIGS = Path(__file__).resolve().parents[1] / "jobs" / "configs"
RECIPES = {"sudoku_extreme_gpu": 81, "maze_hard_gpu": 900, "arc_gpu": 900}  # canvas cells


def main() -> None:
    p = parser(__doc__, "gpu_recipe_cost")
    p.add_argument("--mfu", type=float, default=0.3, help="fraction of the peak achieved")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense, per GPU (H100)")
    args = p.parse_args()
    torch.set_num_threads(1)
    costs = {}
    for name, seq_len in RECIPES.items():
        config = load_experiment_config(CONFIGS / f"{name}.yaml")
        m, o, t = config.model, config.orchestration, config.training
        # the block stack alone: no task file, so no puzzle table (it adds no step FLOPs)
        shape = {**m.to_dict(), "seq_len": seq_len, "puzzle_embedding": "off"}
        model = RefinerModel(m.__class__.from_dict(shape))
        x = torch.zeros(1, seq_len, m.d_model)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            for block in model.blocks:
                x = block(x, None, None)
        step = counter.get_total_flops() * m.latent_cycles
        per_update = step * (o.max_steps_train + 2 * o.backprop_truncate_steps)
        per_update *= t.batch_size * t.num_workers
        hours = per_update * t.steps / (args.mfu * t.num_workers * args.peak_tflops * 1e12) / 3600
        print(
            f"{name}: {per_update / 1e12:.1f} TFLOP an update, {t.steps} updates,"
            f" {hours:.2f} h on {t.num_workers} GPUs at {args.mfu:.0%} of {args.peak_tflops:g}"
            " TFLOP/s each"
        )
        costs[name] = {"tflop_per_update": per_update / 1e12, "updates": t.steps, "hours": hours}
    write_results("gpu_recipe_cost", out=args.out, results={"mfu": args.mfu, "recipes": costs})


if __name__ == "__main__":
    main()
