"""Deep supervision: the loss terms of one refinement step and the per-step weights.

Every step is supervised: token cross-entropy of the step's logits against the target
(over all positions, PAD included: PAD is a legitimate "nothing here" prediction), the
quality head against "is the proposed token right" per position, and the halting head
against "the canvas after this step's edit is exactly right". The reported token
accuracy counts only the target's non-PAD positions, as inference's does (PAD cells
are easy and would inflate it on short targets in a long canvas).

Step weights are normalised over the steps that carry gradient (the truncation window):
the objective is the weighted mean of those steps' losses, so truncating backprop does
not scale the gradient down; earlier steps get weight 0 (their losses are still reported).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from refiner.config.sections import StepLossWeights
from refiner.data.tokenizers import NUM_SPECIAL, PAD

LOSS_TYPES = ("token", "halting", "quality")


def step_weights(
    weights: StepLossWeights,
    steps: int,
    gradient_steps: int | None = None,
    window_end: int | None = None,
) -> torch.Tensor:
    """Per-step weights w_1..w_T (float64) for the configured schedule.

    Only the ``gradient_steps`` steps (all ``steps`` when None) of the gradient window
    that ends at step ``window_end`` (default: the last step) are weighted; their weights
    sum to 1 and every other step weighs 0. A schedule's shape is kept: the window's
    weights are the schedule's, renormalised.
    """
    window = steps if gradient_steps is None else gradient_steps
    end = steps if window_end is None else window_end
    if not 1 <= window <= steps:
        raise ValueError(f"gradient_steps must be in [1, {steps}], got {gradient_steps}")
    if not window <= end <= steps:
        raise ValueError(f"window_end must be in [{window}, {steps}], got {window_end}")
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    if weights.schedule == "uniform":
        w = torch.ones(steps, dtype=torch.float64)
    elif weights.schedule == "linear":
        w = t
    elif weights.schedule == "exponential":
        w = weights.decay ** (steps - t)  # the last step weighs 1, each earlier one `decay` less
    elif weights.schedule == "explicit":
        if weights.steps is None or len(weights.steps) != steps:
            n = None if weights.steps is None else len(weights.steps)
            raise ValueError(f"explicit step weights: have {n}, the unroll has {steps} steps")
        w = torch.tensor(weights.steps, dtype=torch.float64)
    else:
        raise ValueError(f"unknown step weight schedule {weights.schedule!r}")
    w[: end - window] = 0.0
    w[end:] = 0.0
    total = w.sum()
    if total <= 0:
        raise ValueError(
            f"step weights: the {window} steps of the gradient window ending at step {end}"
            " all weigh 0"
        )
    return w / total


def token_loss_weights(weights: StepLossWeights, vocab_size: int) -> torch.Tensor | None:
    """The token loss's weight per token id [vocab_size] (float32) from
    `weights.target_symbols` (symbol s is token NUM_SPECIAL + s); None when every
    symbol weighs 1, so the plain loss runs unchanged."""
    if not weights.target_symbols:
        return None
    w = torch.ones(vocab_size, dtype=torch.float32)
    for symbol, weight in weights.target_symbols.items():
        token = NUM_SPECIAL + int(symbol)
        if token >= vocab_size:
            raise ValueError(
                f"step_loss_weights.target_symbols.{symbol}: the model's vocabulary has"
                f" symbols 0..{vocab_size - NUM_SPECIAL - 1}"
            )
        w[token] = weight
    return w


@dataclass
class StepLosses:
    """The loss terms of one step (unweighted, fp32) and its exactness metrics."""

    token: torch.Tensor  # 0-d token cross-entropy
    halting: torch.Tensor  # 0-d halting BCE ("the canvas is exactly right")
    quality: torch.Tensor  # 0-d quality BCE ("the proposed token is right")
    exact: torch.Tensor  # [B] bool: the canvas after the edit equals the target
    token_acc: torch.Tensor  # 0-d fraction of canvas positions equal to the target

    def detach(self) -> StepLosses:
        return StepLosses(
            self.token.detach(),
            self.halting.detach(),
            self.quality.detach(),
            self.exact,
            self.token_acc.detach(),
        )

    def of_type(self, name: str) -> torch.Tensor:
        """The term named by one of LOSS_TYPES."""
        return getattr(self, name)

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """The fields in order (`StepLosses(*terms.as_tuple())` rebuilds it)."""
        return tuple(getattr(self, name) for name in _LOSS_FIELDS)


@dataclass(frozen=True)
class LossOptions:
    """The run's settings of the loss, as tensors on the device (`loss_options` builds
    them from the config). A new loss option is a field here, set in `loss_options` and
    read in `step_loss_terms`: the model and the orchestrator pass this object through."""

    token_weight: torch.Tensor | None = None  # [V] the token loss's weight per target token


def loss_options(
    weights: StepLossWeights, vocab_size: int, device: torch.device | str
) -> LossOptions:
    """The loss settings `orchestration.step_loss_weights` asks for, on `device`."""
    token_weight = token_loss_weights(weights, vocab_size)
    return LossOptions(token_weight=None if token_weight is None else token_weight.to(device))


@dataclass
class LossInputs:
    """What the loss of one step reads: the step's outputs, its canvas, the target, and
    the run's loss settings."""

    logits: torch.Tensor  # [B, L, V]
    quality_logits: torch.Tensor  # [B, L]
    halt_logit: torch.Tensor  # [B]
    proposal: torch.Tensor  # [B, L] the logits' argmax
    canvas: torch.Tensor  # [B, L] after the step's edit
    target: torch.Tensor  # [B, L]
    options: LossOptions = LossOptions()

    def flatten(self) -> tuple[torch.Tensor | None, ...]:
        """Every tensor, the options' last (what a compiled loss takes)."""
        step = (getattr(self, name) for name in _INPUT_FIELDS)
        options = (getattr(self.options, name) for name in _OPTION_FIELDS)
        return (*step, *options)

    @classmethod
    def unflatten(cls, tensors: tuple[torch.Tensor | None, ...]) -> LossInputs:
        """The inverse of `flatten`."""
        step = dict(zip(_INPUT_FIELDS, tensors, strict=False))
        options = LossOptions(*tensors[len(_INPUT_FIELDS) :])
        return cls(**step, options=options)  # type: ignore[arg-type]


# Field names read once here, not inside a compiled loss (torch.compile cannot trace
# dataclasses.fields).
_LOSS_FIELDS = tuple(f.name for f in fields(StepLosses))
_OPTION_FIELDS = tuple(f.name for f in fields(LossOptions))
_INPUT_FIELDS = tuple(f.name for f in fields(LossInputs) if f.name != "options")


def step_loss_terms(inputs: LossInputs) -> StepLosses:
    """Unweighted loss terms (0-d, fp32) and detached metrics of one step."""
    logits, target, proposal = inputs.logits, inputs.target, inputs.proposal
    token_weight = inputs.options.token_weight
    token = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), weight=token_weight)
    quality = F.binary_cross_entropy_with_logits(
        inputs.quality_logits.float(), (proposal == target).float()
    )
    correct = inputs.canvas == target
    exact = correct.all(-1)
    scored = target != PAD
    halting = F.binary_cross_entropy_with_logits(inputs.halt_logit.float(), exact.float())
    # over the target's non-PAD positions, as evaluation.py scores inference
    token_acc = (correct & scored).sum().float() / scored.sum().clamp(min=1)
    return StepLosses(token, halting, quality, exact, token_acc)
