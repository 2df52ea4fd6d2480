"""inference(): per-sample stopping reasons, batch compaction, traces."""

from __future__ import annotations

import json

import pytest
import torch
from refiner_fixtures import SEQ_LEN, parity_batch, tiny_config, tiny_orchestrator

from refiner.data.tokenizers import NUM_SPECIAL


def _orchestrator(**stopping):
    config = tiny_config(max_steps_train=8, max_steps_infer=8, stopping=stopping)
    return tiny_orchestrator(config)


def _set_heads(o, halt_bias: float, quality_bias: float) -> None:
    with torch.no_grad():
        o.core.halt_head.weight.zero_()
        o.core.halt_head.bias.fill_(halt_bias)
        o.core.quality_head.weight.zero_()
        o.core.quality_head.bias.fill_(quality_bias)


def test_act_confidence():
    o = _orchestrator()
    _set_heads(o, halt_bias=10.0, quality_bias=-20.0)
    r = o.inference(parity_batch(6)["input"])
    assert r["stopping_reason"] == ["act_confidence"] * 6 and r["steps_taken"] == [1] * 6


def test_quality_threshold():
    o = _orchestrator(act_threshold=0.5, quality_threshold=0.9)
    _set_heads(o, halt_bias=-10.0, quality_bias=20.0)
    r = o.inference(parity_batch(6)["input"])
    assert r["stopping_reason_counts"] == {"quality_threshold": 6} and r["mean_steps"] == 1.0
    assert min(r["final_canvas_scores"]) > 0.9


def test_patience():
    o = _orchestrator(patience=2)
    _set_heads(o, halt_bias=-10.0, quality_bias=-20.0)  # the score never improves
    r = o.inference(parity_batch(6)["input"])
    # step 1 sets the best score; steps 2 and 3 do not improve it: stop after step 3
    assert r["stopping_reason"] == ["patience"] * 6 and r["steps_taken"] == [3] * 6


def test_max_steps_and_override():
    o = _orchestrator(patience=None)
    _set_heads(o, halt_bias=-10.0, quality_bias=-20.0)
    r = o.inference(parity_batch(4)["input"], max_steps_override=5)
    assert r["stopping_reason"] == ["max_steps"] * 4 and r["steps_taken"] == [5] * 4
    # early_stopping=False ignores every other rule
    o2 = _orchestrator()
    _set_heads(o2, halt_bias=10.0, quality_bias=20.0)
    r2 = o2.inference(parity_batch(4)["input"], early_stopping=False)
    assert r2["stopping_reason_counts"] == {"max_steps": 4} and r2["sample_steps"] == 4 * 8
    with pytest.raises(ValueError, match="max_steps_override must be >= 1"):
        o.inference(parity_batch(1)["input"], max_steps_override=0)


def _halt_rows_starting_with_one(o) -> None:
    """Rows whose first input bit is 1 halt after step 1; the others never halt."""
    core = o.core
    original_step = core.step
    one = core.input_embed.weight[NUM_SPECIAL + 1].detach()

    def step(x, canvas, latent, memory=None):
        out = original_step(x, canvas, latent, memory)
        starts_with_one = torch.isclose(x[:, 0], one).all(-1)
        out.halt_logit = torch.where(starts_with_one, 10.0, -10.0)
        return out

    core.step = step


def test_stopped_samples_leave_the_batch():
    o = _orchestrator(patience=None, quality_threshold=None)
    batch = parity_batch(16)
    easy = batch["input"][:, 0] == NUM_SPECIAL + 1
    assert 0 < easy.sum() < 16
    reference = o.inference(batch["input"], early_stopping=False)  # everyone runs 8 steps
    _halt_rows_starting_with_one(o)
    rows_seen = []
    hook = o.core.blocks[0].register_forward_hook(
        lambda m, inp, out: rows_seen.append(out.shape[0])
    )
    r = o.inference(batch["input"], return_traces=True)
    hook.remove()
    n_hard = int((~easy).sum())
    assert rows_seen == [16] + [n_hard] * 7  # later forwards really run on fewer rows
    assert r["active_per_step"] == [16] + [n_hard] * 7
    assert r["sample_steps"] == int(easy.sum()) * 1 + n_hard * 8
    for i in range(16):
        assert r["stopping_reason"][i] == ("act_confidence" if easy[i] else "max_steps")
    # Compaction does not change the answers of the samples that keep going.
    hard = (~easy).nonzero().squeeze(1).tolist()
    assert [r["final_canvas_ids"][i] for i in hard] == [
        reference["final_canvas_ids"][i] for i in hard
    ]
    traces = r["traces"]
    assert len(traces) == 8 and sorted(traces[0]["stopped"]) == easy.nonzero().squeeze(1).tolist()
    assert traces[1]["rows"] == hard and len(traces[1]["canvas"]) == n_hard


def test_traces_carry_each_cells_top_two_logit_margin():
    """The margin between the proposal's best and second-best logit, per active cell:
    what tells a near tie (which rounding can flip) from a clear choice."""
    o = _orchestrator(patience=None)
    batch = parity_batch(4)
    r = o.inference(batch["input"], return_traces=True, early_stopping=False, max_steps_override=2)
    with torch.no_grad(), o.exploring(False):
        core = o.core.eval()
        x = core.embed_input(batch["input"])
        state = core.initial_state(batch["input"])
        logits = core.step(x, state.canvas, state.latent, o.memory_snapshot()).logits
    top2 = logits.float().topk(2, dim=-1).values
    first = r["traces"][0]["logit_margin"]
    assert torch.tensor(first) == pytest.approx(top2[..., 0] - top2[..., 1], abs=1e-5)
    for step in r["traces"]:
        margins = torch.tensor(step["logit_margin"])
        assert margins.shape == (len(step["rows"]), SEQ_LEN) and (margins >= 0).all()


def test_result_structure_and_consistency_with_the_unroll():
    o = _orchestrator(patience=None)
    batch = parity_batch(5)
    r = o.inference(batch["input"], early_stopping=False, max_steps_override=3)
    json.dumps(r, allow_nan=False)
    assert len(r["final_canvas_ids"]) == 5 and len(r["final_canvas_ids"][0]) == SEQ_LEN
    assert all(len(row) <= SEQ_LEN for row in r["final_canvas"])  # decoded symbols
    assert len(r["quality_per_step"]) == 3 and sum(r["edit_strategy_use"].values()) == 3
    assert r["memory"]["capacity"] == 16
    with torch.no_grad():
        with o.exploring(False):
            out = o.core.eval()(batch["input"], steps=3, edit_fn=o.edit_policy.edit_fn("sequence"))
    assert out.canvas.tolist() == r["final_canvas_ids"]
    assert "traces" not in r
    single = o.inference(batch["input"][0].tolist(), early_stopping=False, max_steps_override=3)
    assert single["final_canvas_ids"][0] == r["final_canvas_ids"][0]
