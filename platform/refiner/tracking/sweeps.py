"""The sweep's MLflow side: one parent run, one child run per trial, the best trial
tagged and its checkpoint registered; and reading a sweep back (``jobs/compare.py``).

Part of the tracking layer, the only code that imports MLflow: runs are opened and
reopened through ``refiner.tracking`` (nesting by the ``mlflow.parentRunId`` tag); the
registry and artifact downloads are here.
Nothing logs Tune's bookkeeping (``done``, ``pid``, ``config/*``): a child run holds the
run config as params and what rank 0 of its training run logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from refiner.runs.provenance import run_provenance
from refiner.runs.tracker import flatten
from refiner.tracking import (
    PARENT_TAG,
    RUN_NAME_TAG,
    MlflowTracker,
    find_run,
    get_or_create_experiment,
    open_run,
)
from refiner.tracking.console import mlflow_console_log_dir, quiet_mlflow_console

SWEEP_TAG = "refiner.sweep"  # on the parent and every child: the sweep's name
KIND_TAG = "refiner.kind"  # "sweep" (parent) or "trial" (child)
TRIAL_TAG = "refiner.trial_id"
SWEPT_TAG = "refiner.swept_keys"  # comma-separated dotted config keys
BEST_TAG = "refiner.best_trial"
STOPPED_TAG = "refiner.stopped_early"
FRONT_TAG = "refiner.pareto_front"  # "true" on the trials of a two-objective sweep's front
OBJECTIVES_TAG = "refiner.objectives"  # on the parent: "val_acc_infer:max,val_mean_steps:min"
CHECKPOINT_ARTIFACT = "checkpoint"  # run_training logs checkpoint.pt under this path


def open_parent_run(
    tracking_uri: str,
    experiment: str,
    sweep_name: str,
    space: Mapping[str, Any],
    scheduler: Mapping[str, Any],
) -> MlflowTracker:
    """The sweep's run (reopened on ``--resume``): the space and scheduler as params."""
    tags = {**run_provenance(), SWEEP_TAG: sweep_name, KIND_TAG: "sweep"}
    tracker = open_run(tracking_uri, experiment, sweep_name, tags)
    params = {
        "space": space.get("space", {}),
        "fixed": space.get("fixed", {}),
        "sweep": {k: v for k, v in space.get("sweep", {}).items() if k != "scheduler"},
        "scheduler": scheduler,
    }
    tracker.log_params({k: v for k, v in params.items() if v})
    return tracker


