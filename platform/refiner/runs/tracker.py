"""What the training loop needs from experiment tracking, without naming a backend.

The Ray layer may not import MLflow (see docs/layout.md), so the jobs hand it a
picklable ``RunTracker``; ``refiner.tracking.MlflowTracker`` is the real one and
``NullTracker`` records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, runtime_checkable

from refiner.infer.serving import ServingProfile
from refiner.runs.provenance import TaskDataset


@runtime_checkable
class RunTracker(Protocol):
    """One experiment-tracking run, written to by rank 0 only."""

    @property
    def run_id(self) -> str | None:
        """The backend's id of the run (None: nothing is recorded)."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_dataset(self, dataset: TaskDataset) -> None: ...

    def while_training(self) -> AbstractContextManager[None]:
        """Around rank 0's training: record the machine's load (CPU, memory, GPU), and
        let no backend call hold the loop for long (``for_training`` keeps and retries)."""
        ...

    def log_model(
        self,
        checkpoint_path: str,
        step: int,
        metrics: Mapping[str, float],
        profile: ServingProfile | None = None,
        register: bool = True,
    ) -> str | None:
        """Log a kept checkpoint as the run's model at ``step`` (with the training rows'
        ``ServingProfile`` for serving); ``register``: this is the run's model (registered
        under the run's name, tagged); its URI (or None)."""
        ...

    def for_training(self) -> RunTracker:
        """The tracker rank 0 logs through while training: it outlasts an outage of the
        backend (buffered, retried) and records nothing twice when updates are replayed."""
        ...

    def flush(self, timeout_s: float) -> dict[str, Any]:
        """Send what is buffered, trying for up to ``timeout_s``; a report of what could
        not be recorded (``lost_summary`` reads it). Empty when nothing is buffered."""
        ...

    def settle(self, timeout_s: float) -> bool:
        """Before a checkpoint: wait up to ``timeout_s`` for what is buffered to be
        recorded, unless the backend is known to be away (training never waits on an
        outage). True when nothing is left to send."""
        ...


class NullTracker:
    """A tracker that drops everything (tests of the loop logic, --no-tracking)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_dataset(self, dataset: TaskDataset) -> None:
        pass

    def while_training(self) -> AbstractContextManager[None]:
        return nullcontext()

    def log_model(
        self,
        checkpoint_path: str,
        step: int,
        metrics: Mapping[str, float],
        profile: ServingProfile | None = None,
        register: bool = True,
    ) -> str | None:
        return None

    def for_training(self) -> NullTracker:
        return self

    def flush(self, timeout_s: float) -> dict[str, Any]:
        return {}

    def settle(self, timeout_s: float) -> bool:
        return True


LOST_TAG = "refiner.tracking.lost"  # on a run: what an outage kept out of its history


def lost_summary(report: Mapping[str, Any]) -> str | None:
    """One line naming what a tracker's ``flush`` could not record; None if nothing."""
    parts = []
    if report.get("lost_points"):
        parts.append(f"{report['lost_points']} metric points ({', '.join(report['lost_keys'])})")
    if report.get("lost_tags"):
        parts.append(f"tags {', '.join(report['lost_tags'])}")
    if report.get("lost_artifacts"):
        parts.append(f"artifacts {', '.join(report['lost_artifacts'])}")
    return "not recorded in MLflow: " + "; ".join(parts) if parts else None


def outage_summary(report: Mapping[str, Any]) -> str | None:
    """One line on a tracking outage that training outlasted; None if there was none."""
    if not report.get("outage_s"):
        return None
    return (
        f"MLflow was unreachable for {report['outage_s']:.0f} s during training; "
        f"{report.get('delivered_late', 0)} metric points were recorded after it returned"
    )


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: the dotted key paths used by ``--set`` and params."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out
