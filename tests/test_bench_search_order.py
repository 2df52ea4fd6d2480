"""bench/bench_search.py counts trials in the order the searcher proposed them."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_search import in_order  # noqa: E402

from refiner.sweep.outcome import TrialSummary  # noqa: E402


def trial(trial_id: str) -> TrialSummary:
    return TrialSummary(trial_id, f"run-{trial_id}", {}, {}, "done")


def test_random_search_trials_follow_tunes_counter() -> None:
    trials = [trial("ab12c_00002"), trial("ab12c_00000"), trial("ab12c_00001")]
    assert [t.trial_id for t in in_order(trials)] == ["ab12c_00000", "ab12c_00001", "ab12c_00002"]


def test_searcher_trials_keep_the_sweeps_creation_order() -> None:
    """An Optuna sweep's ids are bare hex; sorting them would shuffle the search."""
    ids = ["0c3e9038", "a975fc72", "952e63e0"]
    assert [t.trial_id for t in in_order([trial(i) for i in ids])] == ids
