"""The conftest's check: a test that starts Ray without the `ray` marker fails.

A real pytest run in a subprocess, with this suite's conftest, on two tests that each
start a real private Ray: the unmarked one must fail naming the marker, the marked one pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.ray  # the tests inside start Ray (in a child pytest)

TESTS = Path(__file__).resolve().parent

STARTS_RAY = """
import pytest
import ray
from ray_cluster import ray_cluster


def test_unmarked():
    with ray_cluster(num_cpus=1):
        assert ray.is_initialized()


@pytest.mark.ray
def test_marked():
    with ray_cluster(num_cpus=1):
        assert ray.is_initialized()
"""


def test_starting_ray_without_the_marker_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    ray: starts Ray\n")
    pytester.makepyfile(test_starts_ray=STARTS_RAY)
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked started Ray but has no `ray` marker*"])
