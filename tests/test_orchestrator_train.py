"""train_step semantics: truncation, step weights, clipping, the NaN guard, metrics."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from refiner_fixtures import (
    parity_batch,
    tiny_config,
    tiny_model_config,
    tiny_orchestrator,
    weights,
)

from refiner.config.sections import StepLossWeights
from refiner.model.losses import step_weights
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator

T = 4


def _sgd(orchestrator, lr=0.0):
    return torch.optim.SGD(orchestrator.core.parameters(), lr=lr)


def _explicit(step_weights_list, truncated, k=2):
    return tiny_config(
        truncated_backprop=truncated,
        backprop_truncate_steps=k,
        step_loss_weights={"schedule": "explicit", "steps": step_weights_list},
        canvas_edit_strategies=["replace"],
    )


def test_truncation_early_step_loss_gives_no_gradient():
    """Steps 1-2 of 4 run outside the gradient window (K=2): their losses cannot reach the
    weights, with or without a weight on them; without truncation they can."""
    batch = parity_batch(8)
    truncated = tiny_orchestrator(_explicit([1, 1, 0, 1], truncated=True))
    full = tiny_orchestrator(_explicit([1, 1, 0, 1], truncated=False))
    for o, grad_steps in ((truncated, 2), (full, T)):
        out = o.core(batch["input"], steps=T, grad_steps=grad_steps, target=batch["target"])
        early = out.steps[0].losses.token + out.steps[1].losses.token
        assert early.requires_grad == (grad_steps == T)
    m_trunc = truncated.train_step(batch, _sgd(truncated))
    m_full = full.train_step(batch, _sgd(full))
    assert m_trunc.step_losses == pytest.approx(m_full.step_losses)  # same forward
    assert m_trunc.gradient_steps == 2 and m_full.gradient_steps == T


def test_step_weights_are_normalised_over_the_gradient_window():
    """Issue 10, point 9: weights sum to 1 over the K steps that carry gradient and are 0
    before them, so truncation does not scale the gradient down; every step's loss is
    still reported."""
    assert step_weights(StepLossWeights(schedule="uniform"), 6, 2).tolist() == pytest.approx(
        [0, 0, 0, 0, 0.5, 0.5]
    )
    exponential = step_weights(StepLossWeights(schedule="exponential", decay=0.5), T, 2)
    assert exponential.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3])  # shape kept
    with pytest.raises(ValueError, match="gradient window"):
        step_weights(StepLossWeights(schedule="explicit", steps=[1, 1, 0, 0]), T, 2)

    def grads(config):
        o = tiny_orchestrator(config)
        m = o.train_step(parity_batch(8), _sgd(o))
        return m, {n: p.grad.clone() for n, p in o.core.named_parameters() if p.grad is not None}

    # uniform over T=4 with K=2 weighs steps 3-4 by 1/2 each, exactly as [0, 0, 1, 1] does
    # (before: 1/4 each, half the gradient of the explicit schedule).
    uniform, g_uniform = grads(
        tiny_config(step_loss_weights={"schedule": "uniform"}, canvas_edit_strategies=["replace"])
    )
    last_two, g_last_two = grads(_explicit([0, 0, 1, 1], truncated=True))
    assert uniform.loss == pytest.approx(sum(uniform.step_losses[2:]) / 2, rel=1e-5)
    assert uniform.loss == pytest.approx(last_two.loss, rel=1e-5)
    assert len(uniform.step_losses) == T and all(v is not None for v in uniform.step_losses)
    for name, g in g_uniform.items():
        torch.testing.assert_close(g, g_last_two[name], rtol=1e-4, atol=1e-6)


def test_truncation_cuts_the_path_through_earlier_steps():
    """Loss only on the last step: K=1 keeps only that step's own gradient (the latent it
    starts from is constant); K=4 adds the gradient through steps 1-3, which differs."""

    def grads(k):
        o = tiny_orchestrator(_explicit([0, 0, 0, 1], truncated=True, k=k))
        batch = parity_batch(8)
        o.train_step(batch, _sgd(o))  # lr 0: weights stay, gradients stay in .grad
        return {n: p.grad.clone() for n, p in o.core.named_parameters()}

    g1, g2, g4 = grads(1), grads(2), grads(4)
    emb = "input_embed.weight"
    assert not torch.allclose(g1[emb], g4[emb]) and not torch.allclose(g2[emb], g4[emb])


def _late_loss_grad_norm(orchestrator_class, truncated):
    """Gradient norm of a loss on steps 3-4 of 4 (K=2 when truncated): how far back the
    gradient reaches is what the cut decides."""
    torch.manual_seed(0)
    o = orchestrator_class.from_config(
        tiny_model_config(), _explicit([0, 0, 1, 1], truncated=truncated), seed=0
    )
    return o.train_step(parity_batch(8), _sgd(o)).grad_norm


def test_apply_truncated_backprop_is_where_the_cut_happens():
    """Overriding the seed's method changes which steps get gradient."""

    class NoCut(UnifiedRefinerOrchestrator):
        def apply_truncated_backprop(self, step_outputs, config=None):
            return step_outputs

    class CutAll(UnifiedRefinerOrchestrator):
        def apply_truncated_backprop(self, step_outputs, config=None):
            return [s.detach() for s in step_outputs[:-1]] + step_outputs[-1:]

    def autograd_per_step(orchestrator_class):
        o = orchestrator_class.from_config(tiny_model_config(), tiny_config(), seed=0)
        mode = []
        o.core.blocks[0].register_forward_hook(lambda *_: mode.append(torch.is_grad_enabled()))
        o.train_step(parity_batch(4), _sgd(o))
        return mode

    # The memory saving follows the method: steps it cuts run without autograd.
    assert autograd_per_step(UnifiedRefinerOrchestrator) == [False, False, True, True]
    assert autograd_per_step(NoCut) == [True] * T
    full = _late_loss_grad_norm(UnifiedRefinerOrchestrator, truncated=False)
    seed_rule = _late_loss_grad_norm(UnifiedRefinerOrchestrator, truncated=True)
    no_cut = _late_loss_grad_norm(NoCut, truncated=True)
    cut_all = _late_loss_grad_norm(CutAll, truncated=False)
    assert no_cut == pytest.approx(full)  # nothing cut: the gradient reaches step 1
    assert seed_rule != pytest.approx(full)  # K=2: it stops at step 3
    assert cut_all != pytest.approx(full) and cut_all != pytest.approx(seed_rule)
    # The seed's call on a list of step outputs states the same rule.
    o = tiny_orchestrator(tiny_config(backprop_truncate_steps=2))
    batch = parity_batch(4)
    records = o.core(batch["input"], steps=T, target=batch["target"]).steps
    cut = o.apply_truncated_backprop(records, o.config)
    assert [s.losses.token.requires_grad for s in cut] == [False, False, True, True]
    assert [s.latent.requires_grad for s in cut] == [False, False, True, True]


