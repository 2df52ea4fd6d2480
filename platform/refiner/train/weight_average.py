"""An exponential moving average of the model's weights (EMA, as TRM trains with).

Small-data refiners swing between updates: a 15x15 maze model at 98% held-out exact
after 500 updates was at 0% after 750. Evaluating and saving the average of recent
weights instead of the last ones takes out the update-to-update noise (it cannot undo a
collapse that lasts longer than its horizon). Training keeps updating the live weights;
held-out evaluation, calibration and checkpoints (what prediction and serving load) see
the average, and a resumed run gets both back.

The average starts at the initial weights and uses decay min(decay, (1 + n) / (10 + n))
after n updates, so the first updates are not drowned by the random initialisation.
Only parameters are averaged: buffers (a puzzle-embedding table trained by its own
sparse optimizer, for instance) are the live ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class WeightAverage:
    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"weight average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [name for name, _ in module.named_parameters()]
        self.average = [p.detach().clone() for p in module.parameters()]
        self.applied_to_module = False  # True inside `applied`: the module holds the average

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Fold the module's live weights into the average (after each optimizer step)."""
        if self.applied_to_module:
            raise RuntimeError("weight average: update while the average is applied")
        self.updates += 1
        live = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(self.average, live, 1.0 - self.current_decay())

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """The module holds the averaged weights inside the block, its live ones after.
        Nested uses are the outer one's."""
        if self.applied_to_module:
            yield
            return
        self._swap(module)
        self.applied_to_module = True
        try:
            yield
        finally:
            self._swap(module)
            self.applied_to_module = False

    @torch.no_grad()
    def _swap(self, module: nn.Module) -> None:
        for p, average in zip(module.parameters(), self.average, strict=True):
            live = p.detach().clone()
            p.copy_(average)
            average.copy_(live)

    def module_states(self, module: nn.Module) -> tuple[dict, dict]:
        """(live, averaged) state dicts of the module (buffers as they are)."""
        held = {k: v.detach().clone() for k, v in module.state_dict().items()}
        other = dict(held)
        for name, tensor in zip(self.names, self.average, strict=True):
            other[name] = tensor.detach().clone()
        return (other, held) if self.applied_to_module else (held, other)

    @torch.no_grad()
    def reset(self, module: nn.Module) -> None:
        """Start the average at the module's current weights (a model loaded to evaluate)."""
        if self.applied_to_module:
            raise RuntimeError("weight average: reset while the average is applied")
        torch._foreach_copy_(self.average, [p.detach() for p in module.parameters()])
        self.updates = 0

    def restore(self, module: nn.Module, live_state: dict, updates: int) -> None:
        """Resume: the module holds the average (as loaded from a checkpoint's weights);
        make that the average and load the live weights into the module."""
        self.reset(module)
        module.load_state_dict(live_state)
        self.updates = updates
