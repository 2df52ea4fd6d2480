"""Benchmark: the cost of a target-symbol weight (orchestration.step_loss_weights.
target_symbols). Paired timing of maze.yaml's train_step with the path weighing 3 and
without it: one process, the same batches, alternating blocks of 10 updates (the machine
is noisy, so the ratio of paired blocks is what counts).

    PYTHONPATH=platform python bench/bench_target_weights.py
"""

from __future__ import annotations

import statistics

import torch
from harness import paired_ratios, parser, timed, write_results

from refiner.config.experiment import build_optimizer, build_orchestrator, prepare_experiment
from refiner.data.batches import batch_from_table


def main() -> None:
    args = parser(__doc__, "target_weights").parse_args()
    torch.set_num_threads(2)
    variants = {}
    for name, weight in (("weighted", "{4: 3.0}"), ("plain", "null")):
        config, tasks = prepare_experiment(
            "jobs/configs/maze.yaml",
            ["task.count=400", f"orchestration.step_loss_weights.target_symbols={weight}"],
        )
        o = build_orchestrator(config, task_type="grid")
        opt, sched = build_optimizer(o, config.training)
        variants[name] = (o, opt, sched)
    batches = [batch_from_table(tasks.slice(32 * i, 32), config.model.seq_len) for i in range(10)]
    times = {name: [] for name in variants}
    for _block in range(8):
        for name, (o, opt, sched) in variants.items():
            _, seconds = timed(
                lambda o=o, opt=opt, sched=sched: [
                    o.train_step(b, opt, task_type="grid", lr_scheduler=sched) for b in batches
                ]
            )
            times[name].append(seconds / len(batches))
    ratios = paired_ratios(times["weighted"], times["plain"])
    print({k: round(statistics.median(v), 4) for k, v in times.items()}, "s/update")
    print(
        "weighted / plain, median of paired blocks:",
        round(statistics.median(ratios), 3),
        "range",
        round(min(ratios), 3),
        round(max(ratios), 3),
    )
    write_results(
        "target_weights",
        out=args.out,
        results={"s_per_update": times, "paired_ratios": ratios},
    )


if __name__ == "__main__":
    main()
