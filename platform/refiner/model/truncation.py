"""The gradient cut of the unroll (truncated backpropagation through the steps): a
`TruncateFn` is called after every step with the records so far and returns them with
every step outside the gradient window detached."""

from __future__ import annotations

from collections.abc import Callable

import torch

from refiner.model.losses import StepLosses
from refiner.model.step_values import StepRecord

# truncate(step_records_so_far) -> the same records with the gradient cut applied
TruncateFn = Callable[[list[StepRecord]], list[StepRecord]]


def keep_last(grad_steps: int, steps: int, window_end: int | None = None) -> TruncateFn:
    """The truncation rule: only the last `grad_steps` of `steps` steps carry gradient,
    or the `grad_steps` steps ending at step `window_end` (1-based) when it is given.

    As a callback it detaches every step outside the window, so the first window step
    starts from a detached latent, the other steps' losses give no gradient, and the
    steps after the window run without autograd."""
    end = steps if window_end is None else window_end
    if not 1 <= grad_steps <= steps:
        raise ValueError(f"grad_steps must be in [1, steps={steps}], got {grad_steps}")
    if not grad_steps <= end <= steps:
        raise ValueError(f"window_end must be in [{grad_steps}, {steps}], got {window_end}")
    first = end - grad_steps

    def truncate(records: list[StepRecord]) -> list[StepRecord]:
        return [r if first <= t < end else r.detach() for t, r in enumerate(records)]

    return truncate


def steps_kept_by(truncate: TruncateFn, steps: int) -> list[bool]:
    """Which steps of a `steps`-step unroll need autograd under `truncate`: a dry run of
    the cut, called as the unroll calls it, on placeholder records (0-d tensors). A step
    whose record comes back detached from the call right after it can run without
    autograd: its graph would be dropped at once and nothing downstream can reach it."""
    records: list[StepRecord] = []
    kept = []
    for _ in range(steps):
        attached = torch.zeros((), requires_grad=True)
        records.append(
            StepRecord(
                strategy="replace",
                latent=attached,
                halt_prob=torch.zeros(()),
                score=torch.zeros(()),
                memory_similarity=None,
                losses=StepLosses(
                    attached, attached, attached, torch.zeros((), dtype=torch.bool), attached
                ),
            )
        )
        records = truncate(records)
        kept.append(records[-1].latent.requires_grad)
    return kept
