"""The console of a job's local Ray: Ray's INFO lines, its progress-bar hint and its
deprecation warnings go to the session's log files; warnings that need a person (Ray's
other warnings, the project's own, deprecations raised from project code) still show.

A real local cluster started the way the jobs start it (``init_ray``); what reaches the
console is what the process writes to stderr.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from pathlib import Path

import pytest
import ray
import ray.data

from refiner.distributed import console
from refiner.distributed.cluster import init_ray
from refiner.distributed.compat import session_logs_dir

pytestmark = [pytest.mark.slow, pytest.mark.ray]

RAY_FILE = str(Path(ray.data.__file__).parent / "_internal" / "somewhere.py")
SKLEARN_FILE = str(Path("site-packages") / "sklearn" / "gaussian_process" / "kernels.py")
OUR_FILE = str(Path(console.__file__))


@pytest.fixture(scope="module")
def job_ray():
    os.environ.pop("RAY_ADDRESS", None)
    line = init_ray(None, 2)
    yield line
    ray.shutdown()


def shown(*emitted: tuple[type[Warning], str, str]) -> list[str]:
    """The warnings that reach the console (pytest records them instead of printing)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console._route_ray_deprecations()  # what init_ray installed, around pytest's recorder
        for category, filename, text in emitted:
            warnings.warn_explicit(text, category, filename, 1)
    return [str(w.message) for w in caught]


def test_ray_deprecations_go_to_the_log_file_and_the_rest_shows(job_ray) -> None:
    assert job_ray.startswith("local Ray on 127.0.0.1")
    assert shown(
        (DeprecationWarning, RAY_FILE, "ray-internal-deprecation-1"),
        (UserWarning, RAY_FILE, "ray-user-warning-2"),
        (DeprecationWarning, OUR_FILE, "project-deprecation-3"),
        (UserWarning, OUR_FILE, "project-warning-4"),
    ) == ["ray-user-warning-2", "project-deprecation-3", "project-warning-4"]
    kept = Path(session_logs_dir(), console.DEPRECATIONS_LOG).read_text()
    assert "ray-internal-deprecation-1" in kept and "project-warning-4" not in kept


class ConvergenceWarning(UserWarning):
    """Named as scikit-learn's (sklearn.exceptions), which the console matches by name."""


def test_pb2_model_fit_notices_go_to_the_notices_log(job_ray) -> None:
    assert shown(
        (ConvergenceWarning, SKLEARN_FILE, "length scale close to its bound (probe-12)"),
        (UserWarning, SKLEARN_FILE, "another sklearn warning (probe-13)"),
        (ConvergenceWarning, OUR_FILE, "a convergence warning of ours (probe-14)"),
    ) == ["another sklearn warning (probe-13)", "a convergence warning of ours (probe-14)"]
    kept = Path(session_logs_dir(), console.NOTICES_LOG).read_text()
    assert "probe-12" in kept and "probe-13" not in kept


def test_tunes_pbt_actor_reuse_hint_goes_to_the_notices_log(job_ray) -> None:
    tune_file = str(Path(ray.__file__).parent / "tune" / "tune.py")
    hint = (  # Ray Tune's words, at the start of every PBT sweep
        "Consider boosting PBT performance by enabling `reuse_actors` as "
        "well as implementing `reset_config` for Trainable."
    )
    assert shown(
        (UserWarning, tune_file, f"{hint} (probe-15)"),
        (UserWarning, OUR_FILE, f"{hint} (probe-16)"),
        (UserWarning, tune_file, "another Tune warning (probe-17)"),
    ) == [f"{hint} (probe-16)", "another Tune warning (probe-17)"]
    kept = Path(session_logs_dir(), console.NOTICES_LOG).read_text()
    assert "probe-15" in kept and "probe-17" not in kept


