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


def quiet_mlflow_console(log_dir: str | os.PathLike) -> Path:
    """Route MLflow's INFO lines and its own UserWarnings to ``log_dir/refiner-mlflow.log``
    and turn its artifact progress bars off; returns the log file."""
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
