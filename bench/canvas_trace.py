"""What a trained model does to its canvas, step by step (issue 15: why maze runs collapse).

For a training checkpoint of `jobs/train.py` (the checkpoint folder, or its
checkpoint.pt), rebuild the run's held-out rows from the config stored beside it, unroll
the model on them from an empty canvas and print, after each step:

- cells to fill that are right: of the positions whose target differs from the input
  (a maze's path cells, a sudoku's blanks), the share the canvas has right;
- wrong cells per row: positions where the canvas differs from both the input and the
  target (a maze cell marked as path that is not on it, a wrong digit);
- exact: the share of rows whose canvas is the target.

Both the live weights and, when the run keeps one, the EMA of the weights (what the
run's checkpoints are scored with). The canvas passes between steps as in the recipes
(the argmax replaces it: the "replace" edit strategy).

    PYTHONPATH=platform python bench/canvas_trace.py /tmp/bench-field-XXXX/maze15/storage/maze15/checkpoint_...
    PYTHONPATH=platform python bench/canvas_trace.py CHECKPOINT --rows 64 --steps 24

A maze model that solves mazes marks every open cell at step 1, then unmarks dead ends
step by step and keeps the path; the runs that collapse start unmarking path cells too
(BENCHMARKS.md, "Mazes on CPU: runs that collapse").
"""

from __future__ import annotations

import argparse
import sys

import torch

from refiner.batches import batch_from_table
from refiner.checkpoint import CheckpointError
from refiner.cli import input_checks, job_main
from refiner.orchestrator import UnifiedRefinerOrchestrator
from refiner.puzzles import BATCH_KEY
from refiner.sweep.checkpoints import restore_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a training checkpoint folder or its checkpoint.pt")
    parser.add_argument("--rows", type=int, default=128, help="held-out rows to trace")
    parser.add_argument(
        "--steps", type=int, help="refinement steps (default: orchestration.max_steps_infer)"
    )
    return parser.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with input_checks(CheckpointError):  # the live weights come back, the EMA beside them
        run = restore_run(args.checkpoint)
        if run.held_out.num_rows == 0:
            raise ValueError(f"{args.checkpoint}: the run's task has no held-out rows")
    config, orchestrator = run.config, run.orchestrator
    held_out = run.held_out.slice(0, args.rows)
    steps = args.steps or config.orchestration.max_steps_infer
    batch = batch_from_table(
        held_out, config.model.seq_len, orchestrator.device, orchestrator.puzzle_index
    )
    print(
        f"{args.checkpoint} (update {orchestrator.step_count}): {held_out.num_rows} held-out rows of"
        f" {config.task.source}, {steps} steps"
    )
    print_trace("live weights", step_counts(unroll(orchestrator, batch, steps), batch))
    if config.orchestration.ema_decay is not None:
        with orchestrator.averaged_weights():
            print_trace(
                "EMA of the weights", step_counts(unroll(orchestrator, batch, steps), batch)
            )
    return 0


@torch.no_grad()
def unroll(
    orchestrator: UnifiedRefinerOrchestrator, batch: dict[str, torch.Tensor], steps: int
) -> list[torch.Tensor]:
    """The canvas [B, L] after each of ``steps`` steps of the model's own unroll, edited
    as the run edits it (the orchestrator's edit callback, without exploration, as
    `orchestrator.evaluate` runs it)."""
    canvases: list[torch.Tensor] = []
    run_edit = orchestrator._edit_fn(orchestrator._task_type(None))

    def edit_and_keep(
        step: int,
        canvas: torch.Tensor,
        quality: torch.Tensor,
        proposal: torch.Tensor,
        proposal_quality: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        edited = run_edit(step, canvas, quality, proposal, proposal_quality)
        canvases.append(edited[0])
        return edited

    model = orchestrator.core
    model.eval()
    with orchestrator.exploring(False):
        model(batch["input"], steps=steps, edit_fn=edit_and_keep, puzzle_ids=batch.get(BATCH_KEY))
    return canvases


def step_counts(
    canvases: list[torch.Tensor], batch: dict[str, torch.Tensor]
) -> list[tuple[float, float, float]]:
    """Per canvas: (cells to fill that are right, wrong cells per row, exact)."""
    inputs, target = batch["input"], batch["target"]
    to_fill = target != inputs
    rows = []
    for canvas in canvases:
        right = (canvas == target) & to_fill
        wrong = (canvas != target) & (canvas != inputs)
        rows.append(
            (
                right.sum().item() / max(1, to_fill.sum().item()),
                wrong.sum().item() / len(canvas),
                (canvas == target).all(1).float().mean().item(),
            )
        )
    return rows


def print_trace(title: str, rows: list[tuple[float, float, float]]) -> None:
    print(f"\n{title}\n  step  to fill, right  wrong cells/row  exact")
    for t, (right, wrong, exact) in enumerate(rows, 1):
        print(f"  {t:4d}  {right:14.1%}  {wrong:15.2f}  {exact:5.1%}")


if __name__ == "__main__":
    sys.exit(main())
