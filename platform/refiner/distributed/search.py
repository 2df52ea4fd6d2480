"""A checked ``SearchSpace`` as Tune's param space, scheduler and search algorithm.

The param space is flat: one entry per dotted config key (``orchestration.max_steps_train``),
so a trial's config maps back to the run config without guessing where a dict ends.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator

from refiner.distributed.optuna_search import optuna_searcher
from refiner.distributed.population import RefinerPB2, RefinerPBT
from refiner.runs.tracker import flatten
from refiner.sweep.settings import SchedulerSettings, SweepSettings
from refiner.sweep.space import Sampler, SearchSpace


def param_space(
    space: SearchSpace, seed: int, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Tune domains per key. Constrained choices draw from their own seeded RNG, made
    fresh per call, so two sweeps over the same space and seed see the same trials.

    Empty under Optuna: its searcher holds the space (``refiner.distributed.optuna_search``).
    """
    if space.settings.search.type == "optuna":
        return {}
    out: dict[str, Any] = {}
    fixed = flatten(base or {})
    for index, (key, sampler) in enumerate(space.params.items()):
        target = sampler.constraint[1] if sampler.constraint else None
        if target is not None and target not in space.params:
            # Constrained by a fixed value: the allowed values are known now.
            out[key] = tune.choice(sampler.allowed(fixed[target]))
        else:
            out[key] = _domain(sampler, seed * 7919 + index)
    return out


def _domain(sampler: Sampler, seed: int) -> Any:
    if sampler.constraint is not None:
        return tune.sample_from(_ConstrainedChoice(sampler, seed))
    kind, values = sampler.kind, sampler.values
    if kind == "choice":
        return tune.choice(list(values))
    if kind == "grid":
        return tune.grid_search(list(values))
    if kind == "uniform":
        return tune.uniform(*values)
    if kind == "loguniform":
        return tune.loguniform(*values)
    return tune.randint(*values)


# Tune deep-copies the param space per variant; an RNG inside the callable would be copied
# with it and every trial would draw the same value. The callable keeps a key instead.
_RNGS: dict[int, random.Random] = {}
_KEYS = itertools.count()


class _ConstrainedChoice:
    """``choice`` limited to the values <= (or >=) another key of the same trial.

    Resampling instead of clamping: K=16 with T=8 would otherwise collapse onto K=8 and
    over-weight it. The space check guarantees at least one value is always allowed.
    """

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.key = next(_KEYS)
        _RNGS[self.key] = random.Random(seed)

    def __call__(self, config: dict[str, Any]) -> Any:
        _, target = self.sampler.constraint  # type: ignore[misc]
        rng = _RNGS.setdefault(self.key, random.Random(self.seed))  # a restored sweep
        return rng.choice(self.sampler.allowed(config[target]))


def scheduler(
    settings: SchedulerSettings,
    steps: int,
    report_every: int,
    space: SearchSpace | None = None,
    base: Mapping[str, Any] | None = None,
    sweep_name: str | None = None,
    all_run_at_once: bool = False,
) -> TrialScheduler:
    """ASHA over the update counter (``step``); FIFO runs every trial to the end; PBT
    mutates every swept key (``space``) every ``perturbation_interval`` updates, PB2
    picks new values within the keys' bounds with its Gaussian-process bandit; both post
    their verdicts for the trials of ``sweep_name`` to wait on (``pbt_verdicts``), and
    pause no trial for fair share when ``all_run_at_once`` (``population``)."""
    if settings.type == "fifo":
        return FIFOScheduler()
    if settings.population:
        assert space is not None and base is not None, "PBT and PB2 mutate the space's keys"
        made = _population_scheduler(settings, space, base)
        made.verdicts_for = sweep_name
        made.final_step = steps
        made.all_run_at_once = all_run_at_once
        return made
    max_t, grace = resolved_budget(settings, steps, report_every)
    return ASHAScheduler(
        time_attr=settings.time_attr,
        metric=settings.metric,
        mode=settings.mode,
        max_t=max_t,
        grace_period=grace,
        reduction_factor=settings.reduction_factor,
        # A trial at max_t finishes by itself: stopping it there would kill its driver
        # before run_training logs the final evaluation and the checkpoint artifact.
        stop_last_trials=False,
    )


def _population_scheduler(
    settings: SchedulerSettings, space: SearchSpace, base: Mapping[str, Any]
) -> RefinerPBT | RefinerPB2:
    interval = settings.perturbation_interval or int(base["training"]["checkpoint_every"])
    if settings.type == "pb2":
        return RefinerPB2(
            time_attr=settings.time_attr,
            metric=settings.metric,
            mode=settings.mode,
            perturbation_interval=interval,
            # Linear bounds, also for a loguniform key (PB2's model works on the raw
            # value): the space check allows only uniform and loguniform keys here.
            hyperparam_bounds={key: list(s.values) for key, s in space.params.items()},
            quantile_fraction=settings.quantile_fraction,
            require_attrs=False,  # reports between checkpoints carry no validation metric
            log_config=False,  # Tune's per-trial config files; the MLflow tags record it
        )
    return RefinerPBT(
        time_attr=settings.time_attr,
        metric=settings.metric,
        mode=settings.mode,
        perturbation_interval=interval,
        hyperparam_mutations={
            key: _mutation(sampler) for key, sampler in _mutable(space, base).items()
        },
        quantile_fraction=settings.quantile_fraction,
        resample_probability=settings.resample_probability,
        # Reports between checkpoints carry no validation metric: PBT waits for one.
        require_attrs=False,
    )


def _mutation(sampler: Sampler) -> list[Any] | Any:
    """How PBT changes a key: a list for a choice (Tune moves to a neighbouring value or
    redraws one), a domain for a number (scaled by 0.8 or 1.2, or redrawn). A choice given
    as a domain would be scaled too: a string schedule raises TypeError, and a truncation
    window of 4 becomes 5, a value the space never offered."""
    if sampler.kind == "choice":
        return list(sampler.values)
    return _domain(sampler, 0)


def _mutable(space: SearchSpace, base: Mapping[str, Any]) -> dict[str, Sampler]:
    """The swept keys (the space check refused any that PBT cannot change); a key
    constrained by a fixed value mutates within the values that value allows, a grid key
    among its grid values."""
    fixed = flatten(dict(base))
    out = {}
    for key, s in space.params.items():
        if s.constraint is not None:
            s = Sampler("choice", tuple(s.allowed(fixed[s.constraint[1]])))
        elif s.kind == "grid":  # the grid is the first population; mutations pick from it
            s = Sampler("choice", s.values)
        out[key] = s
    return out


def resolved_budget(settings: SchedulerSettings, steps: int, report_every: int) -> tuple[int, int]:
    """(max_t, grace_period) in updates, filling the defaults from the trial's steps."""
    max_t = settings.max_t or steps
    grace = settings.grace_period or max(report_every, max_t // 4)
    return max_t, min(grace, max_t)


def search_algorithm(
    space: SearchSpace, max_concurrent: int, base: Mapping[str, Any]
) -> BasicVariantGenerator | Searcher:
    """The space's searcher, running at most ``max_concurrent`` trials at once: seeded
    random sampling (same seed, same trials), or Optuna (proposals from earlier trials)."""
    settings: SweepSettings = space.settings
    if settings.search.type == "optuna":
        return ConcurrencyLimiter(optuna_searcher(space, base), max_concurrent=max_concurrent)
    return BasicVariantGenerator(random_state=settings.search_seed, max_concurrent=max_concurrent)
