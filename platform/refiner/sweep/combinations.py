"""Every combination a space can draw, built into a run config before any trial starts,
and the run config of one trial (the base config with the trial's dotted-key values).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

from refiner.config.experiment import ExperimentConfig
from refiner.config.loader import ConfigError, load_dataclass
from refiner.runs.tracker import flatten
from refiner.sweep.settings import is_number
from refiner.sweep.space import SearchSpace, SpaceError

MAX_COMBINATIONS_CHECKED = 4096


def validate_combinations(space: SearchSpace, base: Mapping[str, Any]) -> int:
    """Build the config of every combination of the samplers' values; returns how many.

    ``base`` is the run config (a dict, with the space's ``fixed`` values applied) the
    trials start from. A constrained choice with no allowed value, or a combination
    that ``ExperimentConfig`` rejects, raises ``SpaceError`` naming file, keys and values.
    """
    keys = [k for k, s in space.params.items() if s.constraint is None]
    constrained = {k: s for k, s in space.params.items() if s.constraint is not None}
    flat_base = flatten(base)
    checked = 0
    for combo in itertools.islice(
        itertools.product(*(space.params[k].corners() for k in keys)), MAX_COMBINATIONS_CHECKED
    ):
        values = dict(zip(keys, combo, strict=True))
        choices_per_key = []
        for key, sampler in constrained.items():
            op, target = sampler.constraint  # type: ignore[misc]
            bound = values.get(target, flat_base.get(target))
            allowed = sampler.allowed(bound) if is_number(bound) else []
            if not allowed:
                sign = "<=" if op == "at_most" else ">="
                raise SpaceError(
                    f"{space.origin}: space.{key}: impossible combination: no choice in "
                    f"{list(sampler.values)} is {sign} {target} = {bound!r}"
                )
            choices_per_key.append([(key, v) for v in allowed])
        for extra in itertools.product(*choices_per_key):
            trial = {**values, **dict(extra)}
            try:
                trial_config(base, trial)
            except ConfigError as err:
                shown = ", ".join(f"{k}={v!r}" for k, v in trial.items())
                raise SpaceError(
                    f"{space.origin}: space: impossible combination {{{shown}}}: {err}"
                ) from None
            checked += 1
    return checked


def trial_config(base: Mapping[str, Any], params: Mapping[str, Any]) -> ExperimentConfig:
    """The run config of one trial: ``base`` with the trial's dotted-key values set."""
    return load_dataclass(ExperimentConfig, apply_params(base, params))


def apply_params(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in params.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return out
