"""What a job's console shows: the project's lines and every warning or error that needs
a person, not Ray's INFO chatter.

Left out of the console (all of it stays in the Ray session's log files,
``/tmp/ray/session_*/logs``):

- Ray's own INFO lines in the driver (``ray.init(logging_level=WARNING)``);
- Ray Train's INFO lines from its controller and workers ("Requesting resources",
  "Moving model to device", "Checkpoint successfully created"): ``ray.train``'s
  ``LoggingConfig(log_level="WARNING")`` in the run config; its system log files
  (``logs/train/ray-train-sys-*.log``) keep every level;
- Ray Tune's "Checkpoint successfully created at" INFO line, once per report of a PBT
  trial (``compat.quiet_tune_checkpoint_logging``, called by the trial);
- Ray Data's INFO lines ("Starting execution of Dataset", execution plans): its console
  handler at WARNING through ``RAY_DATA_LOGGING_CONFIG``; ``logs/ray-data/`` keeps them;
- Ray's notice that a new local cluster has token authentication on (its default);
- Ray Data's hint that progress bars are off (the trainer turns them off on purpose
  where stdout is not a terminal);
- deprecation warnings raised inside Ray's own modules: written to
  ``logs/refiner-ray-deprecations.log`` by a worker setup hook instead of stderr;
- Ray's error-level notice that its own ``PreemptionWatcher`` actor (Ray Train's) keeps
  constructor arguments in the object store (ray-project/ray#53727: Ray's code, nothing
  for the user to do), which the driver would echo from the Train controller: written to
  ``logs/refiner-ray-notices.log``;
- scikit-learn's ``ConvergenceWarning``s from the Gaussian process that PB2 refits in the
  sweep driver at every perturbation (a kernel length scale at its bound, lbfgs out of
  iterations: nothing the user set, and nothing to act on): written to
  ``logs/refiner-ray-notices.log``;
- Ray Tune's hint, at the start of every PBT or PB2 sweep, to enable ``reuse_actors``
  and implement ``reset_config``: each trial here starts a Ray Train run of its own, so
  a reused trial actor would save nothing: written to ``logs/refiner-ray-notices.log``.

A worker also learns its own cluster's address (``RAY_ADDRESS``): Ray Train's placement
group cleaner looks a cluster up by address, and with several Ray instances on one
machine (other users' or other jobs') it otherwise fails with a traceback on the console.

Warnings and errors from Ray, and everything the project prints or warns, still reach
the console. On a cluster the job attaches to (``ray job submit``), the workers' side is
the cluster's: pass ``--runtime-env-json '{"worker_process_setup_hook":
"refiner.distributed.console.quiet_worker_console"}'`` to quiet them the same way.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import ray
import yaml

from refiner.distributed.compat import (
    filter_worker_lines,
    ray_data_default_logging,
    session_logs_dir,
)

CONSOLE_LEVEL = "WARNING"
RAY_DATA_LOGGING_ENV = "RAY_DATA_LOGGING_CONFIG"
WORKER_SETUP_HOOK = "refiner.distributed.console.quiet_worker_console"
DEPRECATIONS_LOG = "refiner-ray-deprecations.log"
NOTICES_LOG = "refiner-ray-notices.log"
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_RAY_DIR = str(Path(ray.__file__).resolve().parent)
# scikit-learn is found by name, not imported: only PB2 sweeps load it
_SKLEARN_DIR = f"{os.sep}sklearn{os.sep}"
_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def train_logging_config() -> Any:
    """Ray Train's console and app-log level (its system logs keep every level)."""
    import ray.train  # not at the top: Ray Data's processes load this module's filter

    return ray.train.LoggingConfig(log_level=CONSOLE_LEVEL)