def test_pbt_trials_do_not_print_tunes_checkpoint_created_line() -> None:
    import inspect

    from ray.train._internal import storage as tune_storage

    from refiner.distributed.compat import quiet_tune_checkpoint_logging

    # The logger named is the one that says it (Ray 2.60's function-trainable storage).
    assert "Checkpoint successfully created at" in inspect.getsource(tune_storage)
    logger = logging.getLogger(tune_storage.__name__)
    previous = logger.level
    try:
        quiet_tune_checkpoint_logging()  # what a PBT trial does first
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(previous)


def test_ray_data_info_and_progress_hint_stay_in_its_log_file(job_ray) -> None:
    data_logger = logging.getLogger("ray.data")
    (console_handler,) = [h for h in data_logger.handlers if type(h).__name__ == "PlainRayHandler"]
    screen = io.StringIO()  # the handler's stream was bound when pytest held stderr
    previous = console_handler.setStream(screen)
    try:
        data_logger.info("ray-data-info-5")
        data_logger.warning("Progress bars disabled. To enable, set ... (6)")
        data_logger.warning("ray-data-warning-7")
        data_logger.error("ray-data-error-8")
    finally:
        console_handler.setStream(previous)
    err = screen.getvalue()
    assert "ray-data-info-5" not in err and "Progress bars disabled" not in err
    assert "ray-data-warning-7" in err and "ray-data-error-8" in err
    for handler in data_logger.handlers:
        handler.flush()
    # Ray Data opens its log file in the session that was current at its first record: in
    # a long pytest process that may be an earlier test's session, so look in all of them.
    sessions = Path(session_logs_dir()).parents[1]
    data_log = "".join(p.read_text() for p in sessions.glob("session_*/logs/ray-data/*.log"))
    assert "ray-data-info-5" in data_log and "ray-data-warning-7" in data_log


def test_workers_get_the_quiet_setup(job_ray) -> None:
    @ray.remote
    def probe() -> dict:
        import logging
        import os
        import warnings

        import ray.data  # noqa: F401  (configures its logger from RAY_DATA_LOGGING_CONFIG)

        levels = [h.level for h in logging.getLogger("ray.data").handlers]
        return {
            "env": os.environ.get(console.RAY_DATA_LOGGING_ENV),
            "hook": getattr(warnings.showwarning, "_refiner_quiet", False),
            "console_levels": sorted(levels),
        }

    seen = ray.get(probe.remote())
    assert seen["env"] == console.ray_data_logging_file()
    assert seen["hook"] is True
    assert logging.WARNING in seen["console_levels"]  # the console handler
    assert logging.INFO not in seen["console_levels"]


def test_workers_know_their_own_cluster(job_ray) -> None:
    """With several Ray instances on the machine, Ray's lookups by address in a worker
    (Train's placement group cleaner) must find this one, not fail on the ambiguity."""

    @ray.remote
    def address() -> str | None:
        return os.environ.get("RAY_ADDRESS")

    assert ray.get(address.remote()) == ray.get_runtime_context().gcs_address


def test_rays_own_notices_go_to_the_log_file_and_other_worker_lines_show(job_ray, capfd) -> None:
    notice = (
        "[2026-12-03 11:13:31,985 E 1 2] core_worker.cc:2465: Actor with class name: "
        "'PreemptionWatcher' and ID: 'd4' has constructor arguments in the object store and "
        "max_restarts > 0. If the arguments in the object store go out of scope or are lost, "
        "the actor restart will fail. (probe-10)"
    )

    @ray.remote
    def speak(lines: list[str]) -> None:
        import sys

        for line in lines:
            print(line, file=sys.stderr, flush=True)

    ray.get(speak.remote([notice, "an ordinary worker line (probe-11)"]))
    kept = Path(session_logs_dir(), console.NOTICES_LOG)
    seen = ""
    for _ in range(100):  # worker lines reach the driver asynchronously
        seen += capfd.readouterr().err
        if "probe-11" in seen and kept.is_file() and "probe-10" in kept.read_text():
            break
        time.sleep(0.2)
    assert "probe-11" in seen, "an ordinary worker line must still reach the console"
    assert "probe-10" not in seen
    assert "probe-10" in kept.read_text()