@dataclass
class ChildRuns:
    """Opens and closes the trials' child runs; picklable (shipped to trial drivers)."""

    tracking_uri: str
    experiment: str
    sweep_name: str
    parent_run_id: str
    swept_keys: tuple[str, ...]
    # Where the sweep came from, taken by the sweep's driver when it makes this object
    # (a trial runs in a Ray worker, whose command line and checkout are not the user's).
    provenance: dict[str, str] = field(default_factory=run_provenance)
    # Where the driver routes MLflow's console lines; a trial process logs its model, and
    # its INFO lines and download bars would reach the sweep's console through Ray's echo.
    console_log_dir: str | None = field(default_factory=mlflow_console_log_dir)

    def open(self, run_name: str, trial_id: str) -> MlflowTracker:
        """Create the trial's run, or reopen it when the trial resumes (one run per trial)."""
        if self.console_log_dir:
            quiet_mlflow_console(self.console_log_dir)
        tags = {
            **self.provenance,
            SWEEP_TAG: self.sweep_name,
            KIND_TAG: "trial",
            TRIAL_TAG: trial_id,
            SWEPT_TAG: ",".join(self.swept_keys),
        }
        return open_run(self.tracking_uri, self.experiment, run_name, tags, self.parent_run_id)

    def close(self, run_name: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        """End a trial's run from the sweep driver (a stopped trial's process is gone)."""
        run = self._find(run_name)
        if run is None:
            return
        tracker = MlflowTracker(self.tracking_uri, run.info.run_id)
        if tags:
            tracker.set_tags(tags)
        tracker.finish(status)

    def tags(self, run_name: str) -> dict[str, str]:
        run = self._find(run_name)
        return dict(run.data.tags) if run else {}

    def run_id(self, run_name: str) -> str | None:
        run = self._find(run_name)
        return run.info.run_id if run else None

    def _find(self, run_name: str) -> Run | None:
        """The trial's live run under this sweep's parent."""
        client = MlflowClient(self.tracking_uri)
        experiment_id = get_or_create_experiment(client, self.experiment)
        return find_run(client, experiment_id, run_name, self.parent_run_id)


def record_best(
    parent: MlflowTracker,
    best_run_id: str,
    trial_id: str,
    metrics: Mapping[str, float],
    config_path: str | None,
) -> None:
    """Tag the best child and put its result on the parent (metrics ``best_*``)."""
    MlflowTracker(parent.tracking_uri, best_run_id).set_tags({BEST_TAG: "true"})
    parent.set_tags({"refiner.best_run_id": best_run_id, "refiner.best_trial_id": trial_id})
    parent.log_metrics(
        {f"best_{k}": v for k, v in metrics.items()}, step=int(metrics.get("step", 0))
    )
    if config_path:
        parent.log_artifact(config_path)


def record_front(
    parent: MlflowTracker,
    objectives: Mapping[str, str],
    front_run_ids: list[str],
    artifacts: list[str],
    reason: str,
) -> None:
    """Tag the front's trials; the front's table and plot go under the parent's ``pareto/``."""
    for run_id in front_run_ids:
        MlflowTracker(parent.tracking_uri, run_id).set_tags({FRONT_TAG: "true"})
    order = ",".join(f"{m}:{mode}" for m, mode in objectives.items())
    parent.set_tags({OBJECTIVES_TAG: order, "refiner.front_size": str(len(front_run_ids))})
    if reason:
        parent.set_tags({"refiner.best_reason": reason[:5000]})
    for path in artifacts:
        parent.log_artifact(path, "pareto")


def register_checkpoint(
    tracking_uri: str, run_id: str, name: str, local_checkpoint: str | None = None
) -> str:
    """Register the run's MLflow model (the pyfunc model its training logged from the best
    checkpoint) as a new version of model ``name``; returns ``models:/NAME/VERSION``.

    A trial stopped before its model was logged (ASHA) has none yet: ``local_checkpoint``
    (its latest checkpoint.pt) is logged as the run's model first.
    """
    from refiner.tracking.logged_model import log_refiner_model

    client = MlflowClient(tracking_uri)
    model_uri = client.get_run(run_id).data.tags.get("refiner.model_uri")
    if model_uri is None:
        if local_checkpoint is None:
            raise FileNotFoundError(f"run {run_id} has no logged model or checkpoint to register")
        step = int(client.get_run(run_id).data.metrics.get("step", 0))
        logged = log_refiner_model(tracking_uri, run_id, local_checkpoint, step, None, name)
        return str(logged.registered_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    version = mlflow.register_model(model_uri, name)
    return f"models:/{name}/{version.version}"


# ----------------------------------------------------------------------------- reading back


@dataclass
class SweepRuns:
    parent: Run
    children: list[Run]

    @property
    def swept_keys(self) -> list[str]:
        for child in self.children:
            keys = child.data.tags.get(SWEPT_TAG)
            if keys:
                return keys.split(",")
        return sorted(k[len("space.") :] for k in self.parent.data.params if k.startswith("space."))

    @property
    def objectives(self) -> dict[str, str]:
        """A two-objective sweep's {metric: mode}, in the space's order; {} otherwise."""
        pairs = self.parent.data.tags.get(OBJECTIVES_TAG, "")
        return dict(pair.rsplit(":", 1) for pair in pairs.split(",") if ":" in pair)

    @property
    def metric(self) -> tuple[str, str]:
        params = self.parent.data.params
        return params.get("scheduler.metric", "val_acc_infer"), params.get("scheduler.mode", "max")


def load_sweep(
    tracking_uri: str, experiment: str | None = None, parent_run_id: str | None = None
) -> SweepRuns:
    """A sweep's parent and children: by parent run id, or the newest sweep of an experiment."""
    client = MlflowClient(tracking_uri)
    if parent_run_id:
        try:
            parent = client.get_run(parent_run_id)
        except MlflowException:
            raise LookupError(f"no MLflow run {parent_run_id} at {tracking_uri}") from None
        experiment_ids = [parent.info.experiment_id]
    else:
        found = client.get_experiment_by_name(experiment or "")
        if found is None:
            raise LookupError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
        experiment_ids = [found.experiment_id]
        parents = client.search_runs(
            experiment_ids,
            f"tags.`{KIND_TAG}` = 'sweep'",
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            raise LookupError(f"experiment {experiment!r} has no sweep run")
        parent = parents[0]
    children = client.search_runs(
        experiment_ids,
        f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1000,
    )
    return SweepRuns(parent, list(children))


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(tracking_uri)
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def run_name(run: Run) -> str:
    return run.data.tags.get(RUN_NAME_TAG, run.info.run_id)


def flat_params(config: Mapping[str, Any]) -> dict[str, Any]:
    return flatten(config)
