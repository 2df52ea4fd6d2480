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

import dataclasses
import difflib
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
from refiner.sweep.settings import PB2_SAMPLERS, PBT_MUTABLE, SweepSettings, is_number

SAMPLERS = ("choice", "grid", "uniform", "loguniform", "randint")
CONSTRAINTS = ("at_most", "at_least")  # restrict a choice to values <= / >= another key
TOP_LEVEL = ("description", "sweep", "fixed", "space")


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
        if settings.scheduler.population:
            _check_pbt_key(key, sampler, params, origin, settings.scheduler.type)
        if settings.search.type == "optuna" and sampler.kind == "grid":
            raise SpaceError(
                f"{origin}: space.{key}: grid is not searched by sweep.search.type optuna "
                "(a model proposes every value); use choice"
            )
    kind = settings.scheduler.type
    if settings.scheduler.population and (settings.search.type != "random" or settings.objectives):
        raise SpaceError(
            f"{origin}: sweep.scheduler.type: {kind} draws its first population at random "
            "and ranks by one metric; it does not combine with sweep.search.type optuna or "
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
        if not all(is_number(v) for v in values):
            raise SpaceError(f"{where}: at_most/at_least need numeric choices, got {list(values)}")
    return Sampler(kind, values, constraints.get("at_most"), constraints.get("at_least"))


def _bounds(kind: str, args: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(args, list) or len(args) != 2 or not all(is_number(a) for a in args):
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


def _check_pbt_key(
    key: str, sampler: Sampler, params: Mapping[str, Sampler], origin: str, kind: str
) -> None:
    """Under PBT/PB2 every swept key is mutated during the run: it must be one that can
    change; PB2 explores [low, high] bounds, so its keys must be uniform or loguniform."""
    name = kind.upper()
    if not any(key == m or (m.endswith(".") and key.startswith(m)) for m in PBT_MUTABLE):
        allowed = ", ".join(m + ("*" if m.endswith(".") else "") for m in PBT_MUTABLE)
        raise SpaceError(
            f"{origin}: space.{key}: {name} cannot change it during a run (a peer's checkpoint "
            f"would not fit, or the run's data or shape would change); keys {name} can mutate: "
            f"{allowed}. Sweep it with asha or fifo, or move it to fixed:"
        )
    if kind == "pb2" and sampler.kind not in PB2_SAMPLERS:
        raise SpaceError(
            f"{origin}: space.{key}: PB2 needs [low, high] bounds to explore "
            f"({' or '.join(PB2_SAMPLERS)}), got {sampler.kind}; sweep choices with "
            "scheduler.type pbt, or move the key to fixed:"
        )
    if sampler.constraint is not None and sampler.constraint[1] in params:
        raise SpaceError(
            f"{origin}: space.{key}.{sampler.constraint[0]}: PBT mutates keys one by one, so a "
            f"constraint on another swept key ({sampler.constraint[1]}) cannot be kept"
        )


# ----------------------------------------------------------------------------- combinations


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


def _sampler_dict(s: Sampler) -> dict[str, Any]:
    out: dict[str, Any] = {s.kind: list(s.values)}
    if s.at_most:
        out["at_most"] = s.at_most
    if s.at_least:
        out["at_least"] = s.at_least
    return out
