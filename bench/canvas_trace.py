"""What a trained model does to its canvas, step by step, with the live weights and the EMA.

    PYTHONPATH=platform python bench/canvas_trace.py CHECKPOINT --rows 64 --steps 24

A thin caller of ``refiner.evaluate.canvas_pictures`` (the per-step counts ``jobs/evaluate.py
--trace`` prints: cells to fill that are right, wrong cells per row, exact) on the run's
own held-out rows, rebuilt from the config stored beside the checkpoint; beside the
weights the checkpoint holds (the EMA when the run keeps one) it also traces the live
weights, which ``jobs/evaluate.py`` does not load. A maze model that solves mazes marks
every open cell at step 1, then unmarks dead ends step by step and keeps the path; runs
that collapse start unmarking path cells too (BENCHMARKS.md, "Mazes on CPU"). `--out
FILE.md` also writes the traces to a results file (bench/harness.py: command, machine,
date).
"""

from __future__ import annotations

import argparse
import sys

from harness import parser, write_results

from refiner.checkpoints.files import CheckpointError
from refiner.checkpoints.restore import restore_run
from refiner.evaluate.canvas_pictures import describe_step_counts, trace_canvases
from refiner.runs.cli import input_checks, job_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, "canvas_trace", "results file, .json or .md (default: none)")
    p.add_argument("checkpoint", help="a training checkpoint folder or its checkpoint.pt")
    p.add_argument("--rows", type=int, default=128, help="held-out rows to trace")
    p.add_argument(
        "--steps", type=int, help="refinement steps (default: orchestration.max_steps_infer)"
    )
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with input_checks(CheckpointError):  # the live weights come back, the EMA beside them
        run = restore_run(args.checkpoint)
        if run.held_out.num_rows == 0:
            raise ValueError(f"{args.checkpoint}: the run's task has no held-out rows")
    config, orchestrator = run.config, run.orchestrator
    rows = run.held_out.slice(0, args.rows)
    steps = args.steps or config.orchestration.max_steps_infer
    print(
        f"{args.checkpoint} (update {orchestrator.step_count}): {rows.num_rows} held-out rows"
        f" of {config.task.source}, {steps} steps"
    )
    traces = {"live weights": trace_canvases(orchestrator, rows, config.model.seq_len, steps)}
    print(f"\nlive weights\n{describe_step_counts(traces['live weights'])}")
    if config.orchestration.ema_decay is not None:
        with orchestrator.averaged_weights():
            ema = trace_canvases(orchestrator, rows, config.model.seq_len, steps)
        traces["EMA of the weights"] = ema
        print(f"\nEMA of the weights\n{describe_step_counts(ema)}")
    if args.out is not None:
        sections = [
            f"## {name}\n\n```\n{describe_step_counts(t)}\n```" for name, t in traces.items()
        ]
        write_results(
            "canvas_trace",
            out=args.out,
            results={"checkpoint": str(args.checkpoint), "update": orchestrator.step_count},
            markdown=f"# Canvas trace of {args.checkpoint}\n\n" + "\n\n".join(sections),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
