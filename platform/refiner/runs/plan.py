"""What a run will read and use, said before anything starts (``--dry-run``).

Pure Python (no Ray, no MLflow): the jobs validate their input, print this and exit
without starting Ray or opening an MLflow run. The local cluster size here is the one
``refiner.distributed.cluster.init_ray`` starts.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from refiner.config.experiment import ExperimentConfig, TrainingConfig
from refiner.runs.provenance import describe_task_dataset
from refiner.runs.tracker import lost_summary, outage_summary
from refiner.sweep.plan import (
    DATA_CPUS,
    SweepPlan,
    local_cluster_cpus,
    max_concurrent,
    trial_cpus,
    trial_footprint,
)

DRY_RUN_BANNER = "dry run: input checked; nothing started (no Ray, no MLflow run)"


def local_ray_cpus(min_logical_cpus: float = 0) -> int:
    """Logical CPUs of a local cluster: the machine's cores, at least ``min_logical_cpus``."""
    return max(os.cpu_count() or 1, math.ceil(min_logical_cpus))


def training_cluster_cpus(training: TrainingConfig) -> float:
    """The CPUs a training run needs from a local cluster: its workers and one for data."""
    return training.num_workers * training.cpus_per_worker + 1


def describe_tasks(config: ExperimentConfig, tasks: pa.Table) -> str:
    dataset = describe_task_dataset(config.task.source, tasks)
    counts = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "-"  # noqa: E731
    return "\n".join(
        [
            f"source:     {dataset.source} ({dataset.num_rows} rows, digest {dataset.digest})",
            f"splits:     {counts(dataset.splits)}",
            f"task types: {counts(dataset.task_types)}",
            f"seq_len:    {config.model.seq_len}",
        ]
    )


def _cluster(address: str | None, min_cpus: float) -> str:
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        return f"attach to the Ray cluster at {address}"
    return f"start a local Ray on 127.0.0.1 with {local_ray_cpus(min_cpus)} logical CPUs"


def _workers(training: TrainingConfig) -> str:
    if training.num_workers == 0:
        return "in the driver process (num_workers=0, Ray Train's local mode)"
    gpus = ", 1 GPU" if training.use_gpu else ", no GPU"
    return (
        f"{training.num_workers} Ray Train worker(s), each {training.cpus_per_worker:g} CPU{gpus}"
        f" and {training.torch_threads} torch thread(s)"
    )


def default_run_name(config: ExperimentConfig) -> str:
    """``<task source stem>-<local time>``: a fresh run (a given --run-name may resume one)."""
    return f"{Path(config.task.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class TrainingPlan:
    """What ``jobs/train.py`` will do, once its input is checked: the lines it prints."""

    config: ExperimentConfig
    tasks: pa.Table
    run_name: str
    address: str | None
    tracking_uri: str
    experiment: str
    storage: str
    recipe: str = ""  # which recipe and why (refiner.config.recipes.Recipe.explain)

    def describe(self) -> str:
        """The ``--dry-run`` report: config, tasks, resources, where results go."""
        training = self.config.training
        return "\n".join(
            [
                f"[refiner] {DRY_RUN_BANNER}",
                *([f"[refiner] {self.recipe}"] if self.recipe else []),
                "--- resolved config ---",
                self.config.to_yaml().rstrip(),
                "--- tasks ---",
                describe_tasks(self.config, self.tasks),
                "--- resources ---",
                f"ray:        {_cluster(self.address, training_cluster_cpus(training))}",
                f"workers:    {_workers(training)}",
                f"updates:    {training.steps} of {training.batch_size} rows per worker",
                "--- outputs ---",
                f"MLflow:     {self.tracking_uri}, experiment {self.experiment!r}, "
                f"run {self.run_name!r} (a resumed run's config is compared at start)",
                f"checkpoint: {self.storage}/{self.run_name}",
            ]
        )

    def start_line(self) -> str:
        training = self.config.training
        return (
            f"run {self.run_name!r}: {self.tasks.num_rows} tasks from {self.config.task.source}"
            f", {training.steps} updates on {max(1, training.num_workers)} worker(s), "
            f"MLflow {self.tracking_uri} (experiment {self.experiment!r})"
        )

    def summary(self, outcome: Any, run_id: str | None) -> str:
        """The closing summary (``outcome``: ``refiner.distributed.trainer.TrainingOutcome``)."""
        lines = ["", "=== summary ==="]
        if "evaluation_text" in outcome.summary:
            lines.append(outcome.summary["evaluation_text"])
        tracking = outcome.summary.get("tracking", {})
        lines += [
            f"updates: {outcome.summary.get('step')}  wall time: {outcome.elapsed_s:.0f} s",
            *[line for line in (outage_summary(tracking), lost_summary(tracking)) if line],
            *self._checkpoint_lines(outcome),
            f"MLflow run: {run_id} in experiment {self.experiment!r} at {self.tracking_uri}",
            f"  browse: {_browse_hint(self.tracking_uri)}",
        ]
        return "\n".join(lines)

    def _checkpoint_lines(self, outcome: Any) -> list[str]:
        """Where the latest checkpoint is and which one became the MLflow model: the best
        kept by ``training.checkpoint_score``, which a run that got worse at the end (a
        maze model that collapsed) does not share with the summary's final numbers."""
        score = self.config.training.checkpoint_score
        latest = _scored(outcome.metrics, score)
        lines = [f"checkpoint: {outcome.checkpoint}" + (f" (latest: {latest})" if latest else "")]
        model_uri = getattr(outcome, "model_uri", None)
        if not model_uri:
            return lines
        source = getattr(outcome, "model_checkpoint", None)
        model_metrics = getattr(outcome, "model_metrics", {})
        if source is None or source == outcome.checkpoint:
            best = f" (the best by {score})" if score in model_metrics else ""
            lines.append(f"model: {model_uri}, from that checkpoint{best}")
        else:
            best = _scored(model_metrics, score)
            best = f" ({best})" if best else ""
            lines.append(f"model: {model_uri}, from the best checkpoint by {score}{best}: {source}")
        return [*lines, *self._logged_models_line(getattr(outcome, "logged_models", []))]

    def _logged_models_line(self, logged: list[tuple[int, str]]) -> list[str]:
        """Which checkpoints have a logged model: the kept ones (docs/models.md says why)."""
        if len(logged) < 2:
            return []
        steps = ", ".join(str(step) for step, _ in logged)
        keep = self.config.training.num_to_keep
        return [
            f"logged models: {len(logged)}, one per kept checkpoint (updates {steps};"
            f" training.num_to_keep {keep})"
        ]


