"""RefinerModel: shapes, initial halting, the single-call unroll and its gradients."""

from __future__ import annotations

import pytest
import torch
from refiner_fixtures import SEQ_LEN, parity_batch, tiny_model_config

from refiner.model.memory import MemoryBank
from refiner.model.network import RefinerModel
from refiner.model.truncation import steps_kept_by


def _model(**overrides) -> RefinerModel:
    torch.manual_seed(0)
    return RefinerModel(tiny_model_config(**overrides))


def test_step_shapes_and_initial_halting():
    model = _model()
    batch = parity_batch(5)
    x = model.embed_input(batch["input"])
    state = model.initial_state(batch["input"])
    out = model.step(x, state.canvas, state.latent)
    V = model.config.vocab_size
    assert out.logits.shape == (5, SEQ_LEN, V)
    assert out.quality_logits.shape == (5, SEQ_LEN) and out.halt_logit.shape == (5,)
    assert out.latent.shape == (5, SEQ_LEN, model.config.d_model)
    assert out.summary.shape == (5, model.config.d_model) and out.memory_similarity.shape == (5,)
    assert torch.sigmoid(out.halt_logit).max() < 0.01  # starts by not halting
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("memory_filled", [False, True])
def test_every_parameter_gets_a_gradient_from_a_truncated_unroll(memory_filled):
    """DDP without find_unused_parameters needs this: even with K=1 and an empty bank."""
    model = _model()
    batch = parity_batch(4)
    bank = MemoryBank.from_config(model.config)
    if memory_filled:
        bank.write(torch.randn(3, model.config.d_model), torch.randn(3, model.config.d_model))
    out = model(
        batch["input"], steps=4, grad_steps=1, target=batch["target"], memory=bank.snapshot()
    )
    last = out.steps[-1].losses
    (last.token + last.halting + last.quality).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_steps_before_the_window_keep_no_graph():
    model = _model()
    batch = parity_batch(4)
    out = model(batch["input"], steps=5, grad_steps=2, target=batch["target"])
    assert [s.losses.token.requires_grad for s in out.steps] == [False] * 3 + [True] * 2
    assert [s.latent.requires_grad for s in out.steps] == [False] * 3 + [True] * 2
    with torch.no_grad():
        out = model(batch["input"], steps=3, target=batch["target"])
    assert not any(s.losses.token.requires_grad for s in out.steps)
    with pytest.raises(ValueError, match="grad_steps must be in"):
        model(batch["input"], steps=3, grad_steps=4)


def test_truncate_callback_decides_which_steps_carry_gradient():
    """The unroll continues from what `truncate` returns: cutting only step 2's record
    leaves steps 1-2 without a path from later losses, and the records it keeps carry
    gradient (under `grad_steps` they could not: those steps ran without autograd)."""
    model = _model()
    batch = parity_batch(4)
    seen = []

    def cut_second(records):
        seen.append(len(records))
        return [r.detach() if t == 1 else r for t, r in enumerate(records)]

    assert steps_kept_by(cut_second, 4) == [True, False, True, True]
    seen.clear()
    grad_mode = []
    model.blocks[0].register_forward_hook(lambda *_: grad_mode.append(torch.is_grad_enabled()))
    out = model(batch["input"], steps=4, target=batch["target"], truncate=cut_second)
    assert seen == [1, 2, 3, 4] * 2  # the dry run (steps_kept_by), then the unroll
    assert grad_mode == [True, False, True, True]  # a step cut at once runs without autograd
    assert [s.losses.token.requires_grad for s in out.steps] == [True, False, True, True]
    with pytest.raises(ValueError, match="not both"):
        model(batch["input"], steps=2, grad_steps=1, truncate=cut_second)


def test_unroll_matches_repeated_steps():
    """forward() is step() in a loop with replace edits (what inference relies on)."""
    model = _model().eval()
    ids = parity_batch(3)["input"]
    with torch.no_grad():
        out = model(ids, steps=3)
        x = model.embed_input(ids)
        state = model.initial_state(ids)
        canvas, latent = state.canvas, state.latent
        for _ in range(3):
            s = model.step(x, canvas, latent)
            canvas, latent = s.logits.argmax(-1), s.latent
    assert torch.equal(out.canvas, canvas) and torch.allclose(out.latent, latent)


def test_edit_callback_is_called_every_step():
    model = _model()
    calls = []

    def keep_canvas(step, canvas, quality, proposal, proposal_quality):
        calls.append(step)
        return canvas, quality, "patch"

    out = model(parity_batch(2)["input"], steps=3, edit_fn=keep_canvas)
    assert calls == [0, 1, 2] and [s.strategy for s in out.steps] == ["patch"] * 3
    assert (out.canvas == 1).all()  # still the MASK canvas


def test_learned_positions_and_no_memory_variant():
    model = _model(positional="learned", memory_capacity=0)
    assert not hasattr(model, "memory_out") and model.pos_embed is not None
    batch = parity_batch(2)
    out = model(batch["input"], steps=2, target=batch["target"])
    assert torch.isfinite(out.steps[-1].losses.token)
    with pytest.raises(ValueError, match="exceeds the model's seq_len"):
        model(torch.zeros(1, SEQ_LEN + 1, dtype=torch.long), steps=1)


def test_bf16_autocast_runs_on_cpu():
    model = _model()
    batch = parity_batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch["input"], steps=2, target=batch["target"])
    loss = out.steps[-1].losses.token
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("layout", ["sequence", "grid"])
def test_local_window_limits_what_one_step_reads(layout):
    """One layer, one cycle: position p's logits depend on the inputs within the window
    only: |i - j| <= 1 on a sequence, the 3x3 neighbourhood on a 4-wide grid."""
    model = _model(
        seq_len=16, attention_window=1, attention_layout=layout, grid_width=4, memory_capacity=0
    )
    x = model.embed_input(torch.randint(2, 6, (1, 16))).detach().requires_grad_(True)
    state = model.initial_state(torch.zeros(1, 16, dtype=torch.long))
    model.step(x, state.canvas, state.latent).logits[0, 5].sum().backward()
    read = set(torch.nonzero(x.grad[0].abs().sum(-1)).flatten().tolist())
    # position 5 is row 1, column 1 of the 4x4 grid
    assert read == ({4, 5, 6} if layout == "sequence" else {0, 1, 2, 4, 5, 6, 8, 9, 10})


def test_grid_layout_without_a_width_says_where_it_comes_from():
    model = _model(attention_window=1, attention_layout="grid", memory_capacity=0)
    with pytest.raises(ValueError, match="grid_width is unset: the grid layout takes it"):
        model(parity_batch(1)["input"], steps=1)
