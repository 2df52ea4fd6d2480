"""MLflow's console lines that need nobody: into a log file beside Ray's.

Left out of the console, kept in ``<logs>/refiner-mlflow.log``:

- MLflow's own INFO lines (``mlflow`` logger), e.g. "Validating input example against
  model signature" when a model is logged;
- the "Downloading artifacts" progress bars (MLflow's artifact progress bar, off);
- MLflow's UserWarnings raised inside its own modules (they advise the author of a model
  class, not the person training: the project answers them in code, see
  ``refiner.tracking.logged_model``).

MLflow's WARNING and ERROR log lines still reach the console.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import mlflow
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

MLFLOW_LOG = "refiner-mlflow.log"
_MLFLOW_DIR = str(Path(mlflow.__file__).resolve().parent)


_routed_to: list[str] = []  # the folder this process's MLflow lines go to, once routed


def quiet_mlflow_console(log_dir: str | os.PathLike) -> Path:
    """Route MLflow's INFO lines and its own UserWarnings to ``log_dir/refiner-mlflow.log``
    and turn its artifact progress bars off; returns the log file."""
    _routed_to[:] = [str(log_dir)]
    path = Path(log_dir) / MLFLOW_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    logger = logging.getLogger("mlflow")
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.WARNING)
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        to_file = logging.FileHandler(path)
        to_file.setLevel(logging.INFO)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(to_file)
    logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    _route_mlflow_warnings(path)
    return path


def mlflow_console_log_dir() -> str | None:
    """The folder ``quiet_mlflow_console`` routed this process's MLflow lines to, if any:
    a sweep's driver hands it to its trial processes, which log models too."""
    return _routed_to[0] if _routed_to else None


def _route_mlflow_warnings(path: Path) -> None:
    if getattr(warnings.showwarning, "_refiner_mlflow", False):
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, UserWarning) and str(filename).startswith(_MLFLOW_DIR):
            with open(path, "a") as log:
                log.write(warnings.formatwarning(message, category, filename, lineno))
            return
        shown(message, category, filename, lineno, file, line)

    showwarning._refiner_mlflow = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