def test_a_random_gradient_window_moves_per_update_and_runs_later_steps_without_autograd():
    """backprop_window random: each update's K-step window ends at a step drawn from
    K..T; the steps after it run without autograd, its weights sum to 1 over the window,
    and the draws depend on the update number only (the same on every rank, and again
    after a resume)."""
    assert step_weights(StepLossWeights(schedule="uniform"), 6, 2, 3).tolist() == pytest.approx(
        [0, 0.5, 0.5, 0, 0, 0]
    )
    linear = step_weights(StepLossWeights(schedule="linear"), 6, 2, 4)
    assert linear.tolist() == pytest.approx([0, 0, 3 / 7, 4 / 7, 0, 0])
    with pytest.raises(ValueError, match="window_end"):
        step_weights(StepLossWeights(schedule="uniform"), 6, 2, 1)

    def run(window, updates=12):
        config = tiny_config(
            backprop_window=window,
            step_loss_weights={"schedule": "uniform"},
            canvas_edit_strategies=["replace"],
        )
        o = tiny_orchestrator(config)
        modes: list[bool] = []
        o.core.blocks[0].register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
        ends, weighted = [], []
        for _ in range(updates):
            modes.clear()
            m = o.train_step(parity_batch(4), _sgd(o))
            end = m.gradient_window_end
            ends.append(end)
            assert modes == [end - 2 <= t < end for t in range(T)]  # only the window
            weighted.append(m.loss == pytest.approx(sum(m.step_losses[end - 2 : end]) / 2))
        return ends, all(weighted)

    ends, weighted = run("random")
    assert set(ends) == {2, 3, 4} and weighted  # every end in K..T over 12 updates
    assert run("random")[0] == ends  # drawn from the update number: reproducible
    assert run("last", 3)[0] == [T] * 3
    # the window's losses are what reaches the weights: an early window sees step 1's canvas
    o = tiny_orchestrator(tiny_config(backprop_truncate_steps=2))
    o.window_end = 2
    batch = parity_batch(4)
    records = o.core(batch["input"], steps=T, target=batch["target"]).steps
    cut = o.apply_truncated_backprop(records, o.config)
    assert [s.losses.token.requires_grad for s in cut] == [True, True, False, False]


