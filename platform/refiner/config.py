"""Configuration: the model's and the orchestrator's dataclasses, and a reusable loader.

`load_dataclass(cls, data, path)` builds (nested) dataclasses from plain dicts, as read
from YAML: unknown keys are rejected with the full key path and a "did you mean" hint,
values are type-checked against the annotations, and each dataclass's `validate()` runs
for cross-field checks. Every problem raises `ConfigError` naming the key.
`apply_overrides(d, ["a.b=3"])` applies `--set key=value` overrides to a config dict.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from refiner.augment import STRATEGIES as AUGMENTATION_STRATEGIES
from refiner.tokenizers import VOCAB_SIZE

EDIT_STRATEGIES = ("replace", "patch", "append")
STEP_SCHEDULES = ("uniform", "linear", "exponential", "explicit")
EDIT_SELECTORS = ("epsilon_greedy", "ucb")
GROKFAST_MODES = ("off", "ema", "ma")
POSITIONAL_ENCODINGS = ("rope", "learned")

T = TypeVar("T")
C = TypeVar("C", bound="_YamlMixin")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or inconsistent."""


# ----------------------------------------------------------------------------- loader


def load_dataclass(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass `cls` from a (nested) mapping; `path` prefixes key names in errors."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key(_join(path, str(key)), str(key), fields))
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, _join(path, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{_join(path, missing[0])}: required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError as err:  # cross-field validation: prefix with where we are
        raise ConfigError(_join(path, str(err)) if path else str(err)) from None


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
                    raise ConfigError(_unknown_key(here, key, fields))
                node_cls = _dataclass_in(typing.get_type_hints(node_cls)[key])
            elif key not in node:
                raise ConfigError(_unknown_key(here, key, node))
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


def _convert(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
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
        if value not in args:
            raise ConfigError(f"{path}: must be one of {list(args)}, got {value!r}")
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


_FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.I)


def _parse_scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse override value {raw!r}: {err}") from None
    if isinstance(value, str) and _FLOAT_LITERAL.fullmatch(value):
        return float(value)
    return value


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass inside `tp` (`X` or `X | None`), if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _unknown_key(full: str, key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1)
    hint = (
        f" (did you mean '{close[0]}'?)"
        if close
        else f" (known keys: {', '.join(map(str, known))})"
    )
    return f"{full}: unknown key{hint}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


class _YamlMixin:
    """`from_dict` / `from_yaml` / `to_dict` / `to_yaml` for the config dataclasses."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any] | None, path: str = "") -> C:
        return load_dataclass(cls, d, path)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        data = _read_yaml(path)
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


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- model


@dataclass
class ModelConfig(_YamlMixin):
    """Sizes of the RefinerModel and its memory bank."""

    vocab_size: int = VOCAB_SIZE
    seq_len: int = 64  # every batch is padded to exactly this many positions
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2  # layers of the shared block stack
    mlp_ratio: float = 4.0  # hidden width of the gated MLP, as a multiple of d_model
    dropout: float = 0.0
    latent_cycles: int = 2  # block-stack passes over the latent per refinement step
    positional: str = "rope"  # "rope" (rotary, in attention) or "learned" (added once)
    rope_base: float = 10000.0
    # Local attention: position i sees positions j with |i - j| <= attention_window (null:
    # all). Information then moves at most window * layers positions per refinement step.
    attention_window: int | None = None
    halt_bias_init: float = -5.0  # halt logit starts at -5 - ln(seq_len): never halts at first
    memory_capacity: int = 256  # entries in the MemoryBank; 0 turns the memory off
    memory_top_k: int = 4  # entries mixed into one read
    memory_hit_threshold: float = 0.9  # cosine similarity that counts a read as a hit

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check(self.vocab_size >= 5, f"vocab_size: must be >= 5, got {self.vocab_size}")
        _check(self.seq_len >= 1, f"seq_len: must be >= 1, got {self.seq_len}")
        for name in ("d_model", "n_heads", "n_layers", "latent_cycles"):
            _check(getattr(self, name) >= 1, f"{name}: must be >= 1, got {getattr(self, name)}")
        _check(
            self.d_model % self.n_heads == 0,
            f"d_model: {self.d_model} is not divisible by n_heads={self.n_heads}",
        )
        _check(self.mlp_ratio > 0, f"mlp_ratio: must be > 0, got {self.mlp_ratio}")
        _check(0.0 <= self.dropout < 1.0, f"dropout: must be in [0, 1), got {self.dropout}")
        _check(
            self.positional in POSITIONAL_ENCODINGS,
            f"positional: must be one of {list(POSITIONAL_ENCODINGS)}, got {self.positional!r}",
        )
        if self.positional == "rope":
            _check(
                (self.d_model // self.n_heads) % 2 == 0,
                f"d_model: rotary positions need an even head size, got {self.d_model // self.n_heads}",
            )
        _check(
            self.attention_window is None or self.attention_window >= 1,
            f"attention_window: must be >= 1 or null, got {self.attention_window}",
        )
        _check(
            self.memory_capacity >= 0, f"memory_capacity: must be >= 0, got {self.memory_capacity}"
        )
        _check(self.memory_top_k >= 1, f"memory_top_k: must be >= 1, got {self.memory_top_k}")
        _check(
            -1.0 <= self.memory_hit_threshold <= 1.0,
            f"memory_hit_threshold: a cosine similarity in [-1, 1], got {self.memory_hit_threshold}",
        )


# ----------------------------------------------------------------------------- orchestration


@dataclass
class StepLossWeights(_YamlMixin):
    """Weights per loss type, and how the per-step losses are weighted over the unroll.

    Step weights are normalised to sum to 1 over `max_steps_train` steps:
    uniform w_t = 1; linear w_t = t; exponential w_t = decay^(T - t) (recent steps
    weigh more); explicit: `steps`, one non-negative weight per training step.
    """

    token: float = 1.0
    halting: float = 0.5
    quality: float = 0.5
    schedule: str = "exponential"
    decay: float = 0.8
    steps: list[float] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("token", "halting", "quality"):
            value = getattr(self, name)
            _check(value >= 0, f"{name}: loss weights must be >= 0, got {value}")
        _check(self.token + self.halting + self.quality > 0, "token: all loss weights are zero")
        _check(
            self.schedule in STEP_SCHEDULES,
            f"schedule: must be one of {list(STEP_SCHEDULES)}, got {self.schedule!r}",
        )
        _check(0 < self.decay <= 1, f"decay: must be in (0, 1], got {self.decay}")
        if self.schedule == "explicit":
            _check(
                self.steps is not None, "steps: schedule 'explicit' needs a list of step weights"
            )
        elif self.steps is not None:
            raise ConfigError(
                f"steps: only used with schedule 'explicit' (schedule is {self.schedule!r})"
            )
        if self.steps is not None:
            _check(
                all(w >= 0 for w in self.steps),
                f"steps: step weights must be >= 0, got {self.steps}",
            )
            _check(sum(self.steps) > 0, "steps: at least one step weight must be > 0")


PATIENCE_SIGNALS = ("score", "canvas")


@dataclass
class StoppingConfig(_YamlMixin):
    """When inference stops a sample (checked in this order, after every step)."""

    early_stopping: bool = True  # False: every sample runs to max steps
    act_threshold: float | None = 0.5  # stop when sigmoid(halting logit) >= this
    quality_threshold: float | None = 0.95  # stop when the canvas score >= this
    patience: int | None = 3  # stop after this many stale steps (see patience_signal)
    min_improvement: float = 1e-3  # a score gain below this does not count as improvement
    # What makes a step stale for patience: "score" (no score gain of min_improvement)
    # or "canvas" (the edit left the canvas unchanged). Neither won on every model
    # measured (bench/results/calibration.md); calibration tries both.
    patience_signal: str = "score"
    # Calibration (refiner.calibration) may lose at most this many accuracy points
    # against running every sample to the step limit.
    max_accuracy_loss: float = 0.5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("act_threshold", "quality_threshold"):
            value = getattr(self, name)
            _check(
                value is None or 0 < value <= 1, f"{name}: must be in (0, 1] or null, got {value}"
            )
        _check(
            self.patience is None or self.patience >= 1,
            f"patience: must be >= 1 or null, got {self.patience}",
        )
        _check(
            self.min_improvement >= 0, f"min_improvement: must be >= 0, got {self.min_improvement}"
        )
        _check(
            self.patience_signal in PATIENCE_SIGNALS,
            f"patience_signal: must be one of {list(PATIENCE_SIGNALS)}, got {self.patience_signal!r}",
        )
        _check(
            0 <= self.max_accuracy_loss <= 100,
            f"max_accuracy_loss: must be in [0, 100] (accuracy points), got {self.max_accuracy_loss}",
        )


@dataclass
class GrokfastConfig(_YamlMixin):
    """Grokfast gradient filter (Lee et al. 2024): amplify the slow gradient component.

    ema: mu <- alpha*mu + (1-alpha)*g ; g <- g + lamb*mu.
    ma:  g <- g + lamb*mean(last `window` gradients) (once the window is full if warmup).
    """

    mode: str = "off"
    alpha: float = 0.98
    lamb: float = 2.0
    window: int = 100
    warmup: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check(
            self.mode in GROKFAST_MODES,
            f"mode: must be one of {list(GROKFAST_MODES)}, got {self.mode!r}",
        )
        _check(0 <= self.alpha < 1, f"alpha: must be in [0, 1), got {self.alpha}")
        _check(self.lamb >= 0, f"lamb: must be >= 0, got {self.lamb}")
        _check(self.window >= 1, f"window: must be >= 1, got {self.window}")


@dataclass
class OrchestrationConfig(_YamlMixin):
    """Everything the UnifiedRefinerOrchestrator does: train many steps, infer few."""

    max_steps_train: int = 16
    max_steps_infer: int = 4
    truncated_backprop: bool = True
    backprop_truncate_steps: int = 8  # K: gradients flow through the last K steps only
    step_loss_weights: StepLossWeights = field(default_factory=StepLossWeights)
    gradient_clip_threshold: float | None = 1.0  # max global grad norm; null: no clipping
    loss_smoothing_window: int = 3
    augmentation_strategies: list[str] = field(
        default_factory=lambda: list(AUGMENTATION_STRATEGIES)
    )
    augmentation_count: int = 300
    canvas_edit_strategies: list[str] = field(default_factory=lambda: list(EDIT_STRATEGIES))
    adaptive_edit_selection: bool = True
    edit_selection: str = "epsilon_greedy"  # or "ucb"
    edit_exploration: float = 0.1  # epsilon, or the UCB exploration coefficient
    patch_budget: float = 0.25  # fraction of positions a `patch` edit may change
    append_budget: float = 0.25  # fraction of positions an `append` edit fills
    stopping: StoppingConfig = field(default_factory=StoppingConfig)
    grokfast: GrokfastConfig = field(default_factory=GrokfastConfig)
    memory_writes_per_step: int = 8  # solved samples written to the memory bank per step
    seed: int = 0  # edit-selection exploration

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check(
            1 <= self.max_steps_train <= 256,
            f"max_steps_train: must be in [1, 256], got {self.max_steps_train}",
        )
        _check(
            1 <= self.max_steps_infer <= self.max_steps_train,
            f"max_steps_infer: must be in [1, max_steps_train={self.max_steps_train}], "
            f"got {self.max_steps_infer}",
        )
        if self.truncated_backprop:
            _check(
                1 <= self.backprop_truncate_steps <= self.max_steps_train,
                f"backprop_truncate_steps: must be in [1, max_steps_train={self.max_steps_train}], "
                f"got {self.backprop_truncate_steps}",
            )
        w = self.step_loss_weights
        if w.steps is not None:
            _check(
                len(w.steps) == self.max_steps_train,
                f"step_loss_weights.steps: has {len(w.steps)} weights, "
                f"max_steps_train is {self.max_steps_train}",
            )
        _check(
            self.gradient_clip_threshold is None or self.gradient_clip_threshold > 0,
            f"gradient_clip_threshold: must be > 0 or null, got {self.gradient_clip_threshold}",
        )
        _check(
            self.loss_smoothing_window >= 1,
            f"loss_smoothing_window: must be >= 1, got {self.loss_smoothing_window}",
        )
        _check_names(
            "augmentation_strategies", self.augmentation_strategies, AUGMENTATION_STRATEGIES
        )
        _check(
            self.augmentation_count >= 1,
            f"augmentation_count: must be >= 1, got {self.augmentation_count}",
        )
        _check_names("canvas_edit_strategies", self.canvas_edit_strategies, EDIT_STRATEGIES)
        _check(
            len(self.canvas_edit_strategies) >= 1,
            "canvas_edit_strategies: needs at least one strategy",
        )
        _check(
            self.edit_selection in EDIT_SELECTORS,
            f"edit_selection: must be one of {list(EDIT_SELECTORS)}, got {self.edit_selection!r}",
        )
        _check(
            self.edit_exploration >= 0,
            f"edit_exploration: must be >= 0, got {self.edit_exploration}",
        )
        for name in ("patch_budget", "append_budget"):
            value = getattr(self, name)
            _check(0 < value <= 1, f"{name}: a fraction of positions in (0, 1], got {value}")
        _check(
            self.memory_writes_per_step >= 0,
            f"memory_writes_per_step: must be >= 0, got {self.memory_writes_per_step}",
        )

    def gradient_window(self, steps: int | None = None) -> int:
        """How many of the last steps of a `steps`-step unroll carry gradient."""
        steps = self.max_steps_train if steps is None else steps
        return min(self.backprop_truncate_steps, steps) if self.truncated_backprop else steps


def _check_names(key: str, names: Sequence[str], known: Sequence[str]) -> None:
    for i, name in enumerate(names):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{key}[{i}]: unknown strategy {name!r}{hint}; known: {list(known)}")
    _check(len(set(names)) == len(names), f"{key}: lists a strategy twice: {list(names)}")