class ProgressHintFilter(logging.Filter):
    """Drops Ray Data's "Progress bars disabled. To enable, set ..." hint.

    The trainer turns the bars off on purpose where stdout is not a terminal; the hint
    (a WARNING, once per process) would tell the user to undo that.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Progress bars disabled")


class TokenAuthNoticeFilter(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster" WARNING.

    A new local cluster turns token authentication on by default and says so at every
    start; nothing is wrong and nothing is asked of the user. (Setting RAY_AUTH_MODE
    ourselves would silence it too, but Ray reads its config before: the head then fails.)
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled")


def quiet_token_auth_notice() -> None:
    logger = logging.getLogger(TOKEN_AUTH_LOGGER)
    if not any(isinstance(f, TokenAuthNoticeFilter) for f in logger.filters):
        logger.addFilter(TokenAuthNoticeFilter())


def quiet_runtime_env() -> dict[str, Any]:
    """The runtime env of a local cluster the project starts: quiet workers from the start."""
    return {
        "env_vars": {RAY_DATA_LOGGING_ENV: ray_data_logging_file()},
        "worker_process_setup_hook": WORKER_SETUP_HOOK,
    }


def ray_data_logging_file() -> str:
    """Ray Data's default logging config with its console handler at WARNING, as a file."""
    config = ray_data_default_logging()
    config["handlers"]["console"]["level"] = CONSOLE_LEVEL
    config["filters"]["refiner_progress_hint"] = {"()": f"{__name__}.ProgressHintFilter"}
    config["handlers"]["console"]["filters"] = [
        *config["handlers"]["console"].get("filters", []),
        "refiner_progress_hint",
    ]
    text = yaml.safe_dump(config, sort_keys=True)
    path = Path(tempfile.gettempdir()) / f"refiner-ray-data-logging-{os.getuid()}.yaml"
    if not path.is_file() or path.read_text() != text:
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)  # atomic: a concurrent job never reads half a file
    return str(path)


def quiet_driver_console() -> None:
    """In the driver, after ``ray.init``: the same for Ray Data, imported before the env."""
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ == "PlainRayHandler":  # the console one, not the file
            handler.setLevel(CONSOLE_LEVEL)
            handler.addFilter(ProgressHintFilter())
    _route_ray_deprecations()
    filter_worker_lines(is_ray_notice, _log_notices)


def quiet_worker_console() -> None:
    """Ray's ``worker_process_setup_hook``: runs in every worker process at start."""
    _route_ray_deprecations()
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def is_ray_notice(line: str) -> bool:
    """A line a worker printed that is Ray's business alone (see the module's list)."""
    return "'PreemptionWatcher'" in line and "constructor arguments in the object store" in line


def _log_notices(lines: list[str]) -> None:
    folder = session_logs_dir()
    if folder is None:
        return
    try:
        with open(os.path.join(folder, NOTICES_LOG), "a", encoding="utf-8") as log:
            log.writelines(f"{line}\n" for line in lines)
    except OSError:
        pass  # a notice nobody needs is not worth failing a run over


def _route_ray_deprecations() -> None:
    if getattr(warnings.showwarning, "_refiner_quiet", False):
        return
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        text = warnings.formatwarning(message, category, filename, lineno)
        if issubclass(category, _DEPRECATIONS) and str(filename).startswith(_RAY_DIR):
            if _log_line(DEPRECATIONS_LOG, text):
                return
        notice = _is_model_fit_notice(category, str(filename)) or _is_actor_reuse_hint(
            str(message), str(filename)
        )
        if notice and _log_line(NOTICES_LOG, text):
            return
        shown(message, category, filename, lineno, file, line)

    showwarning._refiner_quiet = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def _is_model_fit_notice(category: type[Warning], filename: str) -> bool:
    """scikit-learn's convergence notice from PB2's Gaussian process fit."""
    return category.__name__ == "ConvergenceWarning" and _SKLEARN_DIR in filename


def _is_actor_reuse_hint(message: str, filename: str) -> bool:
    """Ray Tune's PBT hint to reuse trial actors (``ray/tune/tune.py``)."""
    return filename.startswith(_RAY_DIR) and "`reuse_actors`" in message and "PBT" in message


def _log_line(name: str, text: str) -> bool:
    folder = session_logs_dir()
    if folder is None:
        return False
    try:
        with open(os.path.join(folder, name), "a", encoding="utf-8") as log:
            log.write(f"[pid {os.getpid()}] {text}")
    except OSError:
        return False  # cannot keep it in a file: show it after all
    return True
