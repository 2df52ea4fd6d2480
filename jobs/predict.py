"""Batch predictions of a trained refiner on Ray Data: one output row per input row.

    python jobs/predict.py --model models:/refiner-best/1 --input tasks.parquet --out preds.parquet
    python jobs/predict.py --model outputs/ray_results/RUN/checkpoint_000003 --input tasks.csv \\
        --out preds.parquet --max-steps 4 --num-workers 4
    ray job submit --working-dir . -- python jobs/predict.py --model runs:/RUN_ID/checkpoint ...

--model: an MLflow models:/ or runs:/ URI (a refiner pyfunc model or a registered
checkpoint), a checkpoint.pt, or a checkpoint folder. --input: a task file (.parquet,
.jsonl, .csv) in the task format; targets are optional (accuracy is reported where they
exist). --out: a parquet file with task_id, prediction (token ids), decoded, steps_taken,
stopping_reason, score and correct; written atomically. Bad input exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from refiner.checkpoints.files import CheckpointError
from refiner.checkpoints.restore import is_mlflow_uri, local_checkpoint_file
from refiner.infer.prediction import (
    DEFAULT_BATCH_SIZE,
    Predictor,
    check_output_path,
    summarize,
    write_predictions,
)
from refiner.runs.cli import input_checks, job_main
from refiner.tasks.inputs import read_prediction_inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="models:/ or runs:/ URI, checkpoint or folder")
    p.add_argument("--input", required=True, help="task file: .parquet, .jsonl or .csv")
    p.add_argument("--out", required=True, help="predictions file (.parquet)")
    p.add_argument("--max-steps", type=int, help="inference step budget (default: the model's)")
    p.add_argument(
        "--no-early-stopping", action="store_true", help="run every row to the step budget"
    )
    p.add_argument("--num-workers", type=int, default=2, help="model actors (default 2)")
    p.add_argument("--gpu", action="store_true", help="one GPU per actor")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per batch")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/")
    p.add_argument("--address", help="Ray cluster to attach to (default: RAY_ADDRESS or local)")
    return p.parse_args(argv)


@job_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="refiner-predict-") as scratch:
        with input_checks(CheckpointError):  # bad input: "error: ...", exit 2, nothing written
            if is_mlflow_uri(args.model):  # MLflow only for an MLflow URI
                from refiner.tracking.logged_model import fetch_model_checkpoint

                checkpoint = fetch_model_checkpoint(args.model, args.tracking_uri, scratch)
            else:
                checkpoint = local_checkpoint_file(args.model)
            predictor = Predictor.from_checkpoint(checkpoint)  # fails here, not in every actor
            predictor.check_max_steps(args.max_steps)
            tasks = read_prediction_inputs(args.input)
            predictor.check_fits(tasks, args.input)
            check_output_path(args.out)
            if args.num_workers < 1 or args.batch_size < 1:
                raise ValueError("--num-workers and --batch-size must be >= 1")

        # Ray only once the inputs are good
        from refiner.distributed.cluster import init_ray
        from refiner.distributed.predict import predict_on_ray

        print(f"[refiner] {init_ray(args.address, args.num_workers + 1)}", flush=True)
        started = time.perf_counter()
        predictions = predict_on_ray(
            checkpoint,
            tasks,
            num_workers=args.num_workers,
            use_gpu=args.gpu,
            max_steps=args.max_steps,
            early_stopping=False if args.no_early_stopping else None,
            batch_size=args.batch_size,
        )
        elapsed = time.perf_counter() - started
        write_predictions(predictions, args.out)

    print("\n=== predictions ===")
    print(f"model: {args.model}")
    print(f"input: {args.input}")
    stopping = predictor.stopping(args.max_steps, False if args.no_early_stopping else None)
    for line in summarize(predictions, stopping).lines():
        print(line)
    print(f"throughput: {predictions.num_rows / elapsed:.1f} rows/s ({elapsed:.1f} s)")
    print(f"written: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
