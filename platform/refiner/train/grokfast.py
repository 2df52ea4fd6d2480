"""Grokfast (Lee et al., 2024): amplify the slow-varying component of the gradients.

Applied to `.grad` after backward and before clipping and the optimizer step.

- ema: mu <- alpha * mu + (1 - alpha) * g ;  g <- g + lamb * mu.
  As in the authors' reference code, mu starts as the first gradient seen.
- ma:  keep the last `window` gradients; g <- g + lamb * mean(window), the mean including
  the current gradient; with `warmup`, only once the window is full.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import torch

from refiner.config.sections import GrokfastConfig


class GrokfastFilter:
    def __init__(self, config: GrokfastConfig) -> None:
        self.config = config
        self.ema: dict[str, torch.Tensor] = {}
        self.window: dict[str, deque[torch.Tensor]] = {}

    @property
    def enabled(self) -> bool:
        return self.config.mode != "off"

    @torch.no_grad()
    def apply(self, named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> None:
        """Filter every `.grad` in place (parameters without a gradient are skipped)."""
        c = self.config
        if c.mode == "off":
            return
        for name, p in named_parameters:
            if p.grad is None:
                continue
            g = p.grad
            if c.mode == "ema":
                mu = self.ema.get(name)
                if mu is None:
                    mu = self.ema[name] = g.detach().clone()
                else:
                    mu.mul_(c.alpha).add_(g, alpha=1 - c.alpha)
                g.add_(mu, alpha=c.lamb)
            else:
                history = self.window.setdefault(name, deque(maxlen=c.window))
                history.append(g.detach().clone())
                if not c.warmup or len(history) == c.window:
                    g.add_(torch.stack(tuple(history)).mean(0), alpha=c.lamb)

    def state_dict(self) -> dict:
        return {
            "mode": self.config.mode,
            "ema": {k: v.cpu().clone() for k, v in self.ema.items()},
            "window": {k: torch.stack(tuple(v)).cpu() for k, v in self.window.items() if len(v)},
        }

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.ema = {k: v.to(device) for k, v in state["ema"].items()}
        self.window = {
            k: deque((g.to(device) for g in v.unbind(0)), maxlen=self.config.window)
            for k, v in state["window"].items()
        }
