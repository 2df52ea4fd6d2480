"""What the training loop needs from experiment tracking, without naming a backend.

The Ray layer may not import MLflow (see the README, Layout), so the jobs hand it a
picklable ``RunTracker``; ``refiner.tracking.MlflowTracker`` is the real one and
``NullTracker`` records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, runtime_checkable

from refiner.provenance import TaskDataset
from refiner.serving import ServingProfile


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

    def system_metrics(self) -> AbstractContextManager[None]:
        """Record the machine's load (CPU, memory, GPU) while the block runs."""
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

    def system_metrics(self) -> AbstractContextManager[None]:
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
