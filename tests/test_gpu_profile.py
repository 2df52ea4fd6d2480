"""bench/gpu_profile.py's pieces that need no GPU to check: the batch ceiling stops at the
first out-of-memory (caught and reported) or at its time budget, and busy device time is
the union of possibly overlapping kernel intervals."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_profile  # noqa: E402


def test_ceiling_reports_each_batch_until_out_of_memory():
    built = []

    def build(batch: int):
        built.append(batch)
        if batch >= 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")
        return lambda: torch.ones(batch).sum()

    rows = gpu_profile.batch_ceiling(
        build,
        [16, 32, 64, 128],
        flops_per_row=1e6,
        peak=1e12,
        device=torch.device("cpu"),
        budget_s=600,
    )
    assert built == [16, 32, 64]  # nothing tried past the first out-of-memory
    assert [r["batch"] for r in rows] == [16, 32, 64]
    assert all(r["of_peak"] > 0 and r["samples_per_s"] > 0 for r in rows[:2])
    assert rows[2]["out_of_memory"].startswith("CUDA out of memory")


def test_ceiling_stops_when_its_time_budget_is_spent():
    rows = gpu_profile.batch_ceiling(
        lambda b: lambda: None, [8, 16], 1.0, 1.0, torch.device("cpu"), budget_s=0
    )
    assert rows == [{"batch": 8, "stopped": "time budget 0 s spent"}]


def test_busy_time_is_the_union_of_kernel_intervals():
    assert gpu_profile._union([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == 4
    assert gpu_profile._union([]) == 0
