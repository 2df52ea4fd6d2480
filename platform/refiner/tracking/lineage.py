"""A run's inputs and its machine's load in MLflow: the task dataset and system metrics.

The dataset input is built from ``refiner.runs.provenance.TaskDataset`` (name, digest, row
count, splits, source): a task file is a local (or URI) dataset source, a built-in
source a code source whose tags hold its settings. MLflow shows it on the run's page
and ``mlflow.search_runs``/``MlflowClient.get_run(...).inputs`` return it.

System metrics come from MLflow's own ``SystemMetricsMonitor`` (CPU, memory, disk,
network; GPU utilisation and memory when ``nvidia-ml-py`` finds a GPU), started by rank 0
in the process that trains, so on a cluster they describe the rank-0 node (named in the
metric keys, ``system/<node>/...``, only when ``MLFLOW_SYSTEM_METRICS_NODE_ID`` is set).
It samples every 10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``); one last sample is
logged when training ends, so even a short run has some.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, InputTag

from refiner.runs.provenance import TaskDataset

CONTEXT_TAG = "mlflow.data.context"  # MLflow's tag for the role of a dataset input
_logger = logging.getLogger(__name__)
_STOP_TIMEOUT_S = 30.0


def dataset_input(dataset: TaskDataset, context: str = "training") -> DatasetInput:
    """The MLflow dataset input of a run's task table."""
    if dataset.is_file:
        source = resolve_dataset_source(dataset.source)
    else:
        source = CodeDatasetSource({"refiner.source": dataset.source, **dataset.options})
    described = MetaDataset(source, name=dataset.name, digest=dataset.digest).to_dict()
    profile = {
        "num_rows": dataset.num_rows,
        "splits": dataset.splits,
        "task_types": dataset.task_types,
    }
    entity = Dataset(
        name=described["name"],
        digest=described["digest"],
        source_type=described["source_type"],
        source=described["source"],
        profile=json.dumps(profile),
    )
    return DatasetInput(entity, tags=[InputTag(CONTEXT_TAG, context)])


@contextmanager
def system_metrics(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Log the machine's load into the run while the block runs (best effort).

    Missing ``psutil`` (MLflow needs it) turns the metrics off with one warning; a
    failure to log never fails training.
    """
    # MLflow says "Started/Stopping monitoring" at INFO: not worth a console line.
    # Its "Failed to get mlflow run" warnings in an outage: the tracker's own line says it.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.ERROR)
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, resume_logging=True, tracking_uri=tracking_uri)
    except ImportError as err:
        warnings.warn(f"no system metrics for this run ({err}; pip install psutil)", stacklevel=2)
        yield
        return
    monitor.start()
    try:
        yield
    finally:
        _stop_within(monitor, _STOP_TIMEOUT_S)


def _stop_within(monitor: Any, timeout_s: float) -> None:  # SystemMetricsMonitor (untyped)
    """Stop the monitor and log its last sample, waiting at most ``timeout_s``: with the
    tracking server away, its writes sit in MLflow's HTTP retries for minutes, and the
    end of training must not wait on system metrics."""
    stopper = threading.Thread(target=_finish, args=(monitor,), daemon=True)
    stopper.start()
    stopper.join(timeout_s)
    if stopper.is_alive():
        _logger.warning("the last system metrics were not recorded: MLflow did not answer")


def _finish(monitor: Any) -> None:
    monitor.finish()
    _last_sample(monitor)


def _last_sample(monitor: Any) -> None:
    """The monitor drops the samples of an unfinished interval: log one final sample."""
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as err:  # noqa: BLE001 (metrics are best effort, training is not)
        _logger.warning("could not log the last system metrics sample: %s", err)
