"""MLflow: this package is the only code that imports it (sweeps: ``.sweeps``).

One training job = one MLflow run. The driver opens (or, for a resumed run name, reopens)
the run and hands an ``MlflowTracker`` (picklable: a URI and a run id) to rank 0, which
logs into that same run; the driver closes it as FINISHED, FAILED or KILLED. A sweep adds
one parent run whose children are the trials (tag ``mlflow.parentRunId``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH

from refiner.infer.serving import ServingProfile
from refiner.runs.provenance import TaskDataset, run_provenance
from refiner.runs.tracker import flatten
from refiner.runs.tracking_store import (  # noqa: F401  (re-exported: the jobs' names)
    TrackingError,
    check_tracking_store,
    resolve_tracking_uri,
)
from refiner.tracking.lineage import dataset_input, system_metrics

# "Creating initial MLflow database tables..." on a store's first use: not a console line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)

RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
_PARAMS_PER_BATCH = 100


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Keep a local store's artifacts next to its database, whatever the cwd is."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment).as_uri()
    return None  # a tracking server decides its own artifact store


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    return client.create_experiment(
        name, artifact_location=_artifact_location(client.tracking_uri, name)
    )


def _scalar(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


class MlflowTracker:
    """A ``RunTracker`` writing into one existing MLflow run. Safe to pickle to a worker."""

    def __init__(self, tracking_uri: str, run_id: str, register_name: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.register_name = register_name  # log_model registers under this name
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "register_name": self.register_name,
            "_client": None,
        }

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [
            Param(key, str(value)[:MAX_PARAM_VAL_LENGTH]) for key, value in flatten(params).items()
        ]
        existing = self.client.get_run(self.run_id).data.params
        # A resumed run already holds its params; MLflow refuses to change a logged value.
        items = [p for p in items if p.key not in existing]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        items = []
        for key, value in metrics.items():
            number = _scalar(value)
            if number is not None:
                items.append(Metric(key, number, now, int(step)))
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        if os.path.isdir(local_path):
            self.client.log_artifacts(self.run_id, local_path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, local_path, artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dataset(self, dataset: TaskDataset) -> None:
        """The run's task table as an MLflow dataset input (once per digest)."""
        logged = self.client.get_run(self.run_id).inputs.dataset_inputs
        if any(d.dataset.digest == dataset.digest for d in logged):
            return  # a resumed run read the same tasks again
        try:
            self.client.log_inputs(self.run_id, datasets=[dataset_input(dataset)])
        except MlflowException as err:
            # Two sweep trials starting together both create the experiment's dataset row
            # (MLflow's SQL store checks, then inserts); the loser links the winner's row.
            if "UNIQUE constraint failed: datasets" not in str(err):
                raise
            self.client.log_inputs(self.run_id, datasets=[dataset_input(dataset)])

    @contextmanager
    def while_training(self) -> Iterator[None]:
        """Rank 0's training: the CPU, memory (and GPU) of this process's machine logged
        into the run, and MLflow's HTTP calls failing fast (``buffered.fail_fast_http``)."""
        from refiner.tracking.buffered import fail_fast_http

        with fail_fast_http(), system_metrics(self.tracking_uri, self.run_id):
            yield

    def log_model(
        self,
        checkpoint_path: str,
        step: int,
        metrics: Mapping[str, float],
        profile: ServingProfile | None = None,
        register: bool = True,
    ) -> str | None:
        """The checkpoint as this run's pyfunc model (``refiner.tracking.logged_model``), linked
        to the run and its metrics at ``step``; with ``register``, the run's model: tagged and
        registered when ``register_name`` is set.
        Returns ``models:/NAME/VERSION`` when registered, else ``models:/<model_id>``."""
        from refiner.tracking.logged_model import log_refiner_model

        if not register:  # a resumed run keeps earlier checkpoints: one model per step
            earlier = self._logged_model_at(step)
            if earlier is not None:
                return earlier
        logged = log_refiner_model(
            self.tracking_uri,
            self.run_id,
            checkpoint_path,
            step,
            {k: v for k, v in metrics.items() if _scalar(v) is not None},
            self.register_name if register else None,
            profile,
        )
        if register:  # the run's model: the one registered (or that would be)
            tags = {"refiner.model_uri": logged.model_uri}
            if logged.registered_uri:
                tags["refiner.registered_model"] = logged.registered_uri
            self.set_tags(tags)
        return logged.registered_uri or logged.model_uri

    def _logged_model_at(self, step: int) -> str | None:
        """The model this run already logged for the checkpoint at ``step``, if any."""
        run = self.client.get_run(self.run_id)
        for model in self.client.search_logged_models([run.info.experiment_id]):
            if model.source_run_id == self.run_id and model.tags.get("refiner.step") == str(step):
                return str(model.model_uri)
        return None

    def for_training(self) -> MlflowTracker:
        """A ``BufferedTracker`` on the same run (``refiner.tracking.buffered``)."""
        from refiner.tracking.buffered import BufferedTracker

        return BufferedTracker(self.tracking_uri, self.run_id)

    def flush(self, timeout_s: float) -> dict[str, Any]:
        return {}  # every call above writes at once

    def settle(self, timeout_s: float) -> bool:
        return True

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def find_run(
    client: MlflowClient, experiment_id: str, run_name: str, parent_run_id: str | None = None
):
    """The newest live run with this name (and parent), or None."""
    query = f"tags.`{RUN_NAME_TAG}` = '{run_name}'"
    if parent_run_id:
        query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    runs = client.search_runs(
        [experiment_id],
        query,
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def open_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> MlflowTracker:
    """Create the run, or reopen the one with the same name (a resumed training run)."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment)
    existing = find_run(client, experiment_id, run_name, parent_run_id)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    if existing is not None:
        run_id = existing.info.run_id
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        tracker = MlflowTracker(tracking_uri, run_id)
        if all_tags:
            tracker.set_tags(all_tags)
        return tracker
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return MlflowTracker(tracking_uri, run.info.run_id)


@contextmanager
def tracked_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[MlflowTracker]:
    """Open a run and guarantee it ends FINISHED, FAILED or KILLED, never left RUNNING.

    Called by the driver: the run is tagged with where it came from (code version, user,
    command line: ``refiner.runs.provenance.run_provenance``).
    """
    tags = {**run_provenance(), **(tags or {})}
    tracker = open_run(tracking_uri, experiment, run_name, tags, parent_run_id)
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    else:
        tracker.finish("FINISHED")
