"""Where MLflow runs are kept: resolving and checking the tracking URI, without MLflow.

Kept out of ``refiner.tracking`` (which imports MLflow) so that a job's ``--dry-run``
can validate the store's location without loading MLflow; ``refiner.tracking``
re-exports these names.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from refiner.runs.cli import BadInputError


class TrackingError(BadInputError, RuntimeError):
    """The tracking store cannot be used (unreachable server, unwritable database path)."""


def resolve_tracking_uri(explicit: str | None = None, cwd: str | os.PathLike | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else an absolute SQLite file in cwd.

    MLflow 3.17 refuses the plain file store, and a relative SQLite path would move with
    the process's working directory (a Ray job's is a temporary folder).
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


def check_tracking_store(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before any compute, when the store cannot be reached or written."""
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(
                        f"MLflow server {uri} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({exc}); start it, fix "
                "--tracking-uri / MLFLOW_TRACKING_URI, or port-forward it"
            ) from None
    elif uri.startswith("sqlite:///"):
        db_dir = Path(uri[len("sqlite:///") :]).parent
        if not db_dir.is_dir():
            raise TrackingError(f"tracking database folder {db_dir} does not exist (from {uri})")
        if not os.access(db_dir, os.W_OK):
            raise TrackingError(f"tracking database folder {db_dir} is not writable (from {uri})")
