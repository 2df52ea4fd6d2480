"""Halting calibration: the recorded pass, the stopping simulator, the search, the
settings' round trip through checkpoints and their use in inference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from refiner_fixtures import parity_batch, tiny_config, tiny_orchestrator

from refiner.checkpoints.files import load_checkpoint, read_checkpoint, save_checkpoint
from refiner.config.sections import ConfigError, StoppingConfig
from refiner.infer.calibration import (
    CalibrationResult,
    StoppingSettings,
    StoppingTrace,
    calibrate,
    calibrate_orchestrator,
    frontier_table,
    plot_frontier,
    record_pass,
    simulate,
    simulated_accuracy,
)
from refiner.infer.halting import STOP_REASONS, StoppingRule


def _trace(halt, score, changed, exact) -> StoppingTrace:
    return StoppingTrace(
        np.asarray(halt, np.float32),
        np.asarray(score, np.float32),
        np.asarray(changed, bool),
        np.asarray(exact, bool),
    )


def _solved_at(solve_step: np.ndarray, T: int) -> np.ndarray:
    return np.arange(1, T + 1)[None, :] >= solve_step[:, None]


# ---------------------------------------------------------------- synthetic, known answer


def test_known_act_threshold_is_found():
    """The halting head says 0.92 from the step a row is solved, 0.3 before; one row in
    ten is a decoy at 0.85 on its first step while still wrong. ACT 0.9 stops every row
    the moment it is solved; 0.8 loses the decoys (10 points)."""
    rng = np.random.default_rng(0)
    N, T = 200, 8
    solve = rng.integers(2, T + 1, N)
    exact = _solved_at(solve, T)
    halt = np.where(exact, 0.92, 0.3)
    halt[::10, 0] = 0.85
    trace = _trace(halt, np.zeros((N, T)), np.ones((N, T)), exact)

    result = calibrate(trace, max_accuracy_loss=0.5)

    assert result.settings == StoppingSettings(0.9, None, None, "score", T)
    assert result.accuracy == 1.0 and result.accuracy_at_limit == 1.0
    assert result.mean_steps == pytest.approx(solve.mean())
    # a looser bound buys fewer steps by stopping the decoys at step 1
    loose = calibrate(trace, max_accuracy_loss=10.0)
    assert 0.3 < loose.settings.act_threshold <= 0.85 and loose.mean_steps < result.mean_steps
    assert loose.accuracy == pytest.approx(0.9)


def test_a_margin_keeps_the_bound_with_standard_errors_to_spare():
    """The decoy trace again: a 10-point bound lets the search stop the 20 decoys (20 of
    200 rows, exactly the bound); with 1.64 standard errors to spare 20 lost rows count
    as 20 + 1.64 * sqrt(20) > 20, so it keeps ACT 0.9, which loses none."""
    rng = np.random.default_rng(0)
    N, T = 200, 8
    exact = _solved_at(rng.integers(2, T + 1, N), T)
    halt = np.where(exact, 0.92, 0.3)
    halt[::10, 0] = 0.85
    trace = _trace(halt, np.zeros((N, T)), np.ones((N, T)), exact)
    assert calibrate(trace, max_accuracy_loss=10.0).accuracy == pytest.approx(0.9)
    kept = calibrate(trace, max_accuracy_loss=10.0, margin_sigmas=1.64)
    assert kept.settings.act_threshold == 0.9 and kept.accuracy == 1.0
    assert "with 1.64 standard errors to spare" in kept.summary()


def test_known_step_limit_is_found():
    """No signal fires, every row is solved by step 3 and stays solved: the answer is
    a step limit of 3, and nothing else."""
    N, T = 50, 8
    solve = np.array([1, 2, 3] * 16 + [3, 3])
    trace = _trace(np.full((N, T), 0.01), np.zeros((N, T)), np.ones((N, T)), _solved_at(solve, T))
    result = calibrate(trace, max_accuracy_loss=0.0)
    assert result.settings == StoppingSettings(None, None, None, "score", 3)
    assert (result.mean_steps, result.accuracy) == (3.0, 1.0)


def test_canvas_patience_wins_when_the_score_stalls_but_the_canvas_still_changes():
    """The score is flat from step 1 (score patience would stop rows before they are
    solved) but each row's canvas stops changing once it is solved: canvas patience 1
    stops each row one step after it is solved, with no loss; rows solved at the last
    useful step need no patience step, so the limit is one below the recorded steps."""
    rng = np.random.default_rng(1)
    N, T = 100, 10
    solve = rng.integers(1, T - 1, N)
    exact = _solved_at(solve, T)
    changed = ~np.roll(exact, 1, axis=1)  # changed up to and including the solving step
    changed[:, 0] = True
    trace = _trace(np.full((N, T), 0.01), np.full((N, T), 0.5), changed, exact)
    result = calibrate(trace, max_accuracy_loss=0.0, act_grid=(), quality_grid=())
    assert solve.max() == T - 2
    assert result.settings == StoppingSettings(None, None, 1, "canvas", T - 2)
    expected = np.minimum(solve + 1, T - 2)
    assert result.accuracy == 1.0 and result.mean_steps == pytest.approx(expected.mean())
    steps, reasons = simulate(trace, result.settings)
    assert (steps == expected).all()
    assert set(reasons[solve < T - 3].tolist()) == {STOP_REASONS.index("patience")}


# ---------------------------------------------------------------- the bound and the search


def _random_trace(seed: int, N: int = 60, T: int = 5) -> StoppingTrace:
    rng = np.random.default_rng(seed)
    solve = rng.integers(1, T + 3, N)  # some rows are never solved
    exact = _solved_at(solve, T) & (rng.random((N, T)) > 0.1)  # and some flicker
    halt = np.clip(exact * 0.6 + rng.random((N, T)) * 0.5, 0, 1)
    score = np.clip(np.cumsum(rng.random((N, T)) * 0.3, 1), 0, 1)
    changed = rng.random((N, T)) > 0.4
    return _trace(halt, score, changed, exact)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound", [0.0, 0.5, 5.0])
def test_the_bound_holds_on_the_calibration_rows(seed, bound):
    trace = _random_trace(seed)
    result = calibrate(trace, max_accuracy_loss=bound)
    accuracy, mean_steps = simulated_accuracy(trace, result.settings)
    assert (accuracy, mean_steps) == pytest.approx((result.accuracy, result.mean_steps))
    assert 100 * (result.accuracy_at_limit - accuracy) <= bound + 1e-9
    assert result.accuracy_loss <= bound + 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_the_search_finds_the_fewest_steps_a_brute_force_finds(seed):
    trace = _random_trace(seed, N=40, T=4)
    acts, qualities = (0.5, 0.8, 0.95), (0.3, 0.7)
    result = calibrate(trace, 2.0, act_grid=acts, quality_grid=qualities)
    best = None
    for a, q, (p, signal), limit in itertools.product(
        (None, *acts),
        (None, *qualities),
        [(None, "score")] + [(p, s) for s in ("score", "canvas") for p in range(1, 4)],
        range(1, 5),
    ):
        acc, steps = simulated_accuracy(trace, StoppingSettings(a, q, p, signal, limit))
        if 100 * (result.accuracy_at_limit - acc) <= 2.0 + 1e-9 and (
            best is None or steps < best - 1e-12
        ):
            best = steps
    assert result.mean_steps == pytest.approx(best)


def test_the_frontier_trades_steps_for_accuracy():
    result = calibrate(_random_trace(3, N=80, T=6), max_accuracy_loss=1.0)
    steps = [r["mean_steps"] for r in result.frontier]
    accuracy = [r["accuracy"] for r in result.frontier]
    assert steps == sorted(steps) and accuracy == sorted(accuracy)
    assert len(set(accuracy)) == len(accuracy) > 1
    # the chosen point sits on the frontier: nothing cheaper is as accurate
    assert all(
        r["accuracy"] < result.accuracy - 1e-12
        for r in result.frontier
        if r["mean_steps"] < result.mean_steps
    )
    assert set(frontier_table(result)) >= {"mean_steps", "accuracy", "act_threshold"}


def test_bad_arguments_are_refused():
    trace = _random_trace(0, T=4)
    with pytest.raises(ValueError, match="max_steps must be in \\[1, 4\\]"):
        calibrate(trace, max_steps=5)
    with pytest.raises(ValueError, match="max_accuracy_loss"):
        calibrate(trace, max_accuracy_loss=-1)
    with pytest.raises(ValueError, match="share one"):
        _trace(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="patience_signal"):
        StoppingConfig(patience_signal="latent")
    with pytest.raises(ConfigError, match="max_accuracy_loss"):
        StoppingConfig(max_accuracy_loss=-0.1)


# ---------------------------------------------------------------- patience on the canvas


def test_canvas_patience_counts_unchanged_canvases_not_scores():
    config = StoppingConfig(
        act_threshold=None, quality_threshold=None, patience=2, patience_signal="canvas"
    )
    rule = StoppingRule(config, 2, torch.device("cpu"))
    rising = torch.tensor([0.1, 0.1])
    changed = [
        torch.tensor([True, True]),
        torch.tensor([False, True]),
        torch.tensor([False, False]),
    ]
    codes = [rule.update(torch.zeros(2), rising * (t + 1), False, c) for t, c in enumerate(changed)]
    # row 0: the canvas stood still for steps 2 and 3 although its score kept rising
    assert [c.tolist() for c in codes] == [[-1, -1], [-1, -1], [STOP_REASONS.index("patience"), -1]]
    with pytest.raises(ValueError, match="needs canvas_changed"):
        rule.update(torch.zeros(2), rising, False)


# ---------------------------------------------------------------- against the real model


def _varied_heads(o) -> None:
    """Random halting/quality heads, so their outputs differ per row and step."""
    torch.manual_seed(5)
    with torch.no_grad():
        for head in (o.core.halt_head, o.core.quality_head):
            head.weight.normal_(0, 1.0)
            head.bias.fill_(1.0)


def _between(values: np.ndarray, q: float) -> float:
    """A threshold halfway between two recorded values, so no value sits on it."""
    v = np.unique(values.astype(np.float32))
    i = int(q * (len(v) - 1))
    return float((v[i] + v[i + 1]) / 2)


@pytest.mark.parametrize("signal", ["score", "canvas"])
def test_simulator_matches_inference_on_a_real_model(signal):
    o = tiny_orchestrator(tiny_config(max_steps_train=8, max_steps_infer=8)).eval()
    _varied_heads(o)
    batch = parity_batch(64, seed=3)
    trace = record_pass(o, batch, max_steps=8)
    assert trace.halt_prob.shape == (64, 8) and trace.canvas_changed[:, 0].all()
    settings = StoppingSettings(
        _between(trace.halt_prob, 0.9), _between(trace.score, 0.8), 2, signal, 7
    )
    steps, reasons = simulate(trace, settings)
    o.calibration = CalibrationResult(settings, 0, 64, 8, 0.5, 0.0, 0.0, 0.0)
    r = o.inference(batch["input"])
    assert r["steps_taken"] == steps.tolist()
    assert r["stopping_reason"] == [STOP_REASONS[c] for c in reasons]
    assert len(set(r["stopping_reason"])) >= 2  # the comparison covers several rules
    # and the recorded exactness is inference's
    final = torch.tensor(r["final_canvas_ids"])
    exact = (final == batch["target"]).all(-1).numpy()
    assert (exact == trace.exact[np.arange(64), steps - 1]).all()


def test_calibration_round_trips_through_a_checkpoint_and_drives_inference(tmp_path):
    o = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6)).eval()
    _varied_heads(o)
    batch = parity_batch(32)
    before = o.inference(batch["input"])
    assert before["stopping"]["origin"] == "config"
    assert before["stopping"]["act_threshold"] == 0.5 and before["stopping"]["max_steps"] == 6

    result = calibrate_orchestrator(o, batch, max_accuracy_loss=0.0)
    assert o.calibration is result and result.rows == 32 and result.max_steps == 6
    path = save_checkpoint(tmp_path / "c.pt", o)
    stored = read_checkpoint(path)["orchestrator"]["calibration"]  # weights_only load
    assert stored == result.to_dict()

    fresh = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6)).eval()
    assert fresh.calibration is None
    load_checkpoint(path, fresh)
    assert fresh.calibration == result
    after = fresh.inference(batch["input"])
    assert after["stopping"]["origin"] == f"calibrated at update {o.step_count} on 32 rows"
    assert after["stopping"]["act_threshold"] == result.settings.act_threshold
    assert after["mean_steps"] == pytest.approx(result.mean_steps)
    assert max(after["steps_taken"]) <= result.settings.max_steps
    exact = (torch.tensor(after["final_canvas_ids"]) == batch["target"]).all(-1).float().mean()
    assert exact.item() == pytest.approx(result.accuracy)
    # running to the limit is not a calibrated setting, and says so
    full = fresh.inference(batch["input"], early_stopping=False)
    assert full["stopping"]["origin"] == "early stopping off" and full["mean_steps"] == 6


def test_a_given_step_limit_replaces_the_calibrated_one_and_keeps_its_thresholds():
    o = tiny_orchestrator(tiny_config(max_steps_train=4, max_steps_infer=4)).eval()
    settings = StoppingSettings(None, None, None, "score", 2)  # calibrated: stop at 2
    o.calibration = CalibrationResult(settings, 5, 16, 4, 0.5, 0.0, 0.0, 0.0)
    batch = parity_batch(16)
    capped = o.inference(batch["input"])  # no limit given: the calibration's
    assert max(capped["steps_taken"]) == 2 and capped["stopping"]["max_steps"] == 2
    assert capped["stopping"]["origin"] == "calibrated at update 5 on 16 rows"
    given = o.inference(batch["input"], max_steps_override=6)  # a user's --max-steps 6
    assert given["steps_taken"] == [6] * 16 and given["stopping"]["max_steps"] == 6
    assert given["stopping"]["origin"] == "calibrated at update 5 on 16 rows, step limit given"
    fewer = o.inference(batch["input"], max_steps_override=1)
    assert fewer["steps_taken"] == [1] * 16


def test_checkpoints_without_a_calibration_still_load(tmp_path):
    o = tiny_orchestrator()
    path = save_checkpoint(tmp_path / "c.pt", o)
    load_checkpoint(path, o)
    assert o.calibration is None


def test_frontier_plot(tmp_path):
    trace = _random_trace(2)
    result = calibrate(trace, config=StoppingConfig())
    assert result.config_point is not None and result.config_point["act_threshold"] == 0.5
    path = plot_frontier(result, tmp_path / "frontier.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_recorded_pass_agrees_with_the_full_unroll():
    o = tiny_orchestrator(tiny_config(max_steps_train=6, max_steps_infer=6)).eval()
    _varied_heads(o)
    batch = parity_batch(40, seed=4)
    trace = record_pass(o, batch, batch_size=16)  # chunks must not change anything
    curve = o.evaluate(batch, steps=6)
    assert trace.accuracy_at() == pytest.approx(curve["acc_at"])
    assert trace.halt_prob.mean(0).tolist() == pytest.approx(curve["halt_prob_at"], abs=1e-6)


def test_the_recorded_pass_uses_the_puzzle_identities_inference_uses():
    """A puzzle-conditioned model: the batch's puzzle_ids reach the recorded pass, so the
    simulated stopping is what inference with those identities does."""
    o = tiny_orchestrator(
        tiny_config(max_steps_train=6, max_steps_infer=6),
        puzzle_embedding="per_puzzle",
        puzzle_identities=5,
    ).eval()
    _varied_heads(o)
    torch.manual_seed(6)
    with torch.no_grad():
        o.core.puzzle_embed.weight.normal_(0, 3.0)  # identities that change the answers
    batch = parity_batch(48, seed=4)
    batch["puzzle_ids"] = torch.arange(48) % 5
    trace = record_pass(o, batch, max_steps=6)
    unconditioned = record_pass(o, {k: batch[k] for k in ("input", "target")}, max_steps=6)
    assert not np.array_equal(trace.halt_prob, unconditioned.halt_prob)
    settings = StoppingSettings(_between(trace.halt_prob, 0.8), None, 2, "canvas", 6)
    steps, reasons = simulate(trace, settings)
    o.calibration = CalibrationResult(settings, 0, 48, 6, 0.5, 0.0, 0.0, 0.0)
    r = o.inference(batch["input"], puzzle_ids=batch["puzzle_ids"])
    assert r["steps_taken"] == steps.tolist()
    assert r["stopping_reason"] == [STOP_REASONS[c] for c in reasons]


def test_summary_warns_when_one_row_is_worth_more_than_the_bound() -> None:
    result = CalibrationResult(
        settings=StoppingSettings(None, None, 2, "canvas", 6),
        update=600,
        rows=129,
        max_steps=16,
        max_accuracy_loss=0.5,
        accuracy_at_limit=1.0,
        accuracy=1.0,
        mean_steps=4.84,
    )
    assert "one row is 0.78 points, more than the bound" in result.summary()
    result.rows = 1000
    assert "one row is" not in result.summary()
