"""Per-sample stopping for inference ("infer few").

After every step each still-active sample is checked, in this order:
`act_confidence` (sigmoid of the halting logit >= act_threshold), `quality_threshold`
(canvas score >= quality_threshold), `patience` (`patience` stale steps in a row) and
`max_steps` (the step budget is spent). A step is stale, by `patience_signal`, when the
score gained less than min_improvement ("score") or when the edit left the canvas
unchanged ("canvas": the score can stall while the canvas is still being fixed).
"""

from __future__ import annotations

import torch

from refiner.config import StoppingConfig

STOP_REASONS = ("act_confidence", "quality_threshold", "patience", "max_steps")
CONTINUE = -1
# How a summary names the reasons: words, not the config keys (a "max_steps: 4" count
# reads as if the step limit were 4).
STOP_REASON_WORDS = {
    "act_confidence": "halting head confident",
    "quality_threshold": "quality head satisfied",
    "patience": "no improvement (patience)",
    "max_steps": "reached the step limit",
}


def describe_stop_counts(counts: dict[str, int]) -> str:
    """``{"act_confidence": 406, "max_steps": 4}`` -> "406 rows halting head confident,
    4 rows reached the step limit" (most common first)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        ", ".join(
            f"{n} row{'s' if n != 1 else ''} {STOP_REASON_WORDS.get(k, k)}" for k, n in ordered
        )
        or "no rows"
    )


class StoppingRule:
    """Tracks the active samples' best score and stale-step count; compacts with them."""

    def __init__(
        self, config: StoppingConfig, batch_size: int, device: torch.device, enabled: bool = True
    ) -> None:
        self.config, self.enabled = config, enabled
        self.best_score = torch.full((batch_size,), -1.0, device=device)
        self.stale_steps = torch.zeros(batch_size, dtype=torch.long, device=device)

    def update(
        self,
        halt_prob: torch.Tensor,
        score: torch.Tensor,
        last_step: bool,
        canvas_changed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reason codes [B]: an index into STOP_REASONS, or CONTINUE (-1).

        `canvas_changed` [B] (did this step's edit change the canvas) is required when
        patience_signal is "canvas"."""
        improved = score >= self.best_score + self.config.min_improvement
        if self.config.patience_signal == "canvas":
            if canvas_changed is None:
                raise ValueError('patience_signal "canvas" needs canvas_changed')
            improved = canvas_changed
        self.stale_steps = torch.where(improved, 0, self.stale_steps + 1)
        self.best_score = torch.maximum(self.best_score, score)
        codes = torch.full_like(self.stale_steps, CONTINUE)
        checks = [(3, torch.full_like(improved, last_step))]  # lowest priority first
        if self.enabled:
            c = self.config
            if c.patience is not None:
                checks.append((2, self.stale_steps >= c.patience))
            if c.quality_threshold is not None:
                checks.append((1, score >= c.quality_threshold))
            if c.act_threshold is not None:
                checks.append((0, halt_prob >= c.act_threshold))
        for code, hit in checks:  # later (higher-priority) checks overwrite earlier ones
            codes = torch.where(hit, code, codes)
        return codes

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices of the still-active samples)."""
        self.best_score, self.stale_steps = self.best_score[rows], self.stale_steps[rows]
