"""The fast path (training.compile): the setting, bucketed inference, and agreement of the
compiled model with eager over training updates and inference stopping decisions."""

from __future__ import annotations

import pytest
import torch
from refiner_fixtures import parity_batch, tiny_config, tiny_model_config, tiny_orchestrator

from refiner.config.experiment import ExperimentConfig, build_orchestrator
from refiner.infer.inference import bucket_size, bucketed_step
from refiner.train.fast_path import fast_path_enabled
from refiner.train.optim import make_optimizer
from refiner.train.orchestrator import UnifiedRefinerOrchestrator


def test_compile_setting_resolves_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_path_enabled("auto", cuda) and not fast_path_enabled("auto", cpu)
    assert fast_path_enabled("on", cpu) and not fast_path_enabled("off", cuda)
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        fast_path_enabled("yes", cpu)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_cpu_runs_eager_unless_compile_is_on(setting):
    config = ExperimentConfig.from_dict(
        {"model": {"seq_len": 8, "d_model": 32, "n_heads": 2}, "training": {"compile": setting}}
    )
    orchestrator = build_orchestrator(config, device="cpu")
    assert not orchestrator.core.fast_path
    assert orchestrator.core._compiled_reason is None


def test_bad_compile_setting_names_the_key():
    with pytest.raises(Exception, match="training.compile"):
        ExperimentConfig.from_dict({"training": {"compile": "fast"}})


def test_bucket_sizes_are_powers_of_two_between_a_sixteenth_and_all_of_the_batch():
    active = (12, 11, 9, 8, 5, 4, 3, 2, 1)
    assert [bucket_size(n, 12) for n in active] == [12, 12, 12, 8, 8, 4, 4, 2, 1]
    assert sorted({bucket_size(n, 1024) for n in range(1, 1025)}) == [64, 128, 256, 512, 1024]
    assert bucket_size(3, 100) == 6 and bucket_size(90, 100) == 100


def test_padding_rows_changes_no_active_row():
    o = tiny_orchestrator(attention_window=2).eval()
    core = o.core
    inputs = parity_batch(5)["input"]
    with torch.no_grad():
        x = core.embed_input(inputs)
        state = core.initial_state(inputs)
        plain = core.step(x, state.canvas, state.latent + 0.1, o.memory_snapshot())
        padded = bucketed_step(
            core, x, state.canvas, state.latent + 0.1, o.memory_snapshot(), full=16
        )
    assert padded.logits.shape == plain.logits.shape  # cut back to the 5 active rows
    for name in ("latent", "logits", "quality_logits", "halt_logit", "summary"):
        torch.testing.assert_close(getattr(padded, name), getattr(plain, name))


def _trained_pair(compile_setting: str, batch, updates: int):
    o = UnifiedRefinerOrchestrator.from_config(
        tiny_model_config(memory_capacity=0, attention_window=3),
        tiny_config(max_steps_train=4, max_steps_infer=4, backprop_truncate_steps=2),
        seed=0,
        device="cpu",
        compile=compile_setting,
    )
    optimizer = make_optimizer(o.model, lr=3e-3, weight_decay=0.1)
    metrics = []
    for _ in range(updates):
        metrics.append(o.train_step(batch, optimizer))
    grads = {n: p.grad.clone() for n, p in o.core.named_parameters() if p.grad is not None}
    return o, metrics, grads


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_compiled_matches_eager_in_training_and_inference():
    """Losses and gradients over a few updates, then the same inference stopping
    decisions with batch compaction (rows stop at different steps, buckets shrink)."""
    batch = parity_batch(12)
    eager, eager_metrics, eager_grads = _trained_pair("off", batch, updates=3)
    fast, fast_metrics, fast_grads = _trained_pair("on", batch, updates=3)
    assert fast.core.fast_path and not eager.core.fast_path
    for e, f in zip(eager_metrics, fast_metrics, strict=True):
        assert f.loss == pytest.approx(e.loss, rel=1e-4)
        assert f.step_losses == pytest.approx(e.step_losses, rel=1e-4, abs=1e-6)
        assert f.grad_norm == pytest.approx(e.grad_norm, rel=1e-3)
        assert f.acc_at == e.acc_at
    for name, grad in eager_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-3, atol=1e-5)

    # Same weights in both; a sharper quality head spreads the canvas scores, and a
    # quality threshold in a clear gap between two rows' first-step scores makes some
    # rows stop at step 1 while the rest run on in a compacted (on the fast path,
    # bucketed) batch.
    fast.core.load_state_dict(eager.core.state_dict())
    for o in (eager, fast):
        o.edit_selector.adaptive = False  # always `replace`: every position scored
        with torch.no_grad():
            o.core.quality_head.weight.copy_(torch.linspace(-0.2, 0.2, 32))
            o.core.quality_head.bias.fill_(3.0)
    inputs = parity_batch(11, seed=1)["input"]
    probe = eager.inference(inputs, max_steps_override=1, early_stopping=False)
    scores = sorted(probe["final_canvas_scores"])
    gaps = [(b / a, (a * b) ** 0.5) for a, b in zip(scores, scores[1:], strict=False)]
    ratio, threshold = max(gaps[2:-2])  # a clear gap, several rows on each side
    assert ratio > 1.001, scores
    for o in (eager, fast):
        o.config.stopping.quality_threshold = threshold
        o.config.stopping.act_threshold = None
    e = eager.inference(inputs)
    f = fast.inference(inputs)
    assert len(set(e["active_per_step"])) > 1  # compaction happened
    assert f["steps_taken"] == e["steps_taken"]
    assert f["stopping_reason"] == e["stopping_reason"]
    assert f["active_per_step"] == e["active_per_step"]
    assert f["final_canvas_ids"] == e["final_canvas_ids"]


def test_fused_adamw_steps_as_the_default_one():
    """`make_optimizer(fused=True)` (a GPU lever, bench/gpu_check.py --variants fused) is
    the same AdamW: same groups and decay, same update up to rounding."""
    models = [torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [
        make_optimizer(models[0], lr=1e-2),
        make_optimizer(models[1], lr=1e-2, fused=True),
    ]
    assert optimizers[1].defaults["fused"] and not optimizers[0].defaults["fused"]
    x = torch.randn(5, 6)
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert [g["weight_decay"] for g in optimizers[1].param_groups] == [0.1, 0.0]
