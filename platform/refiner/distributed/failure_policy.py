"""Deterministic failures end a Ray Train run at once; transient ones use max_failures.

Ray Train's default failure policy restarts the worker group on any worker error, up to
``FailureConfig(max_failures)``. For an error caused by the input (a task that the
augmentation cannot handle, a config value a worker rejects) every restart fails the
same way, and the run ends after minutes with a ``WorkerGroupError`` traceback. Here:

- ``FailFastPolicy`` raises at once when a worker's error is deterministic
  (``refiner.runs.failures.DeterministicError``, ``ConfigError``, ``TaskFileError``),
  and otherwise decides as Ray's ``DefaultFailurePolicy`` does (worker deaths, collective
  timeouts, anything unmarked keep their retries);
- ``deterministic_cause`` digs the original error out of Ray's wrappers: Ray Train's
  ``UserExceptionWithTraceback`` and ``RayTaskError`` (Ray Data's failed augmentation
  tasks reach the workers as these), and ``__cause__`` chains;
- ``FailFastTorchTrainer`` is a ``TorchTrainer`` that runs with that policy.

Ray Train 2.60 has no public hook for a failure policy: this module is the one place
that touches its private failure-handling API (``_initialize_and_run_controller`` and
``DefaultFailurePolicy``).
"""

from __future__ import annotations

from typing import Any

from ray.exceptions import RayError
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.failure_handling import (
    DefaultFailurePolicy,
    FailureDecision,
)
from ray.train.v2.api.exceptions import TrainingFailedError, WorkerGroupError

from refiner.config.sections import ConfigError
from refiner.runs.failures import DeterministicError
from refiner.tasks.problems import TaskFileError

DETERMINISTIC = (DeterministicError, ConfigError, TaskFileError)
# How a deterministic error shows in a traceback text, when Ray passed on only the text.
_MARKERS = tuple(f"{t.__module__}.{t.__qualname__}: " for t in DETERMINISTIC)


def deterministic_cause(error: BaseException) -> BaseException | None:
    """The deterministic error inside ``error`` (itself or wrapped by Ray), else None.

    Prefers the innermost plain exception: a ``RayTaskError`` posing as its cause's class
    carries a whole traceback in its message, the cause itself only the reason.
    """
    found: BaseException | None = None
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts.append(str(current))
        if isinstance(current, DETERMINISTIC):
            if not isinstance(current, RayError):
                return current
            found = found or current
        pending.extend(
            [
                getattr(current, "_base_exc", None),  # Ray Train's UserExceptionWithTraceback
                getattr(current, "cause", None),  # RayTaskError
                current.__cause__,
                current.__context__,
            ]
        )
        if isinstance(current, WorkerGroupError):
            pending.extend(current.worker_failures.values())
    return found or _from_traceback_text("\n".join(texts))


def reason(error: BaseException) -> str:
    """One line for ``error:``: the deterministic error's message, without a traceback."""
    text = str(error)
    for marker in _MARKERS:
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _from_traceback_text(text: str) -> BaseException | None:
    """Ray may hand on a failed task's traceback as text only: read the marker."""
    for marker in _MARKERS:
        if marker in text:
            return DeterministicError(reason(DeterministicError(text)))
    return None


class FailFastPolicy(DefaultFailurePolicy):
    """Ray's default decisions, except that a deterministic worker error is never retried."""

    def make_decision(self, training_failed_error: TrainingFailedError) -> FailureDecision:
        if isinstance(training_failed_error, WorkerGroupError) and deterministic_cause(
            training_failed_error
        ):
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class FailFastTorchTrainer(TorchTrainer):
    """``TorchTrainer`` whose controller uses ``FailFastPolicy`` (same FailureConfig)."""

    def _initialize_and_run_controller(self, **controller_init_kwargs: Any) -> Any:
        controller_init_kwargs["failure_policy"] = FailFastPolicy(self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)
