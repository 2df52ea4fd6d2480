"""Evaluate a checkpoint: infer-few on a task source or file, with a chosen step budget.

    python jobs/evaluate.py --checkpoint outputs/ray_results/RUN/checkpoint_000001 --task parity
    python jobs/evaluate.py --checkpoint models:/refiner-best/1 --task tasks.parquet --max-steps 2
    python jobs/evaluate.py --checkpoint runs:/RUN_ID/checkpoint --task parity \\
        --tracking-uri sqlite:////abs/mlflow.db --experiment refiner-eval

--checkpoint: a checkpoint.pt file, a Ray checkpoint folder holding one, or an MLflow
models:/ or runs:/ URI. Prints exact-match accuracy, the refinement curve, how many
steps inference took (a histogram) and why it stopped; --experiment logs them to MLflow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from refiner.checkpoint import CheckpointError, read_checkpoint
from refiner.config import ConfigError
from refiner.experiment import TaskConfig, load_task_table
from refiner.predictors import benchmark_report
from refiner.sweep.checkpoints import (
    MLFLOW_SCHEMES,
    evaluate_checkpoint,
    local_checkpoint_file,
    steps_histogram,
)
from refiner.tasks.validation import TaskFileError
from refiner.tracking import TrackingError, check_tracking_store, resolve_tracking_uri, tracked_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint.pt, its folder, or an MLflow URI"
    )
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
    p.add_argument("--tracking-uri", help="MLflow tracking URI (models:/ runs:/ and logging)")
    p.add_argument("--experiment", help="log the evaluation as a run in this MLflow experiment")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refiner-eval-") as scratch:
        try:
            tracking_uri = resolve_tracking_uri(args.tracking_uri)
            if args.checkpoint.startswith(MLFLOW_SCHEMES) or args.experiment:
                check_tracking_store(tracking_uri)
            path = _local(args.checkpoint, tracking_uri, scratch)
            source = read_checkpoint(path)["extra"].get("experiment", {}).get("task", {})
            task = TaskConfig(source=args.task, count=args.count, size=args.size)
            if args.task == source.get("source"):  # default to the data it was trained on
                task.size = args.size if args.size is not None else source.get("size")
                task.count = args.count if args.count is not None else source.get("count")
            tasks = load_task_table(task, args.seed)
            report = evaluate_checkpoint(path, tasks, args.max_steps, args.split, args.max_rows)
            field = None
            if args.vote is not None:
                field = benchmark_report(
                    path, tasks, args.vote, args.split, args.max_steps, args.max_rows, args.seed
                )
        except (
            CheckpointError,
            ConfigError,
            TaskFileError,
            TrackingError,
            ValueError,
            OSError,
        ) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

        print(f"checkpoint: {args.checkpoint}")
        print(f"tasks: {args.task} ({report.rows} rows)")
        print(report.summary())
        print(f"accuracy (infer-few, max {report.max_steps_infer} steps): {report.acc_infer:.4f}")
        print("steps taken: " + ", ".join(f"{k}: {v}" for k, v in steps_histogram(report).items()))
        print(
            "stopping reasons: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(report.stopping_reasons.items()))
        )
        if field is not None:
            print(field.summary())
        if args.experiment:
            name = f"eval-{Path(args.task).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            with tracked_run(
                tracking_uri, args.experiment, name, {"refiner.kind": "evaluation"}
            ) as run:
                run.log_params(
                    {
                        "checkpoint": args.checkpoint,
                        "task": args.task,
                        "max_steps": report.max_steps_infer,
                        "rows": report.rows,
                    }
                )
                run.log_metrics(report.metrics("eval_"), step=0)
                if field is not None:
                    run.log_metrics(field.metrics("eval_"), step=0)
                for t, value in enumerate(report.acc_at, start=1):
                    run.log_metrics({"eval_acc_at_t": value}, step=t)
                for plot in report.plots(scratch):
                    run.log_artifact(str(plot), "plots")
            print(f"MLflow run {run.run_id} in experiment {args.experiment!r} at {tracking_uri}")
    return 0


def _local(checkpoint: str, tracking_uri: str, scratch: str) -> Path:
    if checkpoint.startswith(MLFLOW_SCHEMES):
        from refiner.tracking.sweeps import download_checkpoint  # MLflow only when asked for

        try:
            return Path(download_checkpoint(checkpoint, tracking_uri, scratch))
        except Exception as err:  # MLflow raises several types for a bad URI
            raise CheckpointError(
                f"{checkpoint}: cannot download from {tracking_uri}: {err}"
            ) from None
    return local_checkpoint_file(checkpoint)


if __name__ == "__main__":
    sys.exit(main())
