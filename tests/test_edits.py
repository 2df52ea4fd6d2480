"""Canvas edits and adaptive edit-strategy selection."""

from __future__ import annotations

import random

import pytest
import torch

from refiner.data.tokenizers import MASK
from refiner.model.edits import EditPolicy, EditSelector, apply_edit, canvas_score


def test_replace_takes_the_whole_proposal():
    canvas, quality = torch.full((2, 4), MASK), torch.zeros(2, 4)
    proposal, pq = torch.tensor([[5, 6, 7, 8], [9, 9, 9, 9]]), torch.rand(2, 4)
    new, nq = apply_edit("replace", canvas, quality, proposal, pq)
    assert torch.equal(new, proposal) and torch.equal(nq, pq)


def test_patch_changes_only_the_least_confident_positions_within_budget():
    canvas = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17]])
    quality = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.05, 0.95, 0.6, 0.99]])
    proposal = torch.full_like(canvas, 4)
    pq = torch.full_like(quality, 0.5)
    new, nq = apply_edit("patch", canvas, quality, proposal, pq, budget=0.25)  # 2 of 8 positions
    changed = (new != canvas).nonzero()[:, 1].tolist()
    assert changed == [1, 4]  # the two lowest qualities
    assert nq[0, 1] == 0.5 and nq[0, 0] == 0.9
    assert torch.equal(canvas, torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17]]))  # input untouched


def test_append_fills_next_unfilled_left_to_right_then_acts_as_replace():
    canvas = torch.tensor([[5, MASK, MASK, MASK, MASK, MASK], [5, 6, 7, 8, 9, 10]])
    quality = torch.zeros(2, 6)
    proposal = torch.full_like(canvas, 20)
    new, _ = apply_edit(
        "append", canvas, quality, proposal, torch.ones(2, 6), budget=0.34
    )  # 3 positions
    assert new[0].tolist() == [5, 20, 20, 20, MASK, MASK]
    assert new[1].tolist() == [20] * 6  # nothing left to append: the proposal replaces


def test_canvas_score_is_the_product_of_qualities():
    q = torch.tensor([[0.5, 0.5, 1.0], [0.0, 1.0, 1.0]])
    assert torch.allclose(canvas_score(q), torch.tensor([0.25, 0.0]), atol=1e-9)


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="unknown canvas edit strategy 'rewrite'"):
        apply_edit(
            "rewrite", torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2)
        )


def test_non_adaptive_uses_first_strategy():
    sel = EditSelector(["patch", "replace"], adaptive=False)
    sel.record("grid", "replace", 1.0)
    assert {sel.select(t, None, "grid") for t in range(20)} == {"patch"}


def _bandit(selector: EditSelector, gains: dict[str, float], rounds: int, seed: int) -> list[str]:
    noise = random.Random(seed)
    picks = []
    for t in range(rounds):
        s = selector.select(t % 8, None, "sequence")
        selector.record("sequence", s, gains[s] + noise.gauss(0, 0.05))
        picks.append(s)
    return picks


@pytest.mark.parametrize("method, exploration", [("epsilon_greedy", 0.1), ("ucb", 0.3)])
def test_adaptive_selection_converges_to_the_better_strategy(method, exploration):
    gains = {"replace": 0.05, "patch": 0.20, "append": 0.0}
    sel = EditSelector(["replace", "patch", "append"], True, method, exploration, seed=1)
    picks = _bandit(sel, gains, 400, seed=2)
    assert picks[:3] == ["replace", "patch", "append"]  # every strategy is tried first
    assert picks[-200:].count("patch") / 200 > 0.85
    assert sel.select(0, None, "sequence", explore=False) == "patch"
    perf = sel.performance()
    assert perf["sequence/patch"]["mean_gain"] == pytest.approx(0.20, abs=0.02)
    assert sum(p["uses"] for p in perf.values()) == 400
    # Exploration keeps trying the others now and then.
    assert {"replace", "append"} & set(picks[-200:])


def test_history_is_per_task_type():
    sel = EditSelector(["replace", "patch"], seed=0)
    for s, g in (("replace", 1.0), ("patch", 0.0)):
        sel.record("grid", s, g)
        sel.record("text", s, 1.0 - g)
    assert sel.select(0, None, "grid", explore=False) == "replace"
    assert sel.select(0, None, "text", explore=False) == "patch"


def test_selector_state_round_trip_reproduces_choices():
    gains = {"replace": 0.1, "patch": 0.12, "append": 0.0}
    a = EditSelector(["replace", "patch", "append"], exploration=0.5, seed=3)
    _bandit(a, gains, 50, seed=0)
    b = EditSelector(["replace", "patch", "append"], exploration=0.5, seed=99)
    b.load_state_dict(a.state_dict())
    assert _bandit(a, gains, 50, seed=1) == _bandit(b, gains, 50, seed=1)
    assert a.performance() == b.performance()


def test_edit_policy_chooses_then_applies_and_measures_the_gain():
    asked: list[tuple[int, bool, str]] = []

    def choose(step: int, scores: torch.Tensor | None, task_type: str) -> str:
        asked.append((step, scores is not None, task_type))
        return "append"

    policy = EditPolicy(choose, patch_budget=0.5, append_budget=0.25, scores_for_choice=False)
    canvas, quality = torch.full((1, 8), MASK), torch.zeros(1, 8)
    proposal, pq = torch.arange(10, 18).unsqueeze(0), torch.full((1, 8), 0.9)  # no MASK
    gains: list[tuple[str, torch.Tensor]] = []
    new, nq, strategy = policy.edit_fn("grid", target=proposal, gains=gains)(
        3, canvas, quality, proposal, pq
    )
    assert strategy == "append" and asked == [(3, False, "grid")]
    assert new[0, :2].tolist() == [10, 11] and (new[0, 2:] == MASK).all()  # 25% of 8
    assert [(s, g.item()) for s, g in gains] == [("append", 0.25)]
    assert policy.budget("append") == 0.25 and policy.budget("patch") == 0.5


def test_every_edit_of_the_orchestrator_goes_through_select_edit_strategy():
    """Training, evaluation and inference all take the one edit path, so a subclass that
    overrides the seed's method changes each of them."""
    from refiner_fixtures import parity_batch, tiny_config, tiny_model_config

    from refiner.tasks.sources import parity
    from refiner.train.optim import make_optimizer
    from refiner.train.orchestrator import UnifiedRefinerOrchestrator

    class AlwaysPatch(UnifiedRefinerOrchestrator):
        calls = 0

        def select_edit_strategy(self, step, canvas_scores, task_type):
            self.calls += 1
            return "patch"

    o = AlwaysPatch.from_config(
        tiny_model_config(), tiny_config(), num_symbols=parity.NUM_SYMBOLS, seed=0
    )
    batch = parity_batch(8)
    assert o.train_step(batch, make_optimizer(o.model, lr=1e-3)).edit_strategies == ["patch"] * 4
    assert o.calls == 4
    o.evaluate(batch, steps=3)
    assert o.calls == 7
    o.eval()
    result = o.inference(batch["input"], early_stopping=False)
    assert result["edit_strategy_use"] == {"patch": 4} and o.calls == 11
