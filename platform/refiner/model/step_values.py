"""The typed values that pass between refinement steps and out of the model (shapes
beside the fields): `RefinerState` (the carry), `StepOutput` (one `RefinerModel.step`),
`StepRecord` (what the unroll keeps of a step) and `Unroll` (what `forward()` returns)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from refiner.model.losses import StepLosses


@dataclass
class RefinerState:
    """The carry between refinement steps."""

    canvas: torch.Tensor  # [B, L] token ids: the current draft (MASK where never written)
    canvas_quality: torch.Tensor  # [B, L] P(token right) per position, 0 where never written
    latent: torch.Tensor  # [B, L, D]


@dataclass
class StepOutput:
    """What one `step()` computes."""

    latent: torch.Tensor  # [B, L, D] the refined latent (the next step starts from it)
    logits: torch.Tensor  # [B, L, V] the proposed canvas
    quality_logits: torch.Tensor  # [B, L] per position: is the proposed token right?
    halt_logit: torch.Tensor  # [B] is the whole canvas right now?
    summary: torch.Tensor  # [B, D] detached: what the memory is searched (and written) with
    memory_similarity: torch.Tensor | None  # [B] best similarity read; None without memory


@dataclass
class StepRecord:
    """What the unroll keeps of one step: the latent it hands on, losses and metrics."""

    strategy: str  # the canvas edit applied after the step
    latent: torch.Tensor  # [B, L, D] the step's latent; detaching it cuts the gradient
    halt_prob: torch.Tensor  # [B] detached
    score: torch.Tensor  # [B] canvas score after the edit (no gradient)
    memory_similarity: torch.Tensor | None  # [B] or None
    losses: StepLosses | None  # with a target: the step's loss terms

    def detach(self) -> StepRecord:
        """The same step with no gradient path through it (truncation)."""
        return replace(
            self,
            latent=self.latent.detach(),
            memory_similarity=None
            if self.memory_similarity is None
            else self.memory_similarity.detach(),
            losses=None if self.losses is None else self.losses.detach(),
        )


@dataclass
class Unroll:
    """What `forward()` returns."""

    steps: list[StepRecord]  # one per step, in order
    canvas: torch.Tensor  # [B, L] the final canvas
    canvas_quality: torch.Tensor  # [B, L]
    latent: torch.Tensor  # [B, L, D] detached final latent
    summary: torch.Tensor  # [B, D] detached pooled (input + final latent)
