"""Per-sample stopping for inference ("infer few").

After every step each still-active sample is checked, in this order:
`act_confidence` (sigmoid of the halting logit >= act_threshold), `quality_threshold`
(canvas score >= quality_threshold), `patience` (`patience` stale steps in a row) and
`max_steps` (the step budget is spent). A step is stale, by `patience_signal`, when the
score gained less than min_improvement ("score") or when the edit left the canvas
unchanged ("canvas": the score can stall while the canvas is still being fixed).

The settings a run stops by live here too: `StoppingSettings` (thresholds, patience,
step limit), a `CalibrationResult` (settings chosen on held-out rows by
refiner.infer.calibration, and their origin) and `stopping_in_use`, which picks the
settings an inference call runs with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from refiner.config.sections import PatienceSignal, StoppingConfig

STOP_REASONS = ("act_confidence", "quality_threshold", "patience", "max_steps")
CONTINUE = -1
# How a summary names the reasons: words, not the config keys (a "max_steps: 4" count
# reads as if the step limit were 4).
STOP_REASON_WORDS = {
    "act_confidence": "halting head confident",
    "quality_threshold": "quality head satisfied",
    "patience": "no improvement (patience)",
    "max_steps": "reached the step limit",
}


def describe_stop_counts(counts: dict[str, int]) -> str:
    """``{"act_confidence": 406, "max_steps": 4}`` -> "406 rows halting head confident,
    4 rows reached the step limit" (most common first)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        ", ".join(
            f"{n} row{'s' if n != 1 else ''} {STOP_REASON_WORDS.get(k, k)}" for k, n in ordered
        )
        or "no rows"
    )


