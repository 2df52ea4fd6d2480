"""Canvas edits: how a step's proposal changes the canvas, and which edit to use.

The canvas is the model's current draft: token ids [B, L] plus a per-position quality
[B, L] (the quality head's probability that the token there is right; 0 for positions
never written). Each refinement step proposes new tokens (argmax of its logits) with
their qualities; an edit strategy decides which positions take the proposal:

- `replace`: every position (the canvas becomes the proposal);
- `patch`: only the `budget` least-confident positions of the canvas;
- `append`: the next `budget` unfilled (still MASK) positions, left to right; once the
  canvas is full, append behaves like replace (there is nothing left to append).

`EditSelector` picks a strategy per (task type) from its history of quality gain per
use: epsilon-greedy or UCB1, seeded, so choices are reproducible and checkpointable.
`EditPolicy` is the one path every canvas edit takes (training's unroll, evaluation,
inference, calibration's recorded pass): choose the strategy, then apply it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch

from refiner.config.sections import EDIT_SELECTORS, EDIT_STRATEGIES, OrchestrationConfig
from refiner.data.tokenizers import MASK


def canvas_score(quality: torch.Tensor) -> torch.Tensor:
    """Per-sample score: product of per-position qualities, i.e. the predicted probability
    that the whole canvas is right (assuming independent errors). [B, L] -> [B]."""
    return quality.float().clamp_min(1e-12).log().sum(-1).exp()


def apply_edit(
    strategy: str,
    canvas: torch.Tensor,
    canvas_quality: torch.Tensor,
    proposal: torch.Tensor,
    proposal_quality: torch.Tensor,
    budget: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one edit; returns the new (canvas, canvas_quality). Inputs are not modified."""
    if strategy == "replace":
        return proposal, proposal_quality
    n = max(1, math.ceil(budget * canvas.shape[-1]))
    if strategy == "patch":
        least_confident = canvas_quality.topk(
            min(n, canvas.shape[-1]), dim=-1, largest=False
        ).indices
        take = torch.zeros_like(canvas, dtype=torch.bool).scatter_(-1, least_confident, True)
    elif strategy == "append":
        unfilled = canvas == MASK
        order = unfilled.long().cumsum(-1)  # 1 for the first unfilled position, 2 for the next...
        take = unfilled & (order <= n)
        full_rows = ~unfilled.any(-1, keepdim=True)
        take = take | full_rows
    else:
        raise ValueError(
            f"unknown canvas edit strategy {strategy!r}; known: {list(EDIT_STRATEGIES)}"
        )
    return torch.where(take, proposal, canvas), torch.where(take, proposal_quality, canvas_quality)


