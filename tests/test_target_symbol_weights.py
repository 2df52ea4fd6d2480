"""step_loss_weights.target_symbols: the token loss weighed by the target's symbol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from refiner_fixtures import parity_batch, tiny_config, tiny_orchestrator

from refiner.config.experiment import prepare_experiment
from refiner.config.loader import ConfigError
from refiner.config.sections import StepLossWeights
from refiner.data.tokenizers import NUM_SPECIAL, VOCAB_SIZE
from refiner.model.losses import LossInputs, LossOptions, step_loss_terms, token_loss_weights


def _terms(logits, target, token_weight=None):
    B, L, _ = logits.shape
    proposal = logits.argmax(-1)
    options = LossOptions(token_weight=token_weight)
    return step_loss_terms(
        LossInputs(logits, torch.zeros(B, L), torch.zeros(B), proposal, proposal, target, options)
    )


def test_the_weighted_token_loss_is_the_weighted_mean_over_positions():
    torch.manual_seed(0)
    logits = torch.randn(3, 10, VOCAB_SIZE)
    target = NUM_SPECIAL + torch.randint(0, 3, (3, 10))
    weighted = StepLossWeights(target_symbols={"2": 4.0, "0": 0.5})
    w = token_loss_weights(weighted, VOCAB_SIZE)
    assert w is not None
    per_position = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    by_target = w[target.flatten()]
    expected = (by_target * per_position).sum() / by_target.sum()
    assert _terms(logits, target, w).token.item() == pytest.approx(expected.item(), rel=1e-5)
    assert _terms(logits, target, w).token.item() != pytest.approx(
        _terms(logits, target).token.item(), rel=1e-3
    )
    # No weights: the plain loss (None, not a vector of ones).
    assert token_loss_weights(StepLossWeights(), VOCAB_SIZE) is None


def test_training_weighs_only_the_symbols_the_targets_hold():
    """Parity targets hold symbols 0 and 1: weighing symbol 1 changes the loss the update
    minimises; weighing a symbol no target holds leaves it exactly as it was."""
    batch = parity_batch(8)
    losses = {}
    for name, symbols in (("plain", None), ("absent", {"7": 5.0}), ("one", {"1": 5.0})):
        config = tiny_config(
            step_loss_weights={"schedule": "uniform", "target_symbols": symbols},
            canvas_edit_strategies=["replace"],
        )
        o = tiny_orchestrator(config)
        losses[name] = o.train_step(batch, torch.optim.SGD(o.core.parameters(), lr=0.0)).loss
    assert losses["absent"] == pytest.approx(losses["plain"], rel=1e-6)
    assert losses["one"] != pytest.approx(losses["plain"], rel=1e-3)


@pytest.mark.parametrize(
    "symbols, message",
    [
        ({"wall": 2.0}, "target_symbols.wall: a symbol is an integer"),
        ({"300": 2.0}, "target_symbols.300: a symbol is an integer in [0, 256)"),
        ({"4": -1.0}, "target_symbols.4: a weight must be finite and >= 0"),
    ],
)
def test_bad_symbol_weights_name_the_key(symbols, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        StepLossWeights.from_dict({"target_symbols": symbols})


def test_a_symbol_no_target_holds_is_refused_before_training():
    """Parity's targets hold symbols 0 and 1 only: weighing 7 is a typo, named with the
    symbols that are there."""
    with pytest.raises(ConfigError) as err:
        prepare_experiment(None, ["orchestration.step_loss_weights.target_symbols={7: 2.0}"])
    assert "step_loss_weights.target_symbols.7: no task's target holds symbol 7" in str(err.value)
    assert "[0, 1]" in str(err.value)
    config, _ = prepare_experiment(
        None, ["orchestration.step_loss_weights.target_symbols={1: 2.0}"]
    )
    assert config.orchestration.step_loss_weights.target_symbols == {"1": 2.0}