def _scored(metrics: dict[str, Any], score: str) -> str:
    """ "update N, <score> V" from a checkpoint's reported metrics; "" without them."""
    parts = []
    if isinstance(metrics.get("step"), int | float):
        parts.append(f"update {int(metrics['step'])}")
    if isinstance(metrics.get(score), int | float):
        parts.append(f"{score} {metrics[score]:.4f}")
    return ", ".join(parts)


def describe_sweep_plan(
    plan: SweepPlan, tasks: pa.Table, *, address: str | None, resume: bool = False
) -> str:
    """The ``--dry-run`` report of ``jobs/sweep.py``."""
    config, space = plan.config(), plan.search_space()
    settings, training = space.settings, config.training
    per_trial = trial_footprint(settings, training) + DATA_CPUS
    if address or os.environ.get("RAY_ADDRESS"):
        at_once = (
            str(settings.max_concurrent_trials)
            if settings.max_concurrent_trials is not None
            else f"as many as the cluster's CPUs hold ({per_trial:g} CPUs per trial)"
        )
    else:
        cpus = local_ray_cpus(local_cluster_cpus(settings, training))
        at_once = f"{max_concurrent(settings, training, cpus)} ({per_trial:g} CPUs per trial)"
    return "\n".join(
        [
            f"[sweep] {DRY_RUN_BANNER}",
            "--- resolved base config ---",
            config.to_yaml().rstrip(),
            "--- search space ---",
            f"{plan.space_origin}: {', '.join(space.params)}; "
            f"{settings.num_samples} sample(s), scheduler {settings.scheduler.type} on "
            f"{settings.scheduler.metric} ({settings.scheduler.mode}), search "
            + (
                f"optuna ({settings.search.sampler}, seed {settings.search_seed}, "
                f"{settings.search.n_startup_trials} startup trials)"
                if settings.search.type == "optuna"
                else f"random (seed {settings.search_seed})"
            )
            + (
                "; Pareto front over "
                + ", ".join(f"{m} ({d})" for m, d in settings.objectives.items())
                + f", best: within {settings.choose_within:g} of the top first objective"
                if settings.objectives
                else ""
            ),
            "--- tasks ---",
            describe_tasks(config, tasks),
            "--- resources ---",
            f"ray:           {_cluster(address, local_cluster_cpus(settings, training))}",
            f"trial driver:  {trial_cpus(settings, training):g} CPU",
            f"workers:       {_workers(training)} per trial",
            f"trials at once: {at_once}",
            "--- outputs ---",
            f"MLflow:     {plan.tracking_uri}, experiment {plan.experiment!r}, "
            f"parent run {plan.name!r}" + (" (resumed)" if resume else ""),
            f"storage:    {plan.experiment_path}",
        ]
    )


def _browse_hint(tracking_uri: str) -> str:
    """A tracking server serves its own UI; a local store needs ``mlflow ui``."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri} in a browser"
    return f"mlflow ui --backend-store-uri {tracking_uri}"
