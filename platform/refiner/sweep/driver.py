"""Run (or resume) a sweep: Tuner over the trainable, MLflow parent/children, best trial.

``run_sweep`` is what ``jobs/sweep.py`` and the tests call, with Ray initialised.
A ``SweepPlan`` (the resolved base config, the space, where things go) is written
next to Tune's experiment folder, so ``--resume NAME`` needs nothing else.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import ray
from ray import tune

from refiner.config import ConfigError
from refiner.distributed.storage import filesystem, list_checkpoints
from refiner.distributed.trainer import resolve_storage
from refiner.experiment import ExperimentConfig, TrainingConfig
from refiner.sweep.callbacks import SweepProgress
from refiner.sweep.export import export_config
from refiner.sweep.space import SearchSpace, SweepSettings, parse_space, trial_config
from refiner.sweep.trainable import TrialContext, run_trial, trial_run_name
from refiner.sweep.tune_space import param_space, resolved_budget, scheduler, search_algorithm

PLAN_FILE = "refiner_sweep.json"
DATA_CPUS = 1.0  # per running trial, for its Ray Data augmentation tasks


@dataclass
class SweepPlan:
    name: str
    space: dict[str, Any]  # SearchSpace.to_dict() (parse_space reads it back)
    space_origin: str
    base: dict[str, Any]  # the resolved run config (ExperimentConfig.to_dict())
    storage: str
    tracking_uri: str
    experiment: str
    register_name: str | None = None
    out_dir: str = "outputs/sweeps"

    @property
    def experiment_path(self) -> str:
        return f"{self.storage}/{self.name}"

    @property
    def trials_storage(self) -> str:
        """The trials' Train runs live beside (not inside) Tune's experiment folder."""
        return f"{self.storage}/{self.name}.trials"

    def search_space(self) -> SearchSpace:
        return parse_space(self.space, self.space_origin)

    def save(self) -> None:
        fs, path = filesystem(self.experiment_path)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{PLAN_FILE}") as f:
            f.write(json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, storage: str | None, name: str) -> SweepPlan:
        fs, path = filesystem(f"{resolve_storage(storage)}/{name}/{PLAN_FILE}")
        try:
            with fs.open_input_stream(path) as f:
                return cls(**json.loads(f.read()))
        except (OSError, FileNotFoundError):
            raise FileNotFoundError(
                f"no sweep {name!r} in {resolve_storage(storage)} (missing {PLAN_FILE})"
            ) from None


@dataclass
class TrialSummary:
    trial_id: str
    run_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    status: str  # "done", "stopped" (by the scheduler) or "error"

    @property
    def steps(self) -> int:
        return int(self.metrics.get("step", 0) or 0)


@dataclass
class SweepOutcome:
    name: str
    metric: str
    mode: str
    trials: list[TrialSummary]
    best: TrialSummary | None
    parent_run_id: str | None
    best_run_id: str | None = None
    best_config: str | None = None
    model_uri: str | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return sum(t.steps for t in self.trials)

    @property
    def errored(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == "error"]


def check_trial_training(training: TrainingConfig) -> None:
    """Under Tune, Ray Train's in-process mode (num_workers=0) has no train context."""
    if training.num_workers < 1:
        raise ConfigError(
            "training.num_workers: a sweep trial needs >= 1 Ray Train worker (0 would train "
            "inside the Tune trial process, where Ray Train refuses to run); use 1 worker "
            "with a fractional training.cpus_per_worker on small machines"
        )


def trial_cpus(settings: SweepSettings, training: TrainingConfig) -> float:
    """The trial driver only waits for its Train run: a small CPU share unless told."""
    return settings.cpus_per_trial if settings.cpus_per_trial is not None else 0.25


def trial_footprint(settings: SweepSettings, training: TrainingConfig) -> float:
    return trial_cpus(settings, training) + training.num_workers * training.cpus_per_worker


def max_concurrent(settings: SweepSettings, training: TrainingConfig, cluster_cpus: float) -> int:
    """As many trials as the CPUs hold at once, each with a CPU for its Ray Data tasks.

    Ray Data (2.60) shares the CPUs that nothing has reserved among the running datasets;
    a trial whose share falls below one CPU never gets its augmentation task scheduled
    and stalls, so every trial counts one data CPU besides its driver and workers.
    """
    if settings.max_concurrent_trials is not None:
        return settings.max_concurrent_trials
    per_trial = trial_footprint(settings, training) + DATA_CPUS
    return max(1, math.floor(cluster_cpus / per_trial + 1e-9))


class SweepTracking(Protocol):
    """The tracking layer's sweep API (``refiner.tracking.sweeps``), handed in by the job.

    The driver is distributed-layer code: it may not import the tracking layer (see
    DESIGN.md, layers), so the MLflow side of a sweep arrives as a parameter.
    """

    STOPPED_TAG: str
    ChildRuns: Any

    def open_parent_run(self, *args: Any, **kwargs: Any) -> Any: ...

    def record_best(self, *args: Any, **kwargs: Any) -> None: ...

    def register_checkpoint(self, *args: Any, **kwargs: Any) -> str: ...