def test_select_edit_strategy_chooses_every_edit():
    """The unroll (train_step, evaluate) and inference edit through the seed's method."""
    calls = []

    class AlwaysPatch(UnifiedRefinerOrchestrator):
        def select_edit_strategy(self, step, canvas_scores, task_type):
            calls.append((step, task_type))
            return "patch"

    o = AlwaysPatch.from_config(
        tiny_model_config(), tiny_config(canvas_edit_strategies=["replace"]), seed=0
    )
    m = o.train_step(parity_batch(8), _sgd(o), task_type="grid")
    assert m.edit_strategies == ["patch"] * T
    assert calls == [(t, "grid") for t in range(T)]
    o.evaluate(parity_batch(4))
    r = o.inference(parity_batch(4)["input"], early_stopping=False)
    assert r["edit_strategy_use"] == {"patch": o.config.max_steps_infer}
    # no task_type given: the one trained on
    assert {task for _, task in calls[T:]} == {"grid"}


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (StepLossWeights(schedule="uniform"), [0.25, 0.25, 0.25, 0.25]),
        (StepLossWeights(schedule="linear"), [0.1, 0.2, 0.3, 0.4]),
        (StepLossWeights(schedule="exponential", decay=0.5), [1 / 15, 2 / 15, 4 / 15, 8 / 15]),
        (StepLossWeights(schedule="explicit", steps=[2, 0, 0, 6]), [0.25, 0, 0, 0.75]),
    ],
)
def test_step_weight_schedules(schedule, expected):
    assert step_weights(schedule, T).tolist() == pytest.approx(expected)


def test_schedules_change_the_loss_as_specified():
    """Same model, same batch: the per-step losses are identical, the total is the
    schedule's weighted sum of them."""
    batch = parity_batch(8)
    results = {}
    for name in ("uniform", "linear", "exponential"):
        o = tiny_orchestrator(
            tiny_config(step_loss_weights={"schedule": name}, canvas_edit_strategies=["replace"])
        )
        results[name] = o.train_step(batch, _sgd(o))
    step_losses = results["uniform"].step_losses
    assert results["linear"].step_losses == pytest.approx(step_losses)
    for name, m in results.items():
        w = step_weights(StepLossWeights(schedule=name), T, gradient_steps=2).tolist()
        assert m.loss == pytest.approx(
            sum(a * b for a, b in zip(w, step_losses, strict=True)), rel=1e-5
        )
    assert results["linear"].loss != pytest.approx(results["uniform"].loss)
    # Per-type totals recombine into the total with the type weights.
    w = StepLossWeights()
    m = results["exponential"]
    recombined = w.token * m.loss_token + w.halting * m.loss_halting + w.quality * m.loss_quality
    assert m.loss == pytest.approx(recombined, rel=1e-5)


@pytest.mark.parametrize("threshold", [1e-3, 1e6])
def test_clipping_caps_the_update_norm(threshold):
    o = tiny_orchestrator(
        tiny_config(gradient_clip_threshold=threshold, canvas_edit_strategies=["replace"])
    )
    before = weights(o)
    m = o.train_step(parity_batch(8), _sgd(o, lr=1.0))  # SGD lr=1: the update is the gradient
    after = weights(o)
    update = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(after[k] - before[k]) for k in before])
    )
    assert m.clipped == (threshold < m.grad_norm)
    assert update.item() == pytest.approx(min(threshold, m.grad_norm), rel=1e-3)


