"""Evaluate a checkpoint: infer-few on a task source or file, with a chosen step budget.

    python jobs/evaluate.py --checkpoint outputs/ray_results/RUN/checkpoint_000001 --task parity
    python jobs/evaluate.py --checkpoint models:/refiner-best/1 --task tasks.parquet --max-steps 2
    python jobs/evaluate.py --checkpoint runs:/RUN_ID/checkpoint --task parity \\
        --tracking-uri sqlite:////abs/mlflow.db --experiment refiner-eval

--checkpoint: checkpoint.pt, its Ray checkpoint folder or an MLflow models:/ or runs:/ URI.
Prints exact-match accuracy, the refinement curve, steps taken, why and with which settings
inference stopped; --calibrate chooses them anew; --trace N draws the canvas step by step (PNG);
--experiment logs to MLflow. A local checkpoint without --experiment loads no MLflow, no Ray.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from refiner.checkpoints.files import CheckpointError
from refiner.checkpoints.restore import (
    calibrate_checkpoint,
    describe_evaluation,
    evaluate_checkpoint,
    evaluation_tasks,
    is_mlflow_uri,
    local_checkpoint_file,
    trace_checkpoint,
)
from refiner.evaluate.predictors import benchmark_report
from refiner.runs.cli import add_trace_arguments, input_checks, job_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt, its folder or an MLflow URI")
    p.add_argument("--task", required=True, help="a built-in source (parity, ...) or a task file")
    p.add_argument("--max-steps", type=int, help="inference step budget (default: the model's)")
    p.add_argument("--split", default="val", help="evaluate these rows (all rows if none match)")
    p.add_argument("--count", type=int, help="tasks from a built-in source / first N of a file")
    p.add_argument("--size", type=int, help="a built-in source's size (e.g. parity length)")
    p.add_argument("--seed", type=int, default=0, help="a built-in source's seed")
    p.add_argument("--max-rows", type=int, default=2048, help="evaluate at most this many rows")
    p.add_argument(
        "--vote",
        type=int,
        metavar="N",
        help="also the field's numbers: ARC pass@1/pass@2 voting over N views (dihedral x"
        " colours), sudoku/maze exact per puzzle and per cell (split, else test rows)",
    )
    p.add_argument(
        "--calibrate",
        nargs="?",
        const="val",
        metavar="SPLIT",
        help="choose the stopping settings on these rows (default val) and report accuracy and"
        " steps before and after; without it the checkpoint's stored settings are used",
    )
    add_trace_arguments(p)
    p.add_argument("--tracking-uri", help="MLflow tracking URI (models:/ runs:/ and logging)")
    p.add_argument("--experiment", help="log the evaluation as a run in this MLflow experiment")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refiner-eval-") as scratch:
        with input_checks(CheckpointError):
            if is_mlflow_uri(args.checkpoint) or args.experiment:  # else no MLflow import
                from refiner import tracking
                from refiner.tracking import evaluation_log as eval_tracking

                tracking_uri = tracking.resolve_tracking_uri(args.tracking_uri)
                tracking.check_tracking_store(tracking_uri)
                path = eval_tracking.fetch_checkpoint(args.checkpoint, tracking_uri, scratch)
            else:
                path = local_checkpoint_file(args.checkpoint)
            tasks = evaluation_tasks(path, args.task, args.count, args.size, args.seed)
            calibrated = None
            if args.calibrate is not None:
                calibrated = calibrate_checkpoint(
                    path, tasks, args.max_steps, args.split, args.calibrate, args.max_rows
                )
                report = calibrated.after
            else:
                report = evaluate_checkpoint(path, tasks, args.max_steps, args.split, args.max_rows)
            if args.trace is not None:  # the canvas step by step, as runs draw it
                print(trace_checkpoint(path, tasks, args.trace, args.trace_out, args.split))
            voted = None
            if args.vote is not None:  # the field's metrics: exact per puzzle, ARC pass@k
                voted = benchmark_report(
                    path, tasks, args.vote, args.split, args.max_steps, args.max_rows, args.seed
                )

        print(describe_evaluation(report, args.checkpoint, args.task))
        if calibrated is not None:
            print(calibrated.summary())
        if voted is not None:
            print(voted.summary())
        if args.experiment:
            extra = voted.metrics("eval_") if voted is not None else {}
            run_id = eval_tracking.log_evaluation(
                tracking_uri,
                args.experiment,
                report,
                args.checkpoint,
                args.task,
                scratch,
                extra,
                calibrated.calibration if calibrated is not None else None,
            )
            print(f"MLflow run {run_id} in experiment {args.experiment!r} at {tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
