"""Run (or resume) a sweep: Tuner over the trial function, MLflow parent/children, best trial.

``run_sweep`` is what ``jobs/sweep.py`` and the tests call, with Ray initialised. The
plan (``refiner.sweep.plan.SweepPlan``: the resolved base config, the space, where
things go) is written next to Tune's experiment folder, so ``--resume NAME`` needs
nothing else.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import ray
from ray import tune

from refiner.checkpoints.storage import list_checkpoints
from refiner.distributed.pbt import population_history
from refiner.distributed.search import param_space, resolved_budget, scheduler, search_algorithm
from refiner.distributed.sweep_progress import SweepProgress
from refiner.distributed.trial import TrialContext, run_trial
from refiner.sweep.combinations import trial_config
from refiner.sweep.export import export_config
from refiner.sweep.outcome import SweepOutcome, TrialSummary, best_trial, finite
from refiner.sweep.pareto import choose, pareto_front, write_front_artifacts
from refiner.sweep.plan import (
    SweepPlan,
    check_trial_training,
    max_concurrent,
    trial_cpus,
    trial_footprint,
    trial_run_name,
)


class SweepTracking(Protocol):
    """The tracking layer's sweep API (``refiner.tracking.sweeps``), handed in by the job.

    The driver is Ray-layer code: it may not import the tracking layer (docs/layout.md),
    so the MLflow side of a sweep arrives as a parameter.
    """

    STOPPED_TAG: str
    ChildRuns: Any

    def open_parent_run(self, *args: Any, **kwargs: Any) -> Any: ...

    def record_best(self, *args: Any, **kwargs: Any) -> None: ...

    def record_front(self, *args: Any, **kwargs: Any) -> None: ...

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
    training = plan.config().training
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
    context = TrialContext(
        plan.name,
        plan.base,
        plan.trials_storage,
        open_tracker=children.open,
        population=sched.population,
    )
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
            cluster_cpus = ray.cluster_resources().get("CPU", 1)
            concurrency = max_concurrent(settings, training, cluster_cpus)
            samples = num_samples or settings.num_samples
            # Tune starts num_samples trials per combination of the grid keys.
            grid = math.prod(len(s.values) for s in space.params.values() if s.kind == "grid")
            placeable = math.floor(cluster_cpus / trial_footprint(settings, training) + 1e-9)
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(space, settings.search_seed, plan.base),
                tune_config=tune.TuneConfig(
                    num_samples=samples,
                    scheduler=scheduler(
                        sched,
                        steps,
                        training.report_every,
                        space,
                        plan.base,
                        plan.name,
                        all_run_at_once=samples * grid <= min(concurrency, placeable),
                    ),
                    # The generator limits concurrency itself (Tune ignores
                    # max_concurrent_trials beside a generator instance).
                    search_alg=search_algorithm(space, concurrency, plan.base),
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
    best = best_trial(trials, sched.metric, sched.mode)
    outcome = SweepOutcome(plan.name, sched.metric, sched.mode, trials, best, parent.run_id)
    if sched.population:
        history = population_history({t.trial_id: children.tags(t.run_name) for t in trials})
        outcome.exploits, outcome.went_back = history.exploits, history.went_back
    if settings.objectives:
        _record_front(plan, outcome, children, parent, tracking, settings.objectives, swept)
    best = outcome.best
    if best is not None:
        _finish_best(plan, outcome, best, children, parent, tracking)
    outcome.elapsed_s = time.perf_counter() - started
    parent.set_tags(
        {"refiner.trials": str(len(trials)), "refiner.errored_trials": str(len(outcome.errored))}
    )
    # An errored trial leaves the sweep incomplete until `--resume` finishes it.
    parent.finish("FAILED" if outcome.errored else "FINISHED")
    return outcome


def _record_front(
    plan: SweepPlan,
    outcome: SweepOutcome,
    children: Any,
    parent: Any,
    tracking: SweepTracking,
    objectives: dict[str, str],
    swept: tuple[str, ...],
) -> None:
    """Two objectives: the front's trials tagged, its table and plot on the parent run,
    and the best trial replaced by the one the space's rule picks from the front."""
    settings = plan.search_space().settings
    outcome.objectives = dict(objectives)
    outcome.front = pareto_front(outcome.trials, objectives)
    picked = choose(outcome.front, objectives, settings.choose_within)
    if picked is not None:
        outcome.best, outcome.choice_reason = picked.trial, picked.reason
    with tempfile.TemporaryDirectory(prefix="refiner-front-") as directory:
        files = write_front_artifacts(
            outcome.trials, outcome.front, objectives, swept, directory, outcome.best
        )
        front_ids = [children.run_id(t.run_name) for t in outcome.front]
        tracking.record_front(
            parent,
            objectives,
            [r for r in front_ids if r],
            [str(f) for f in files],
            outcome.choice_reason,
        )


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
    metrics = {k: float(v) for k, v in best.metrics.items() if finite(v) and k not in _TUNE_KEYS}
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
