"""What evaluation reports and a run records about the stopping settings in use."""

from __future__ import annotations

import csv
import json

from refiner_fixtures import parity_batch, tiny_config, tiny_orchestrator

from refiner.evaluate.evaluation import evaluate_refiner
from refiner.infer.calibration import CalibrationResult, calibrate_orchestrator, describe_stopping
from refiner.infer.calibration_log import (
    calibration_metrics,
    stopping_tags,
    write_calibration_files,
)


def test_evaluation_names_the_settings_and_their_origin():
    o = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6)).eval()
    batch = parity_batch(24)
    before = evaluate_refiner(o, batch)
    assert before.stopping["origin"] == "config"
    assert "stopping: ACT 0.5, quality 0.95, patience 3 (score), max 6 steps (config)" in (
        before.summary()
    )

    result = calibrate_orchestrator(o, batch, max_accuracy_loss=0.0)
    after = evaluate_refiner(o, batch)
    assert after.stopping["origin"] == "calibrated at update 0 on 24 rows"
    assert f"stopping: {result.settings.describe()} (calibrated at update 0 on 24 rows)" in (
        after.summary()
    )
    assert after.acc_infer >= result.accuracy_at_limit  # bound 0 on these very rows
    assert after.to_dict()["stopping"] == after.stopping
    off = o.inference(batch["input"], early_stopping=False)["stopping"]
    assert describe_stopping(off) == "every sample runs 6 steps (early stopping off)"


def test_calibration_files_tags_and_metrics(tmp_path):
    o = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6)).eval()
    result = calibrate_orchestrator(o, parity_batch(24))
    files = write_calibration_files(result, tmp_path)
    assert [f.name for f in files] == ["calibration.json", "frontier.csv", "frontier.png"]
    assert CalibrationResult.from_dict(json.loads(files[0].read_text())) == result
    with files[1].open() as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == len(result.frontier)
    assert float(rows[0]["mean_steps"]) == result.frontier[0]["mean_steps"]

    tags = stopping_tags(result)
    assert tags["refiner.stopping.origin"] == "calibrated at update 0 on 24 rows"
    assert tags["refiner.stopping.max_steps"] == str(result.settings.max_steps)
    metrics = calibration_metrics(result)
    assert metrics["calib_accuracy_loss"] == result.accuracy_loss <= result.max_accuracy_loss
    assert ("calib_act_threshold" in metrics) == (result.settings.act_threshold is not None)
