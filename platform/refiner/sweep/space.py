"""Search spaces: ``tune_spaces/*.yaml`` parsed and validated, without Ray.

The format (documented in ``tune_spaces/README.md``)::

    description: free text
    sweep:                      # optional: samples, seed, scheduler, trial resources
      num_samples: 6
      scheduler: {type: asha, metric: val_token_acc_infer, mode: max, grace_period: 20}
    fixed:                      # optional: plain values applied to every trial
      orchestration: {max_steps_infer: 4}
    space:                      # run-config keys (nested or dotted); leaves are samplers
      orchestration:
        max_steps_train: {grid: [8, 12, 16]}
        backprop_truncate_steps: {choice: [1, 2, 4, 8, 16], at_most: orchestration.max_steps_train}

Everything is checked before a trial starts: keys against the ``ExperimentConfig``
dataclasses, sampler names and bounds, and every combination of the discrete values
(and of the bounds of the continuous ones) is built into a config, so an impossible
combination is reported with the file, the key path and the values.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refiner.config.experiment import ExperimentConfig
from refiner.config.loader import (
    ConfigError,
    dataclass_in,
    load_dataclass,
    read_yaml,
    unknown_key_message,
)

SAMPLERS = ("choice", "grid", "uniform", "loguniform", "randint")
CONSTRAINTS = ("at_most", "at_least")  # restrict a choice to values <= / >= another key
SCHEDULERS = ("asha", "fifo", "pbt")
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
TOP_LEVEL = ("description", "sweep", "fixed", "space")
MAX_COMBINATIONS_CHECKED = 4096


class SpaceError(ConfigError):
    """A search space file is unreadable, names an unknown key, or cannot be sampled."""


@dataclass(frozen=True)
class Sampler:
    """One swept key. ``values``: the categories (choice, grid) or ``(low, high)``."""

    kind: str
    values: tuple[Any, ...]
    at_most: str | None = None
    at_least: str | None = None

    @property
    def constraint(self) -> tuple[str, str] | None:
        if self.at_most:
            return "at_most", self.at_most
        if self.at_least:
            return "at_least", self.at_least
        return None

    def corners(self) -> list[Any]:
        """The values the combination check tries: every category, or both bounds."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        low, high = self.values
        return [low, high - 1] if self.kind == "randint" else [low, high]

    def allowed(self, bound: Any) -> list[Any]:
        """The categories that satisfy the constraint against the other key's value."""
        if self.constraint is None:
            return list(self.values)
        op, _ = self.constraint
        return [v for v in self.values if (v <= bound if op == "at_most" else v >= bound)]


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
    # pbt: every swept key is mutated; trials are compared every perturbation_interval
    # updates (null: training.checkpoint_every; a multiple of it: exploits need a checkpoint)
    perturbation_interval: int | None = None
    quantile_fraction: float = 0.25  # the bottom fraction exploits the top fraction
    resample_probability: float = 0.25  # a mutated value is redrawn, else scaled 0.8/1.2

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
            _is_number(self.choose_within) and self.choose_within >= 0,
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


