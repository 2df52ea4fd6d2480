"""Private local Ray clusters for the tests (the ``local_ray`` fixture in conftest.py).

Each is a single node bound to 127.0.0.1 in this process (``ray.shutdown`` ends it; never
``ray stop``, which would end other people's clusters too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray

from refiner.distributed.compat import init_local_on_loopback

TESTS = str(Path(__file__).resolve().parent)

# What a sweep needs: 4 logical CPUs on 2 cores run two trials (0.25 + 0.5 CPU each) plus a
# data CPU each. The dashboard hosts the State API, which Ray Train's PlacementGroupCleaner
# needs to free the resources of trials that ASHA stops; without it a sweep stalls.
SWEEP_RAY = {"num_cpus": 4, "dashboard": True}


@contextmanager
def ray_cluster(num_cpus: int = 2, dashboard: bool = False) -> Iterator[None]:
    """A private local Ray for the block, whose workers can import the test modules.

    Workers get tests/ in front of this process's PYTHONPATH, so that loops and closures
    defined in a test module unpickle there (and a checkout's own ``refiner`` comes first).
    """
    assert not ray.is_initialized(), "a Ray cluster is already running in this process"
    python_path = os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p)
    options: dict[str, object] = {"include_dashboard": dashboard}
    if dashboard:
        options["dashboard_host"] = "127.0.0.1"
    init_local_on_loopback(
        num_cpus=num_cpus,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": python_path}},
        **options,
    )
    try:
        yield
    finally:
        ray.shutdown()