class StoppingRule:
    """Tracks the active samples' best score and stale-step count; compacts with them."""

    def __init__(
        self, config: StoppingConfig, batch_size: int, device: torch.device, enabled: bool = True
    ) -> None:
        self.config, self.enabled = config, enabled
        self.best_score = torch.full((batch_size,), -1.0, device=device)
        self.stale_steps = torch.zeros(batch_size, dtype=torch.long, device=device)

    def update(
        self,
        halt_prob: torch.Tensor,
        score: torch.Tensor,
        last_step: bool,
        canvas_changed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reason codes [B]: an index into STOP_REASONS, or CONTINUE (-1).

        `canvas_changed` [B] (did this step's edit change the canvas) is required when
        patience_signal is "canvas"."""
        improved = score >= self.best_score + self.config.min_improvement
        if self.config.patience_signal == "canvas":
            if canvas_changed is None:
                raise ValueError('patience_signal "canvas" needs canvas_changed')
            improved = canvas_changed
        self.stale_steps = torch.where(improved, 0, self.stale_steps + 1)
        self.best_score = torch.maximum(self.best_score, score)
        codes = torch.full_like(self.stale_steps, CONTINUE)
        checks = [(3, torch.full_like(improved, last_step))]  # lowest priority first
        if self.enabled:
            c = self.config
            if c.patience is not None:
                checks.append((2, self.stale_steps >= c.patience))
            if c.quality_threshold is not None:
                checks.append((1, score >= c.quality_threshold))
            if c.act_threshold is not None:
                checks.append((0, halt_prob >= c.act_threshold))
        for code, hit in checks:  # later (higher-priority) checks overwrite earlier ones
            codes = torch.where(hit, code, codes)
        return codes

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices of the still-active samples)."""
        self.best_score, self.stale_steps = self.best_score[rows], self.stale_steps[rows]


@dataclass
class StoppingSettings:
    """Everything that decides when a sample stops (a StoppingConfig plus a step limit)."""

    act_threshold: float | None
    quality_threshold: float | None
    patience: int | None
    patience_signal: PatienceSignal
    max_steps: int
    min_improvement: float = 1e-3

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        self.as_config(StoppingConfig())  # validates the thresholds, patience and signal

    @classmethod
    def from_config(cls, config: StoppingConfig, max_steps: int) -> StoppingSettings:
        return cls(
            config.act_threshold,
            config.quality_threshold,
            config.patience,
            config.patience_signal,
            max_steps,
            config.min_improvement,
        )

    def as_config(self, base: StoppingConfig) -> StoppingConfig:
        """`base` with these settings (early stopping on; base keeps max_accuracy_loss)."""
        return dataclasses.replace(
            base,
            early_stopping=True,
            act_threshold=self.act_threshold,
            quality_threshold=self.quality_threshold,
            patience=self.patience,
            patience_signal=self.patience_signal,
            min_improvement=self.min_improvement,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoppingSettings:
        return cls(**data)

    def describe(self) -> str:
        patience = (
            "no patience"
            if self.patience is None
            else f"patience {self.patience} ({self.patience_signal})"
        )
        return (
            f"ACT {_fmt(self.act_threshold)}, quality {_fmt(self.quality_threshold)}, "
            f"{patience}, max {self.max_steps} steps"
        )


@dataclass
class CalibrationResult:
    """The chosen settings, what they cost on the calibration rows, and their origin."""

    settings: StoppingSettings
    update: int | None  # the orchestrator's step_count when calibrated
    rows: int  # calibration rows
    max_steps: int  # the user's step limit the rows ran to
    max_accuracy_loss: float  # the bound, accuracy points
    accuracy_at_limit: float  # every sample runs max_steps
    accuracy: float  # with the chosen settings
    mean_steps: float
    accuracy_at: list[float] = field(default_factory=list)  # acc@t of the recorded pass
    frontier: list[dict[str, Any]] = field(default_factory=list)  # steps-vs-accuracy
    config_point: dict[str, Any] | None = None  # what the config's own settings gave
    margin_sigmas: float = 0.0  # standard errors the bound was kept with

    @property
    def origin(self) -> str:
        at = f"update {self.update}" if self.update is not None else "an unknown update"
        return f"calibrated at {at} on {self.rows} rows"

    @property
    def accuracy_loss(self) -> float:
        """Points lost against running to the limit (negative: stopping gained)."""
        return 100 * (self.accuracy_at_limit - self.accuracy)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only: loads under torch.load(weights_only=True)."""
        out = dataclasses.asdict(self)
        out["settings"] = self.settings.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationResult:
        values = dict(data)
        values["settings"] = StoppingSettings.from_dict(values["settings"])
        return cls(**values)

    def summary(self) -> str:
        text = (
            f"stopping {self.settings.describe()} ({self.origin}): {self.mean_steps:.2f} mean "
            f"steps, {self.accuracy:.2%} exact vs {self.accuracy_at_limit:.2%} at "
            f"{self.max_steps} steps (loss {self.accuracy_loss:.2f} points, "
            f"bound {self.max_accuracy_loss}"
            + (
                f" with {self.margin_sigmas:g} standard errors to spare)"
                if self.margin_sigmas
                else ")"
            )
        )
        if self.rows and 100 / self.rows > self.max_accuracy_loss:
            # measured: on 129 sudoku rows, settings lossless there lost 2.3 points on others
            text += (
                f"; one row is {100 / self.rows:.2f} points, more than the bound, so these"
                " settings may lose more on new rows: calibrate on more rows"
                " (task.val_max_rows, a larger validation split, stopping.calibration_views)"
            )
        return text


def stopping_in_use(
    calibration: CalibrationResult | None,
    config: StoppingConfig,
    max_steps: int,
    early_stopping: bool,
    limit_given: bool = False,
) -> tuple[StoppingConfig, int, dict[str, Any]]:
    """(stopping config, step limit, report) for one inference call.

    With early stopping and a calibration, its settings replace the config's and its
    step limit caps `max_steps`, unless the caller chose the limit (`limit_given`: a
    user's --max-steps runs that many steps at most, with the calibrated thresholds);
    the report says which settings ran and their origin."""
    if not early_stopping:
        report = {"origin": "early stopping off", "max_steps": max_steps}
        return config, max_steps, report
    if calibration is None:
        settings, origin = StoppingSettings.from_config(config, max_steps), "config"
    else:
        settings, origin = calibration.settings, calibration.origin
        if limit_given and max_steps != settings.max_steps:
            settings = dataclasses.replace(settings, max_steps=max_steps)
            origin += ", step limit given"
        max_steps = min(max_steps, settings.max_steps)
        config = settings.as_config(config)
    report = {**settings.to_dict(), "max_steps": max_steps, "origin": origin}
    return config, max_steps, report


def describe_stopping(report: Mapping[str, Any]) -> str:
    """One line from an inference result's "stopping" report: the settings and origin."""
    if "act_threshold" not in report:  # early stopping off
        return f"every sample runs {report['max_steps']} steps ({report['origin']})"
    settings = StoppingSettings.from_dict(
        {k: report[k] for k in (f.name for f in dataclasses.fields(StoppingSettings))}
    )
    return f"{settings.describe()} ({report['origin']})"


def _fmt(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"
