"""The Tune function trainable: one trial = one ``run_training`` (one TorchTrainer).

The trial driver builds its run config from the sweep's base config and the trial's
sampled values, opens the trial's child run (reopened when the trial resumes), and
hands its tracker to ``run_training`` so that rank 0 logs into that one run. Ray
Train's reports reach Tune (and ASHA) through ``TuneReportCallback``. The Train run
is named after the trial, so a resumed trial continues from its latest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from refiner.checkpoints.storage import list_checkpoints
from refiner.distributed.pbt import train_population_member
from refiner.distributed.trainer import run_training
from refiner.runs.tracker import NullTracker, RunTracker
from refiner.sweep.combinations import trial_config
from refiner.sweep.plan import trial_run_name

# (run name, trial id) -> the trial's tracker; e.g. refiner.tracking.sweeps.ChildRuns.open
TrackerFactory = Callable[[str, str], RunTracker]


@dataclass
class TrialContext:
    """What every trial driver needs besides its sampled values (shipped once)."""

    sweep_name: str
    base: dict[str, Any]  # the run config every trial starts from
    storage: str  # where the trials' Train runs keep checkpoints
    open_tracker: TrackerFactory | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    population: bool = False  # PBT: checkpoints go to Tune, a peer's may come back


def run_trial(params: Mapping[str, Any], context: TrialContext, tasks: pa.Table) -> None:
    """The function trainable (bind ``context`` and ``tasks`` with ``tune.with_parameters``)."""
    trial_id = tune.get_context().get_trial_id()
    name = trial_run_name(context.sweep_name, trial_id)
    config = trial_config(context.base, params)
    tracker = context.open_tracker(name, trial_id) if context.open_tracker else NullTracker()
    if context.population:
        train_population_member(
            config, tasks, name, context.storage, tracker, params, context.sweep_name
        )
    else:
        finished_before = _at_budget(f"{context.storage}/{name}", config.training.steps)
        outcome = run_training(
            config, tasks, name, context.storage, tracker, callbacks=[TuneReportCallback()]
        )
        if finished_before and outcome.metrics:
            # A resumed sweep restarts a trial whose run had already reached its last
            # update (the driver died before Tune recorded it done): the run reports
            # nothing new, so Tune, the searcher and the best-trial choice would see no
            # final result. Its last checkpoint's metrics are that result.
            tune.report(dict(outcome.metrics))
    # Only a trial that returns ends its own run. The sweep's driver ends the run of a
    # trial that stops early or errs (Tune tells it which): a trial that Tune stops (ASHA)
    # is torn down with whatever its Train run raises then, often after the driver has
    # ended the run FINISHED, and a FAILED written here overwrote that (1 run in 3 of
    # test_sweep_e2e).
    _finish(tracker, "FINISHED")


def _at_budget(run_dir: str, steps: int) -> bool:
    """Whether the trial's Train run already has a checkpoint at its last update."""
    checkpoints = list_checkpoints(run_dir)
    return bool(checkpoints) and checkpoints[-1][0] >= steps


def _finish(tracker: RunTracker, status: str) -> None:
    finish = getattr(tracker, "finish", None)
    if finish is not None:
        finish(status)
