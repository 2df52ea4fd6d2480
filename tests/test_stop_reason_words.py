"""The summary's stopping line names reasons in words, so a count cannot be read as a
setting (issue 29: "stopped by act_confidence: 406, max_steps: 4" read as a cap of 4)."""

from __future__ import annotations

from refiner.evaluate.evaluation import EvaluationReport
from refiner.infer.halting import STOP_REASON_WORDS, STOP_REASONS, describe_stop_counts


def test_every_reason_has_words_that_are_not_its_key():
    assert set(STOP_REASON_WORDS) == set(STOP_REASONS)
    for key, words in STOP_REASON_WORDS.items():
        assert words != key and "_" not in words and ":" not in words


def test_summary_counts_rows_and_keeps_the_step_limit_apart():
    report = EvaluationReport(
        rows=410,
        acc_at=[0.5, 0.9, 0.95],
        token_acc_at=[0.8, 0.95, 0.99],
        acc_infer=0.95,
        max_steps_infer=3,
        steps_taken=[2] * 406 + [3] * 4,
        stopping_reasons={"max_steps": 4, "act_confidence": 406},
    )
    text = report.summary()
    assert "inference (step limit 3, early stopping)" in text
    assert (
        "why rows stopped: 406 rows halting head confident, 4 rows reached the step limit" in text
    )
    assert "max_steps: 4" not in text and "act_confidence" not in text
    assert describe_stop_counts({"patience": 1}) == "1 row no improvement (patience)"