def test_nan_guard_leaves_weights_and_optimizer_untouched():
    o = tiny_orchestrator()
    optimizer = make_optimizer(o.model, lr=1e-2)
    scheduler = warmup_cosine(optimizer, warmup_steps=2, total_steps=10)
    batch = parity_batch(8)
    o.train_step(batch, optimizer, lr_scheduler=scheduler)
    w_before, opt_before = weights(o), copy.deepcopy(optimizer.state_dict())
    sched_before = scheduler.state_dict()
    handle = o.core.token_head.weight.register_hook(lambda g: torch.full_like(g, float("nan")))
    m = o.train_step(batch, optimizer, lr_scheduler=scheduler)
    handle.remove()
    assert m.skipped and m.skipped_total == 1 and m.grad_norm is None and m.lr is None
    assert all(torch.equal(w_before[k], v) for k, v in weights(o).items())
    opt_after = optimizer.state_dict()
    for pid, state in opt_before["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_after["state"][pid][key]), (pid, key)
    assert scheduler.state_dict() == sched_before
    assert o.get_training_stats()["skipped_steps"] == 1
    assert len(o.loss_history) == 1 and len(o.grad_norm_history) == 1  # nothing non-finite recorded
    m = o.train_step(batch, optimizer, lr_scheduler=scheduler)  # and training goes on
    assert not m.skipped and all(torch.isfinite(v).all() for v in weights(o).values())


def test_token_accuracy_counts_non_pad_positions_only():
    """Issue 10, point 9: the curve's token accuracy (train and evaluate) scores the
    target's non-PAD positions, as infer-few's does: a canvas right only on the PAD
    cells scores 0, not the PAD fraction."""
    from refiner.data.tokenizers import PAD
    from refiner.evaluate.evaluation import evaluate_refiner
    from refiner.model.losses import LossInputs, step_loss_terms

    target = torch.tensor([[5, 6, PAD, PAD], [7, PAD, PAD, PAD]])
    canvas = torch.tensor([[9, 6, PAD, PAD], [9, PAD, PAD, PAD]])  # 1 of 3 content cells
    logits = torch.zeros(2, 4, 10)
    inputs = LossInputs(logits, torch.zeros(2, 4), torch.zeros(2), canvas, canvas, target)
    terms = step_loss_terms(inputs)
    assert terms.token_acc.item() == pytest.approx(1 / 3)  # all positions: 6/8

    o = tiny_orchestrator(tiny_config(canvas_edit_strategies=["replace"]))
    batch = parity_batch(8)
    batch["target"][:, -3:] = PAD  # shorter targets in the canvas: PAD cells to get right
    report = evaluate_refiner(o, batch, curve_steps=o.config.max_steps_infer)
    o.eval()
    final = torch.tensor(o.inference(batch["input"], early_stopping=False)["final_canvas_ids"])
    curve = o.evaluate(batch, steps=o.config.max_steps_infer)
    scored = batch["target"] != PAD
    expected = ((final == batch["target"]) & scored).sum().item() / scored.sum().item()
    # Without early stopping both run the same steps: the last curve point is infer-few's.
    assert curve["token_acc_at"][-1] == pytest.approx(expected)
    assert report.token_acc_at == curve["token_acc_at"]


def test_metrics_are_typed_json_and_complete():
    o = tiny_orchestrator(tiny_config(grokfast={"mode": "ema"}))
    optimizer = make_optimizer(o.model, lr=1e-3)
    losses = [o.train_step(parity_batch(8, seed=i), optimizer).loss for i in range(4)]
    m = o.train_step(parity_batch(8, seed=9), optimizer)
    json.dumps(m.to_dict(), allow_nan=False)
    for curve in (m.acc_at, m.token_acc_at, m.halt_prob_at, m.step_losses, m.edit_strategies):
        assert len(curve) == T
    assert all(v is not None for v in (m.loss, m.loss_token, m.loss_halting, m.loss_quality))
    assert m.grad_norm is not None and m.lr is not None and not m.skipped
    assert m.step == 5
    assert m.smoothed_loss == pytest.approx((losses[-2] + losses[-1] + m.loss) / 3)
    assert set(m.edit_strategies) <= {"replace", "patch", "append"}
    stats = o.get_training_stats()
    json.dumps(stats, allow_nan=False)
    assert stats["step_count"] == 5 and stats["mode"] == stats["training_mode"] == "train"
    assert stats["edit_strategy_performance"] == stats["edit_performance"]
    assert stats["memory_stats"] == stats["memory"] and stats["memory"]["capacity"] == 16
    assert stats["gradient_norm"]["history_length"] == 5 and stats["loss"]["history_length"] == 5
    assert sum(v["uses"] for v in stats["edit_performance"].values()) == 5 * T
    assert o.grokfast.ema  # the filter ran
    assert o.eval().get_training_stats()["mode"] == "eval"
    o.train_step(parity_batch(8), optimizer)  # train_step switches back to train mode
    assert o.training and o.core.training


def test_a_plain_loop_learns():
    """End to end on tiny parity: the loss falls and step-2 accuracy rises."""
    torch.manual_seed(0)
    o = tiny_orchestrator(
        tiny_config(
            truncated_backprop=False,
            step_loss_weights={"schedule": "uniform"},
            canvas_edit_strategies=["replace"],
        ),
        d_model=32,
        n_layers=2,
    )
    optimizer = make_optimizer(o.model, lr=3e-3, weight_decay=0.0)
    batch = parity_batch(128, seed=1)
    first = o.evaluate(batch)
    for i in range(60):
        rows = torch.randperm(128, generator=torch.Generator().manual_seed(i))[:64]
        o.train_step({k: v[rows] for k, v in batch.items()}, optimizer)
    last = o.evaluate(batch)
    assert sum(last["step_losses"]) < 0.7 * sum(first["step_losses"])
    assert last["token_acc_at"][-1] > first["token_acc_at"][-1] + 0.2
