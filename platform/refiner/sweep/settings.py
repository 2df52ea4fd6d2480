"""A sweep's settings (the ``sweep:`` section of a space file): how many trials, who
proposes them (random or Optuna), how they are scheduled (ASHA, FIFO, PBT) and, for a
two-objective sweep, the objectives and the rule that picks one point of the front.

Each dataclass checks its own values; ``refiner.sweep.space`` reads them from the file
(unknown keys are refused there, with the file named).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from refiner.config.loader import ConfigError

SCHEDULERS = ("asha", "fifo", "pbt", "pb2")
# Population-based schedulers: trials go on from a peer's checkpoint with changed values.
# PBT mutates (scales or redraws) every swept key; PB2 (Ray Tune's, a Gaussian-process
# bandit over the bounds) picks new values of continuous keys only.
POPULATION_SCHEDULERS = ("pbt", "pb2")
PB2_SAMPLERS = ("uniform", "loguniform")  # keys with [low, high] bounds PB2 explores
# What population-based training may change while a trial runs: a trial that exploits a
# peer restores the peer's checkpoint (model, optimizer, schedule, EMA, calibration)
# and goes on with its own mutated values of these. Model shape, task, unroll length
# and data settings are fixed for the run (a peer's weights would not fit, or the data
# stream would no longer be the one the checkpoint's position refers to).
PBT_MUTABLE = (
    "training.lr",
    "orchestration.truncated_backprop",
    "orchestration.backprop_truncate_steps",
    "orchestration.backprop_window",
    "orchestration.step_loss_weights.",  # every key inside
    "orchestration.gradient_clip_threshold",
    "orchestration.grokfast.",
)
SEARCHERS = ("random", "optuna")
# Optuna's samplers we offer by name: TPE (single and multi-objective), NSGA-II (multi-
# objective), and Optuna's own random sampler (the baseline at the same code path).
OPTUNA_SAMPLERS = ("tpe", "nsga2", "random")
OBJECTIVE_COUNT = 2  # a front of two metrics: accuracy against inference steps


@dataclass
class SchedulerSettings:
    """Trial scheduling. ``max_t``/``grace_period`` count optimizer updates (``step``)."""

    type: str = "asha"
    metric: str = "val_token_acc_infer"
    mode: str = "max"
    max_t: int | None = None  # null: the per-trial training.steps
    grace_period: int | None = None  # null: a quarter of max_t (at least one report)
    reduction_factor: float = 2.0
    time_attr: str = "step"  # the loop's update counter survives a resumed trial
    # pbt/pb2: every swept key is mutated; trials are compared every perturbation_interval
    # updates (null: training.checkpoint_every; a multiple of it: exploits need a checkpoint)
    perturbation_interval: int | None = None
    quantile_fraction: float = 0.25  # the bottom fraction exploits the top fraction
    # pbt only (pb2 chooses new values with its model): a mutated value is redrawn with
    # this probability, else scaled by 0.8/1.2 (or moved to a neighbouring choice)
    resample_probability: float = 0.25

    @property
    def population(self) -> bool:
        """Whether trials exploit peers' checkpoints (PBT, PB2)."""
        return self.type in POPULATION_SCHEDULERS

    def __post_init__(self) -> None:
        _need(
            self.perturbation_interval is None or self.perturbation_interval >= 1,
            f"perturbation_interval: must be >= 1, got {self.perturbation_interval}",
        )
        _need(
            0 < self.quantile_fraction <= 0.5,
            f"quantile_fraction: must be in (0, 0.5], got {self.quantile_fraction}",
        )
        _need(
            0 <= self.resample_probability <= 1,
            f"resample_probability: must be in [0, 1], got {self.resample_probability}",
        )
        _need(
            self.type in SCHEDULERS, f"type: must be one of {list(SCHEDULERS)}, got {self.type!r}"
        )
        _need(self.mode in ("max", "min"), f"mode: must be 'max' or 'min', got {self.mode!r}")
        _need(self.max_t is None or self.max_t >= 1, f"max_t: must be >= 1, got {self.max_t}")
        _need(
            self.grace_period is None or self.grace_period >= 1,
            f"grace_period: must be >= 1, got {self.grace_period}",
        )
        _need(
            self.reduction_factor > 1,
            f"reduction_factor: must be > 1, got {self.reduction_factor}",
        )
        if self.max_t is not None and self.grace_period is not None:
            _need(
                self.grace_period <= self.max_t,
                f"grace_period: {self.grace_period} is above max_t={self.max_t}",
            )


@dataclass
class SearchSettings:
    """Who proposes the next trial: seeded random sampling, or Optuna (model-based)."""

    type: str = "random"
    sampler: str = "tpe"  # optuna only: tpe | nsga2 | random
    seed: int | None = None  # null: sweep.seed
    n_startup_trials: int = 4  # optuna's tpe: random trials before the model proposes

    def __post_init__(self) -> None:
        _need(self.type in SEARCHERS, f"type: must be one of {list(SEARCHERS)}, got {self.type!r}")
        _need(
            self.sampler in OPTUNA_SAMPLERS,
            f"sampler: must be one of {list(OPTUNA_SAMPLERS)}, got {self.sampler!r}",
        )
        _need(
            self.n_startup_trials >= 0,
            f"n_startup_trials: must be >= 0, got {self.n_startup_trials}",
        )


@dataclass
class SweepSettings:
    num_samples: int = 1  # with grid samplers: repeats of the full grid
    seed: int = 0  # random samplers draw from this seed: same seed, same trials
    cpus_per_trial: float | None = None  # null: derived from training.num_workers/cpus
    max_concurrent_trials: int | None = None  # null: what the cluster's CPUs allow
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    # Two objectives ({metric: max|min}, in order): the sweep keeps a Pareto front, and
    # the trial it calls best is the front's point best on the second objective among
    # those within `choose_within` (first objective's units) of the best first objective.
    objectives: dict[str, str] = field(default_factory=dict)
    choose_within: float = 0.0

    @property
    def search_seed(self) -> int:
        return self.seed if self.search.seed is None else self.search.seed

    def __post_init__(self) -> None:
        if self.objectives:
            _need(
                len(self.objectives) == OBJECTIVE_COUNT,
                f"objectives: name exactly {OBJECTIVE_COUNT} metrics "
                f"({{val_acc_infer: max, val_mean_steps: min}}), got {list(self.objectives)}",
            )
            for name, mode in self.objectives.items():
                _need(
                    mode in ("max", "min"),
                    f"objectives.{name}: must be 'max' or 'min', got {mode!r}",
                )
            _need(
                self.scheduler.metric in self.objectives,
                f"scheduler.metric: with objectives the scheduler ranks by one of them "
                f"({', '.join(self.objectives)}), got {self.scheduler.metric!r}",
            )
        _need(
            is_number(self.choose_within) and self.choose_within >= 0,
            f"choose_within: must be a number >= 0, got {self.choose_within!r}",
        )
        _need(
            bool(self.objectives) or not self.choose_within,
            "choose_within: applies to a sweep with objectives (a Pareto front)",
        )
        _need(self.num_samples >= 1, f"num_samples: must be >= 1, got {self.num_samples}")
        _need(
            self.cpus_per_trial is None or self.cpus_per_trial > 0,
            f"cpus_per_trial: must be > 0, got {self.cpus_per_trial}",
        )
        _need(
            self.max_concurrent_trials is None or self.max_concurrent_trials >= 1,
            f"max_concurrent_trials: must be >= 1, got {self.max_concurrent_trials}",
        )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
