"""Batch prediction on Ray Data: infer-few over a task table on a pool of model actors.

Every actor loads the model once (a callable class under ``ActorPoolStrategy``) from
the checkpoint's bytes, which travel through Ray's object store, so nodes need no shared
filesystem. Rows carry their input position and come back in input order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from refiner.infer.prediction import DEFAULT_BATCH_SIZE, Predictor

ROW = "__row__"  # input position, so the output can be put back in input order


class PredictActor:
    """One model per actor, loaded from the checkpoint bytes in ``checkpoint[0]`` (a ref);
    ``__call__`` predicts a batch (a pyarrow table)."""

    def __init__(
        self,
        checkpoint: list[ray.ObjectRef],
        max_steps: int | None,
        early_stopping: bool | None,
        use_gpu: bool,
        threads: int,
    ) -> None:
        data = ray.get(checkpoint[0])
        torch.set_num_threads(threads)  # actors share the node's cores
        device = "cuda" if use_gpu else "cpu"
        with tempfile.TemporaryDirectory(prefix="refiner-predict-") as scratch:
            path = Path(scratch) / "checkpoint.pt"
            path.write_bytes(data)
            self.predictor = Predictor.from_checkpoint(path, device)
        self.max_steps, self.early_stopping = max_steps, early_stopping

    def __call__(self, batch: pa.Table) -> pa.Table:
        predictions = self.predictor.predict(
            batch.drop_columns([ROW]),
            self.max_steps,
            self.early_stopping,
            batch_size=batch.num_rows,
        )
        return predictions.append_column(ROW, batch.column(ROW))


def predict_on_ray(
    checkpoint: str | Path,
    tasks: pa.Table,
    num_workers: int = 2,
    use_gpu: bool = False,
    max_steps: int | None = None,
    early_stopping: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cpus_per_worker: float = 1.0,
) -> pa.Table:
    """Predictions for every row of a validated task table, in input order.

    Ray must be initialised. ``tasks`` is in UNLABELLED_SCHEMA (targets optional).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers: must be >= 1, got {num_workers}")
    payload = ray.put(Path(checkpoint).read_bytes())
    rows = tasks.append_column(ROW, pa.array(range(tasks.num_rows), pa.int64()))
    # One block per batch: a single block would reach a single actor.
    blocks = [rows.slice(start, batch_size) for start in range(0, rows.num_rows, batch_size)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        PredictActor,
        fn_constructor_args=(
            [payload],  # nested: the actor fetches it (a top-level ref would pin restarts)
            max_steps,
            early_stopping,
            use_gpu,
            max(1, int(cpus_per_worker)),
        ),
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
        num_gpus=1 if use_gpu else 0,
    )
    parts = [ray.get(ref) for ref in dataset.to_arrow_refs()]
    out = pa.concat_tables(parts) if parts else None
    if out is None or out.num_rows != tasks.num_rows:
        got = 0 if out is None else out.num_rows
        raise RuntimeError(f"batch prediction returned {got} rows for {tasks.num_rows} inputs")
    order = pc.sort_indices(out, sort_keys=[(ROW, "ascending")])
    return out.take(order).drop_columns([ROW])