@dataclass
class SearchSpace:
    origin: str  # the file, for error messages
    params: dict[str, Sampler]  # dotted config key -> sampler
    fixed: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    settings: SweepSettings = field(default_factory=SweepSettings)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (logged as the sweep's params, stored for ``--resume``)."""
        return {
            "description": self.description,
            "sweep": dataclasses.asdict(self.settings),
            "fixed": dict(self.fixed),
            "space": {k: _sampler_dict(s) for k, s in self.params.items()},
        }


# ----------------------------------------------------------------------------- loading


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a space file: keys, samplers, bounds and constraints."""
    data = read_yaml(path)
    return parse_space(data, str(path))


def parse_space(data: Any, origin: str = "<space>") -> SearchSpace:
    if not isinstance(data, Mapping):
        raise SpaceError(f"{origin}: expected a mapping with a 'space' section")
    for key in data:
        if key not in TOP_LEVEL:
            raise SpaceError(
                f"{origin}: {unknown_key_message(str(key), str(key), dict.fromkeys(TOP_LEVEL))}"
            )
    if not isinstance(data.get("space"), Mapping) or not data["space"]:
        raise SpaceError(f"{origin}: space: needs at least one swept key")
    try:
        settings = load_dataclass(SweepSettings, _objective_defaults(data.get("sweep")), "sweep")
    except ConfigError as err:
        raise SpaceError(f"{origin}: {err}") from None
    fixed = {}
    for key, value in _leaves(data.get("fixed") or {}, "fixed", origin, samplers=False):
        _check_key(key, origin, "fixed.")
        fixed[key] = value
    params = {}
    for key, value in _leaves(data["space"], "space", origin, samplers=True):
        _check_key(key, origin, "space.")
        params[key] = _parse_sampler(value, f"{origin}: space.{key}")
    for key, sampler in params.items():
        _check_constraint(key, sampler, params, fixed, origin)
        if settings.scheduler.type == "pbt":
            _check_pbt_key(key, sampler, params, origin)
        if settings.search.type == "optuna" and sampler.kind == "grid":
            raise SpaceError(
                f"{origin}: space.{key}: grid is not searched by sweep.search.type optuna "
                "(a model proposes every value); use choice"
            )
    if settings.scheduler.type == "pbt" and (
        settings.search.type != "random" or settings.objectives
    ):
        raise SpaceError(
            f"{origin}: sweep.scheduler.type: pbt draws its first population at random and "
            "ranks by one metric; it does not combine with sweep.search.type optuna or "
            "sweep.objectives"
        )
    description = data.get("description") or ""
    return SearchSpace(origin, params, fixed, settings, str(description).strip())


def _objective_defaults(sweep: Any) -> Any:
    """With objectives and no scheduler metric named, the scheduler ranks by the first."""
    if not isinstance(sweep, Mapping) or not isinstance(sweep.get("objectives"), Mapping):
        return sweep
    objectives = sweep["objectives"]
    scheduler = sweep.get("scheduler")
    if not objectives or (isinstance(scheduler, Mapping) and "metric" in scheduler):
        return sweep
    if scheduler is not None and not isinstance(scheduler, Mapping):
        return sweep  # reported by load_dataclass
    first, mode = next(iter(objectives.items()))
    if mode not in ("max", "min"):
        return sweep  # reported as the objective's own error
    return {**sweep, "scheduler": {**(scheduler or {}), "metric": first, "mode": mode}}


def _leaves(
    node: Any, where: str, origin: str, samplers: bool, prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf) pairs; in ``space`` a leaf is a mapping naming a sampler."""
    if not isinstance(node, Mapping):
        raise SpaceError(f"{origin}: {where}: expected a mapping, got {type(node).__name__}")
    for key, value in node.items():
        path = f"{prefix}{key}"
        if samplers and isinstance(value, Mapping) and _looks_like_sampler(value):
            yield path, value
        elif isinstance(value, Mapping) and value and not _is_mapping_field(path):
            yield from _leaves(value, where, origin, samplers, f"{path}.")
        elif samplers:
            raise SpaceError(
                f"{origin}: space.{path}: expected a sampler such as {{choice: [...]}} "
                f"({', '.join(SAMPLERS)}), got {value!r}; fixed values go under 'fixed:'"
            )
        else:
            yield path, value


def _looks_like_sampler(value: Mapping) -> bool:
    """A mapping is meant as a sampler when one of its keys is (or is close to) one."""
    keys = [str(k) for k in value]
    if any(k in SAMPLERS or k in CONSTRAINTS for k in keys):
        return True
    # A typo ('choise') must be reported as a wrong sampler, not as an unknown config key.
    return any(difflib.get_close_matches(k, SAMPLERS, n=1, cutoff=0.75) for k in keys)


def _parse_sampler(spec: Mapping, where: str) -> Sampler:
    kinds = [k for k in spec if k in SAMPLERS]
    others = [str(k) for k in spec if k not in SAMPLERS and k not in CONSTRAINTS]
    if others or len(kinds) != 1:
        bad = others[0] if others else ", ".join(map(str, kinds)) or "nothing"
        close = difflib.get_close_matches(bad, SAMPLERS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpaceError(
            f"{where}: wrong sampler {bad!r}{hint}; use exactly one of {', '.join(SAMPLERS)}"
            f" (optionally with {' or '.join(CONSTRAINTS)})"
        )
    kind = kinds[0]
    args = spec[kind]
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise SpaceError(f"{where}: {kind} needs a non-empty list of values, got {args!r}")
        values = tuple(args)
    else:
        values = _bounds(kind, args, where)
    constraints = {k: spec[k] for k in CONSTRAINTS if k in spec}
    if constraints:
        if kind != "choice":
            raise SpaceError(f"{where}: {'/'.join(constraints)} applies to 'choice' only")
        if len(constraints) > 1:
            raise SpaceError(f"{where}: use at_most or at_least, not both")
        for name, target in constraints.items():
            if not isinstance(target, str) or not target:
                raise SpaceError(f"{where}: {name} must name another config key, got {target!r}")
        if not all(_is_number(v) for v in values):
            raise SpaceError(f"{where}: at_most/at_least need numeric choices, got {list(values)}")
    return Sampler(kind, values, constraints.get("at_most"), constraints.get("at_least"))


def _bounds(kind: str, args: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(args, list) or len(args) != 2 or not all(_is_number(a) for a in args):
        raise SpaceError(f"{where}: {kind} needs [low, high] (two numbers), got {args!r}")
    low, high = args
    if kind == "randint":
        if not all(isinstance(a, int) for a in args):
            raise SpaceError(f"{where}: randint needs integer bounds, got {args!r}")
        if high <= low:
            raise SpaceError(f"{where}: randint [low, high) needs low < high, got {args!r}")
        return int(low), int(high)
    if not low < high:
        raise SpaceError(f"{where}: {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0, got {args!r}")
    return float(low), float(high)


def _check_constraint(
    key: str, sampler: Sampler, params: Mapping[str, Sampler], fixed: Mapping[str, Any], origin: str
) -> None:
    if sampler.constraint is None:
        return
    op, target = sampler.constraint
    where = f"{origin}: space.{key}.{op}"
    _check_key(target, origin, f"space.{key}.{op}: ")
    if target == key:
        raise SpaceError(f"{where}: a key cannot constrain itself")
    other = params.get(target)
    if other is not None and other.constraint is not None:
        raise SpaceError(f"{where}: {target} is itself constrained; chains are not supported")
    if other is not None and other.kind not in ("choice", "grid", "randint"):
        raise SpaceError(f"{where}: {target} must be a discrete sampler (choice, grid, randint)")


def _check_pbt_key(key: str, sampler: Sampler, params: Mapping[str, Sampler], origin: str) -> None:
    """Under PBT every swept key is mutated during the run: it must be one that can change."""
    if not any(key == m or (m.endswith(".") and key.startswith(m)) for m in PBT_MUTABLE):
        allowed = ", ".join(m + ("*" if m.endswith(".") else "") for m in PBT_MUTABLE)
        raise SpaceError(
            f"{origin}: space.{key}: PBT cannot change it during a run (a peer's checkpoint "
            f"would not fit, or the run's data or shape would change); keys PBT can mutate: "
            f"{allowed}. Sweep it with asha or fifo, or move it to fixed:"
        )
    if sampler.constraint is not None and sampler.constraint[1] in params:
        raise SpaceError(
            f"{origin}: space.{key}.{sampler.constraint[0]}: PBT mutates keys one by one, so a "
            f"constraint on another swept key ({sampler.constraint[1]}) cannot be kept"
        )


def _check_key(key: str, origin: str, prefix: str) -> None:
    """The dotted key must name a field of ExperimentConfig (or a key inside a dict field).

    ``prefix`` says where the key was written ("space.", "fixed.", "space.K.at_most: ").
    """
    cls: Any = ExperimentConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        here = prefix + ".".join(parts[: depth + 1])
        if cls is None:  # inside a free-form dict field (task.options, ...)
            return
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise SpaceError(f"{origin}: {unknown_key_message(here, part, fields)}")
        tp = typing.get_type_hints(cls)[part]
        inner = dataclass_in(tp)
        if inner is None and depth < len(parts) - 1 and not _is_dict_type(tp):
            raise SpaceError(f"{origin}: {here}: is a value, it has no key {parts[depth + 1]!r}")
        cls = inner


def _is_mapping_field(path: str) -> bool:
    """Whether ``path`` is a dict-typed config field (its mapping value is one leaf)."""
    cls: Any = ExperimentConfig
    for part in path.split("."):
        if cls is None or not dataclasses.is_dataclass(cls):
            return False
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return False
        tp = hints[part]
        cls = dataclass_in(tp)
    return cls is None and _is_dict_type(tp)


def _is_dict_type(tp: Any) -> bool:
    return (
        typing.get_origin(tp) is dict
        or tp is dict
        or any(typing.get_origin(a) is dict for a in typing.get_args(tp))
    )


# ----------------------------------------------------------------------------- combinations


def validate_combinations(space: SearchSpace, base: Mapping[str, Any]) -> int:
    """Build the config of every combination of the samplers' values; returns how many.

    ``base`` is the run config (a dict, with the space's ``fixed`` values applied) the
    trials start from. A constrained choice with no allowed value, or a combination
    that ``ExperimentConfig`` rejects, raises ``SpaceError`` naming file, keys and values.
    """
    keys = [k for k, s in space.params.items() if s.constraint is None]
    constrained = {k: s for k, s in space.params.items() if s.constraint is not None}
    flat_base = _flat(base)
    checked = 0
    for combo in itertools.islice(
        itertools.product(*(space.params[k].corners() for k in keys)), MAX_COMBINATIONS_CHECKED
    ):
        values = dict(zip(keys, combo, strict=True))
        choices_per_key = []
        for key, sampler in constrained.items():
            op, target = sampler.constraint  # type: ignore[misc]
            bound = values.get(target, flat_base.get(target))
            allowed = sampler.allowed(bound) if _is_number(bound) else []
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


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _sampler_dict(s: Sampler) -> dict[str, Any]:
    out: dict[str, Any] = {s.kind: list(s.values)}
    if s.at_most:
        out["at_most"] = s.at_most
    if s.at_least:
        out["at_least"] = s.at_least
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