def run_sweep(
    plan: SweepPlan,
    tasks: pa.Table,
    resume: bool = False,
    num_samples: int | None = None,
    *,
    tracking: SweepTracking,
) -> SweepOutcome:
    """Run the sweep to the end (or resume it); returns the trials and the best one.

    ``tracking``: the MLflow side, normally the module ``refiner.tracking.sweeps``.
    """
    started = time.perf_counter()
    space = plan.search_space()
    settings = space.settings
    sched = settings.scheduler
    config = ExperimentConfig.from_dict(plan.base)
    training = config.training
    check_trial_training(training)
    steps = training.steps
    max_t, grace = resolved_budget(sched, steps, training.report_every)
    scheduler_params = {**asdict(sched), "max_t": max_t, "grace_period": grace}
    swept = tuple(space.params)

    parent = tracking.open_parent_run(
        plan.tracking_uri, plan.experiment, plan.name, space.to_dict(), scheduler_params
    )
    children = tracking.ChildRuns(
        plan.tracking_uri, plan.experiment, plan.name, parent.run_id, swept
    )
    context = TrialContext(plan.name, plan.base, plan.trials_storage, open_tracker=children.open)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context, tasks=tasks),
        {"CPU": trial_cpus(settings, training)},
    )
    # Validation metrics come with checkpoints only; ASHA skips the reports without them.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    progress = SweepProgress(plan.name, sched.metric, steps, swept, children.close)
    try:
        if resume:
            tuner = tune.Tuner.restore(
                plan.experiment_path, trainable=trainable, resume_errored=True
            )
        else:
            plan.save()
            concurrency = max_concurrent(settings, training, ray.cluster_resources().get("CPU", 1))
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(space, settings.seed, plan.base),
                tune_config=tune.TuneConfig(
                    num_samples=num_samples or settings.num_samples,
                    scheduler=scheduler(sched, steps, training.report_every),
                    # The generator limits concurrency itself (Tune ignores
                    # max_concurrent_trials beside a generator instance).
                    search_alg=search_algorithm(settings.seed, concurrency),
                    trial_dirname_creator=trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=plan.name,
                    storage_path=plan.storage,
                    callbacks=[progress],
                    failure_config=tune.FailureConfig(max_failures=0),
                    verbose=0,
                ),
            )
        grid = tuner.fit()
    except KeyboardInterrupt:
        parent.finish("KILLED")
        raise
    except BaseException:
        parent.finish("FAILED")
        raise

    trials = [_summary(plan.name, r, steps) for r in grid]
    # Trial processes are gone now: settle every child run's status (a stopped trial's
    # driver may have been killed mid-write, after the callback closed its run).
    for t in trials:
        status = "FAILED" if t.status == "error" else "FINISHED"
        children.close(
            t.run_name, status, {tracking.STOPPED_TAG: str(t.status == "stopped").lower()}
        )
    outcome = SweepOutcome(plan.name, sched.metric, sched.mode, trials, None, parent.run_id)
    scored = [t for t in trials if _finite(t.metrics.get(sched.metric)) and t.status != "error"]
    if scored:
        sign = 1 if sched.mode == "max" else -1
        # Ties (e.g. exact match still 0 on a short budget) go to more steps, lower loss.
        best = max(
            scored,
            key=lambda t: (sign * t.metrics[sched.metric], t.steps, -_loss(t.metrics)),
        )
        outcome.best = best
        _finish_best(plan, outcome, best, children, parent, tracking)
    outcome.elapsed_s = time.perf_counter() - started
    parent.set_tags(
        {"refiner.trials": str(len(trials)), "refiner.errored_trials": str(len(outcome.errored))}
    )
    # An errored trial leaves the sweep incomplete until `--resume` finishes it.
    parent.finish("FAILED" if outcome.errored else "FINISHED")
    return outcome


def _finish_best(
    plan: SweepPlan,
    outcome: SweepOutcome,
    best: TrialSummary,
    children: Any,
    parent: Any,
    tracking: SweepTracking,
) -> None:
    run_id = children.run_id(best.run_name)
    outcome.best_run_id = run_id
    config = trial_config(plan.base, best.params)
    outcome.best_config = str(
        export_config(config, Path(plan.out_dir) / plan.name / "best_config.yaml")
    )
    if run_id is None:
        outcome.notes.append(f"no MLflow run found for the best trial {best.trial_id}")
        return
    metrics = {k: float(v) for k, v in best.metrics.items() if _finite(v) and k not in _TUNE_KEYS}
    tracking.record_best(parent, run_id, best.trial_id, metrics, outcome.best_config)
    if plan.register_name:
        checkpoints = list_checkpoints(f"{plan.trials_storage}/{best.run_name}")
        local = (
            f"{checkpoints[-1][1]}/checkpoint.pt"
            if checkpoints and "://" not in checkpoints[-1][1]
            else None
        )
        outcome.model_uri = tracking.register_checkpoint(
            plan.tracking_uri, run_id, plan.register_name, local
        )


# Tune's bookkeeping in every result: not training metrics, never logged to MLflow.
_TUNE_KEYS = frozenset(
    "timestamp training_iteration time_this_iter_s time_total_s pid time_since_restore "
    "iterations_since_restore done trial_id date hostname node_ip checkpoint_dir_name "
    "should_checkpoint".split()
)


def trial_dirname(trial: Any) -> str:
    """Trial folders named by trial id alone (module level: Tune pickles it)."""
    return str(trial.trial_id)


def _summary(sweep_name: str, result: Any, steps: int) -> TrialSummary:
    metrics = dict(result.metrics or {})
    trial_id = Path(result.path).name  # trial_dirname
    if result.error is not None:
        status = "error"
    else:
        status = "done" if int(metrics.get("step", 0) or 0) >= steps else "stopped"
    return TrialSummary(
        trial_id, trial_run_name(sweep_name, trial_id), dict(result.config or {}), metrics, status
    )


def _loss(metrics: dict[str, Any]) -> float:
    loss = metrics.get("loss")
    return float(loss) if _finite(loss) else math.inf


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
