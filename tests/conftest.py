"""Shared fixtures and the ``ray`` marker's check.

Helpers the tests import by name live beside this file: ``tiny_runs`` (the ``--set``
overrides of a tiny run), ``refiner_fixtures`` (tiny models and batches in-process),
``train_fixtures`` / ``sweep_fixtures`` (jobs as subprocesses or modules), ``ray_cluster``
(private local Ray) and ``ray_head`` (a real ``ray start`` head for job submission).

Markers (registered in pyproject.toml): ``ray`` for every test that starts Ray, in this
process or in a job it runs; ``slow`` for multi-process runs. ``make test-fast`` leaves both
out. A test that starts Ray in this process without the ``ray`` marker fails (see
``pytest_runtest_call`` below), so the fast loop stays free of Ray.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def local_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """A private local Ray for the test module, shut down after its last test.

    Its size comes from the module's marker, e.g. ``pytestmark = pytest.mark.ray(num_cpus=3)``
    or ``pytest.mark.ray(**SWEEP_RAY)``; a bare ``pytest.mark.ray`` gives 2 CPUs, no dashboard.
    """
    from ray_cluster import ray_cluster  # imports Ray: only where a test asks for it

    marker = request.node.get_closest_marker("ray")
    with ray_cluster(**(marker.kwargs if marker else {})):
        yield


# -- the `ray` marker's check ------------------------------------------------------------
# Ray starts its node as subprocesses of the process that calls `ray.init` (gcs_server,
# raylet) or of the `ray start` CLI; an audit hook sees every such launch from this process.

RAY_PROCESSES = ("gcs_server", "raylet")


class RayWatch:
    started = False  # a Ray node process was launched during the current test
    up_before = False  # Ray was initialised in this process before the test's setup

    @classmethod
    def audit(cls, event: str, args: tuple) -> None:
        if event != "subprocess.Popen":
            return
        argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        words = [os.path.basename(os.fsdecode(w)) for w in argv if isinstance(w, (str, bytes))]
        if any(w in RAY_PROCESSES for w in words) or words[:2] == ["ray", "start"]:
            cls.started = True

    @classmethod
    def ray_up(cls) -> bool:
        ray = sys.modules.get("ray")
        return ray is not None and hasattr(ray, "is_initialized") and ray.is_initialized()


sys.addaudithook(RayWatch.audit)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    RayWatch.started, RayWatch.up_before = False, RayWatch.ray_up()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    started = RayWatch.started or (RayWatch.ray_up() and not RayWatch.up_before)
    if started and item.get_closest_marker("ray") is None:
        pytest.fail(
            f"{item.nodeid} started Ray but has no `ray` marker; add @pytest.mark.ray "
            "(or pytestmark = pytest.mark.ray) so that `make test-fast` leaves it out",
            pytrace=False,
        )
    return result
