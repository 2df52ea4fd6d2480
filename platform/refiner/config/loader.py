"""A small loader from YAML-shaped dicts to (nested) dataclasses, with errors that name the key.

`load_dataclass(cls, data, path)` builds dataclass `cls` from a plain mapping: unknown
keys are rejected with the full key path and a "did you mean" hint; values are checked
against the annotations (`int`, `float`, `bool`, `str`, `Literal[...]`, `X | None`,
`list[X]`, `tuple[X, ...]`, `dict[str, X]`, nested dataclasses); then the dataclass's own
`validate()` runs for cross-field rules. Every problem raises `ConfigError` naming the key.
`apply_overrides(d, ["a.b=3"])` applies `--set key=value` overrides to a config dict.

Dataclasses that inherit `YamlConfig` get `from_dict`/`from_yaml`/`to_dict`/`to_yaml`,
and on construction (also directly from Python) their `Literal` fields are checked
before `validate()` runs, so enum-like fields need no hand-written checks.

Pure Python + PyYAML: no dependency on the model, Ray or MLflow.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, Union

import yaml

from refiner.config.yaml_io import load_strict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
C = TypeVar("C", bound="YamlConfig")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or inconsistent."""


# ----------------------------------------------------------------------------- loading


def load_dataclass(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass `cls` from a (nested) mapping; `path` prefixes key names in errors."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(unknown_key_message(join_key(path, str(key)), str(key), fields))
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, join_key(path, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{join_key(path, missing[0])}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as err:  # cross-field validation: prefix with where we are
        raise ConfigError(join_key(path, str(err)) if path else str(err)) from None


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as plain YAML-safe containers (tuples become lists)."""
    return _plain(dataclasses.asdict(obj))


def apply_overrides(
    d: Mapping[str, Any], overrides: Sequence[str], cls: type | None = None
) -> dict[str, Any]:
    """Apply `key.path=value` overrides to a copy of `d`; values are parsed as YAML scalars.

    With `cls` (the dataclass `d` describes) any field of `cls` may be set, even if `d`
    lacks it; without, the key path must already exist in `d`. Unknown paths raise.
    """
    out = copy.deepcopy(dict(d))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key_path, raw = item.split("=", 1)
        keys = key_path.strip().split(".")
        if not all(keys):
            raise ConfigError(f"override {item!r}: empty key in {key_path!r}")
        value = _parse_scalar(raw)
        node: dict[str, Any] = out
        node_cls = cls
        for depth, key in enumerate(keys):
            here = ".".join(keys[: depth + 1])
            last = depth == len(keys) - 1
            if node_cls is not None and dataclasses.is_dataclass(node_cls):
                fields = {f.name: f for f in dataclasses.fields(node_cls)}
                if key not in fields:
                    raise ConfigError(unknown_key_message(here, key, fields))
                node_cls = dataclass_in(_hints(node_cls)[key])
            elif key not in node:
                raise ConfigError(unknown_key_message(here, key, node))
            if last:
                node[key] = value
            else:
                child = node.get(key)
                if child is None:
                    child = node[key] = {}
                if not isinstance(child, dict):
                    raise ConfigError(f"{here}: is a value, not a section")
                node = child
    return out


def read_yaml(path: str | Path) -> Any:
    """The parsed YAML of a file; unreadable files and YAML syntax errors raise ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            return load_strict(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


# ----------------------------------------------------------------------------- helpers


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless `condition`; for `validate()` rules."""
    if not condition:
        raise ConfigError(message)


def unknown_key_message(full: str, key: str, known: Mapping[str, Any]) -> str:
    """'<full>: unknown key (did you mean ...?)', or the known keys when none is close."""
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1)
    hint = (
        f" (did you mean '{close[0]}'?)"
        if close
        else f" (known keys: {', '.join(map(str, known))})"
    )
    return f"{full}: unknown key{hint}"


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def dataclass_in(tp: Any) -> type[DataclassInstance] | None:
    """The dataclass inside `tp` (`X` or `X | None`), if any."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def check_choices(obj: Any) -> None:
    """Check every `Literal` field of dataclass `obj` (also inside lists) against its choices."""
    for name, tp in _hints(type(obj)).items():
        value = getattr(obj, name)
        literal = _literal_in(tp)
        if literal is not None and value is not None:
            _check_literal(literal, value, name)
            continue
        item = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, tuple) else None
        literal = _literal_in(item) if item is not None else None
        if literal is not None and isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                _check_literal(literal, v, f"{name}[{i}]")


class YamlConfig:
    """`from_dict` / `from_yaml` / `to_dict` / `to_yaml`, Literal checks, then `validate()`."""

    if TYPE_CHECKING:  # every subclass is a dataclass
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        check_choices(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules; raise ConfigError naming the field (relative to this section)."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any] | None, path: str = "") -> C:
        return load_dataclass(cls, d, path)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        data = read_yaml(path)
        try:
            return load_dataclass(cls, data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclass_to_dict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


# ----------------------------------------------------------------------------- conversion


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return load_dataclass(tp, value, path)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{path}: {_describe(value)} fits none of {tp}"
        )
    if origin is Literal:
        if value is None:
            raise ConfigError(f"{path}: must not be null")
        _check_literal(tp, value, path)
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        value_tp = args[1] if args else Any
        return {str(k): _convert(value_tp, v, f"{path}.{k}") for k, v in value.items()}
    if value is None:
        raise ConfigError(f"{path}: must not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        # PyYAML reads `1e-3` (no dot) as a string; accept such number literals.
        if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise ConfigError(f"{path}: unsupported field type {tp}")  # a programming error


def _literal_in(tp: Any) -> Any:
    """The `Literal[...]` in `tp` (`Literal[...]` or `Literal[...] | None`), if any."""
    if typing.get_origin(tp) is Literal:
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if typing.get_origin(arg) is Literal:
                return arg
    return None


def _check_literal(literal: Any, value: Any, path: str) -> None:
    choices = typing.get_args(literal)
    if value in choices and type(value) in {type(c) for c in choices}:
        return
    names = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{path}: must be one of {list(choices)}, got {value!r}{hint}")


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.I)


def _parse_scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        value = load_strict(raw) if raw else None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse override value {raw!r}: {err}") from None
    if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value):
        return float(value)
    return value


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
