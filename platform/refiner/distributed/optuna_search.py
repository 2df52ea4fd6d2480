"""Model-based search: Ray Tune's ``OptunaSearch`` over a checked ``SearchSpace``.

The space goes to Optuna as a define-by-run function (``SpaceProposal``), which is how
the space file's constraints survive: ``backprop_truncate_steps {choice, at_most:
max_steps_train}`` becomes one categorical per value of ``max_steps_train`` (Optuna's
categorical distributions may not change their values between trials), each holding
only the allowed values. Lists as choices (``[[replace], [replace, patch]]``) are
proposed by index. The trial receives the real values under the space's own keys.

``RefinerOptunaSearch`` adapts Tune's searcher to the training loop's reports: the
validation metrics come with checkpoints only, so the searcher remembers the latest
value of each objective and tells Optuna those when the trial ends (a trial that the
scheduler stopped between checkpoints is scored by its last validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from refiner.runs.tracker import flatten
from refiner.sweep.space import Sampler, SearchSpace

_OPTUNA_SCALARS = (str, int, float, bool, type(None))


class SpaceProposal:
    """The define-by-run space: suggests every swept key through an Optuna trial."""

    def __init__(self, space: SearchSpace, base: Mapping[str, Any]) -> None:
        # Constrained keys last: the key bounding them is proposed (or fixed) first.
        self.params = dict(
            sorted(space.params.items(), key=lambda item: item[1].constraint is not None)
        )
        self.fixed = flatten(dict(base))

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for key, sampler in self.params.items():
            chosen[key] = self._suggest(trial, key, sampler, chosen)
        return chosen

    def _suggest(self, trial: Any, key: str, sampler: Sampler, chosen: dict[str, Any]) -> Any:
        kind, values = sampler.kind, sampler.values
        if kind == "uniform":
            return trial.suggest_float(key, *values)
        if kind == "loguniform":
            return trial.suggest_float(key, *values, log=True)
        if kind == "randint":
            return trial.suggest_int(key, values[0], values[1] - 1)
        name, options = key, list(values)
        if sampler.constraint is not None:
            target = sampler.constraint[1]
            bound = chosen.get(target, self.fixed.get(target))
            name, options = f"{key}|{target}={bound}", sampler.allowed(bound)
        if all(isinstance(v, _OPTUNA_SCALARS) for v in options):
            return trial.suggest_categorical(name, options)
        return options[trial.suggest_categorical(f"{name}#index", list(range(len(options))))]


class RefinerOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna each trial's last validated objectives, and hands
    the trial only the swept keys (not Optuna's helper names for constrained keys)."""

    def __init__(self, swept: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._swept = list(swept)
        self._latest: dict[str, dict[str, float]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        params = super().suggest(trial_id)
        if params is None:
            return None
        return {key: params[key] for key in self._swept}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna's pruning is not used (the Tune scheduler stops trials): keep the values.
        seen = {m: result[m] for m in self._metrics() if isinstance(result.get(m), int | float)}
        if seen:
            self._latest.setdefault(trial_id, {}).update(seen)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        merged = {**self._latest.pop(trial_id, {}), **_scored(result, self._metrics())}
        has_all = all(m in merged for m in self._metrics())
        super().on_trial_complete(trial_id, merged if has_all else None, error=error)

    def _metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [str(self.metric)]


def optuna_searcher(space: SearchSpace, base: Mapping[str, Any]) -> RefinerOptunaSearch:
    """The space's Optuna searcher: its sampler, seed, objectives (one metric or two)."""
    settings = space.settings
    search = settings.search
    metric: str | list[str]
    mode: str | list[str]
    if settings.objectives:
        metric, mode = list(settings.objectives), list(settings.objectives.values())
    else:
        metric, mode = settings.scheduler.metric, settings.scheduler.mode
    return RefinerOptunaSearch(
        list(space.params),
        space=SpaceProposal(space, base),
        metric=metric,
        mode=mode,
        sampler=_sampler(search.sampler, settings.search_seed, search.n_startup_trials),
    )


def _sampler(name: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, n_startup_trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)


def _scored(result: dict | None, metrics: list[str]) -> dict[str, float]:
    given = result or {}
    return {m: given[m] for m in metrics if isinstance(given.get(m), int | float)}