def token_accuracy(canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean fraction of positions equal to the target (a 0-d tensor; no host sync)."""
    return (canvas == target).float().mean()


class EditSelector:
    """Chooses an edit strategy per step from a per (task_type, strategy) gain history.

    Without `adaptive`, the first listed strategy is always used. With it, untried
    strategies are tried first, then epsilon-greedy (explore with probability
    `exploration`) or UCB1 (mean gain + exploration * sqrt(ln N / n)) on the mean gain
    per use. `explore=False` (inference) always takes the best known strategy.
    The bandit has no context beyond the task type: `step` and `canvas_scores` are
    accepted for the seed's signature, not used for the choice.
    """

    def __init__(
        self,
        strategies: Sequence[str],
        adaptive: bool = True,
        method: str = "epsilon_greedy",
        exploration: float = 0.1,
        seed: int = 0,
    ) -> None:
        if method not in EDIT_SELECTORS:
            raise ValueError(f"unknown edit selection {method!r}; known: {list(EDIT_SELECTORS)}")
        self.strategies = list(strategies)
        self.adaptive, self.method, self.exploration = adaptive, method, exploration
        self.rng = random.Random(seed)
        self.history: dict[str, dict[str, dict[str, float]]] = {}  # task_type -> strategy -> stats

    @classmethod
    def from_config(cls, config: OrchestrationConfig) -> EditSelector:
        """The selector `config` describes (strategies, adaptive, method, exploration)."""
        return cls(
            config.canvas_edit_strategies,
            config.adaptive_edit_selection,
            config.edit_selection,
            config.edit_exploration,
            config.seed,
        )

    def select(
        self,
        step: int,
        canvas_scores: torch.Tensor | None,
        task_type: str,
        explore: bool = True,
    ) -> str:
        if not self.adaptive or len(self.strategies) == 1:
            return self.strategies[0]
        stats = self.history.get(task_type, {})
        uses = {s: stats.get(s, {}).get("uses", 0) for s in self.strategies}
        means = {s: stats[s]["total_gain"] / uses[s] for s in self.strategies if uses[s]}
        if not means:
            return self.strategies[0]
        if explore:
            untried = [s for s in self.strategies if not uses[s]]
            if untried:
                return untried[0]
            if self.method == "epsilon_greedy" and self.rng.random() < self.exploration:
                return self.rng.choice(self.strategies)
            if self.method == "ucb":
                total = sum(uses.values())
                bonus = {s: self.exploration * math.sqrt(math.log(total) / uses[s]) for s in means}
                return max(means, key=lambda s: means[s] + bonus[s])
        return max(means, key=means.__getitem__)

    def record(self, task_type: str, strategy: str, gain: float) -> None:
        """One use of `strategy` changed the canvas quality by `gain`."""
        if not math.isfinite(gain):
            return
        stats = self.history.setdefault(task_type, {}).setdefault(
            strategy, {"uses": 0, "total_gain": 0.0}
        )
        stats["uses"] += 1
        stats["total_gain"] += gain

    def performance(self) -> dict[str, dict[str, float]]:
        """`{"task_type/strategy": {"uses", "total_gain", "mean_gain"}}` (flat, for logging)."""
        return {
            f"{task}/{strategy}": {
                "uses": s["uses"],
                "total_gain": s["total_gain"],
                "mean_gain": s["total_gain"] / s["uses"] if s["uses"] else 0.0,
            }
            for task, per in sorted(self.history.items())
            for strategy, s in sorted(per.items())
        }

    def state_dict(self) -> dict:
        return {"history": self.history, "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.history = {
            t: {s: dict(v) for s, v in per.items()} for t, per in state["history"].items()
        }
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


# choose(step, canvas_scores [B] or None, task_type) -> strategy name
StrategyChooser = Callable[[int, torch.Tensor | None, str], str]
# edit(step, canvas, canvas_quality, proposal, proposal_quality)
#   -> (new_canvas, new_quality, strategy): the callback a model unroll calls each step
EditFn = Callable[
    [int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, str],
]
# (strategy, token-accuracy gain as a 0-d tensor) per edit of a supervised unroll
EditGains = list[tuple[str, torch.Tensor]]


class EditPolicy:
    """Choose a strategy, apply the edit.

    `choose` picks the strategy (the orchestrator's `select_edit_strategy`, which asks
    its `EditSelector` and knows whether to explore); `scores_for_choice`: whether the
    chooser gets the canvas scores (an adaptive selector; otherwise None, saving their
    computation). `patch` and `append` edits change at most their budget's fraction of
    the positions."""

    def __init__(
        self,
        choose: StrategyChooser,
        patch_budget: float,
        append_budget: float,
        scores_for_choice: bool = True,
    ) -> None:
        self.choose = choose
        self.patch_budget, self.append_budget = patch_budget, append_budget
        self.scores_for_choice = scores_for_choice

    def budget(self, strategy: str) -> float:
        """The fraction of positions a `patch` or `append` edit may change."""
        return self.append_budget if strategy == "append" else self.patch_budget

    def edit(
        self,
        step: int,
        canvas: torch.Tensor,
        quality: torch.Tensor,
        proposal: torch.Tensor,
        proposal_quality: torch.Tensor,
        task_type: str,
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Step `step`'s edit of the canvas [B, L] and its quality [B, L] by the proposal:
        (new canvas, new quality, the strategy applied)."""
        scores = canvas_score(quality) if self.scores_for_choice else None
        strategy = self.choose(step, scores, task_type)
        new_canvas, new_quality = apply_edit(
            strategy, canvas, quality, proposal, proposal_quality, self.budget(strategy)
        )
        return new_canvas, new_quality, strategy

    def edit_fn(
        self,
        task_type: str,
        target: torch.Tensor | None = None,
        gains: EditGains | None = None,
    ) -> EditFn:
        """`edit` as the per-step callback a model unroll calls. With a `target` and a
        `gains` list it appends each edit's token-accuracy gain (the adaptive selector's
        reward), still on the device."""

        def edit(
            step: int,
            canvas: torch.Tensor,
            quality: torch.Tensor,
            proposal: torch.Tensor,
            proposal_quality: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor, str]:
            new_canvas, new_quality, strategy = self.edit(
                step, canvas, quality, proposal, proposal_quality, task_type
            )
            if target is not None and gains is not None:
                gain = token_accuracy(new_canvas, target) - token_accuracy(canvas, target)
                gains.append((strategy, gain))
            return new_canvas, new_quality, strategy

        return edit
