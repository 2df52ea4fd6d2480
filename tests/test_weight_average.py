"""EMA of the weights: the average's arithmetic, what evaluation and checkpoints read,
and an exact resume (live weights and average both come back)."""

from __future__ import annotations

import pytest
import torch
from refiner_fixtures import parity_batch, tiny_config, tiny_orchestrator, weights
from torch import nn

from refiner.checkpoints.files import load_checkpoint, save_checkpoint
from refiner.config.sections import ConfigError
from refiner.train.optim import make_optimizer, warmup_cosine
from refiner.train.orchestrator import UnifiedRefinerOrchestrator
from refiner.train.weight_average import WeightAverage


def test_the_average_follows_its_decay_and_swaps_in_and_out():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    manual = torch.zeros(1, 2)  # decay min(0.5, (1 + n) / (10 + n)) at the n-th update
    for n, value in enumerate((1.0, 2.0, 4.0), start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer)
        d = min(0.5, (1 + n) / (10 + n))
        manual = d * manual + (1 - d) * value
    assert torch.allclose(average.average[0], manual)
    with average.applied(layer):
        assert torch.allclose(layer.weight, manual)
        with average.applied(layer):  # nested: still the average
            assert torch.allclose(layer.weight, manual)
        live, averaged = average.module_states(layer)
        assert torch.equal(live["weight"], torch.full((1, 2), 4.0))
        assert torch.allclose(averaged["weight"], manual)
        with pytest.raises(RuntimeError, match="applied"):
            average.update(layer)
    assert torch.equal(layer.weight, torch.full((1, 2), 4.0))


def _setup(seed: int = 0):
    o = tiny_orchestrator(tiny_config(ema_decay=0.9), seed=seed)
    optimizer = make_optimizer(o.model, lr=3e-3)
    return o, optimizer, warmup_cosine(optimizer, warmup_steps=2, total_steps=8)


def _train(o, optimizer, scheduler, steps: range) -> None:
    for i in steps:
        o.train_step(parity_batch(16, seed=i), optimizer, lr_scheduler=scheduler)


def test_checkpoints_hold_the_average_and_resume_exactly(tmp_path):
    straight = _setup()
    _train(*straight, range(6))

    first = _setup()
    _train(*first, range(3))
    live = weights(first[0])
    with first[0].averaged_weights():
        averaged = weights(first[0])
    assert any(not torch.equal(live[k], averaged[k]) for k in live)  # they differ
    path = save_checkpoint(tmp_path / "ckpt.pt", *first)

    # What evaluation and serving load: the average, in the model itself.
    served = UnifiedRefinerOrchestrator.from_checkpoint(path)
    for key, value in averaged.items():
        assert torch.equal(weights(served)[key], value), key

    resumed = _setup(seed=99)
    load_checkpoint(path, *resumed)  # with an optimizer: resume training
    for key, value in live.items():
        assert torch.equal(weights(resumed[0])[key], value), key
    _train(*resumed, range(3, 6))
    for key, value in weights(straight[0]).items():
        assert torch.equal(weights(resumed[0])[key], value), key
    with straight[0].averaged_weights(), resumed[0].averaged_weights():
        for key, value in weights(straight[0]).items():
            assert torch.equal(weights(resumed[0])[key], value), key


def test_without_ema_the_model_is_the_live_weights(tmp_path):
    o = tiny_orchestrator(tiny_config())
    before = weights(o)
    with o.averaged_weights():
        assert all(torch.equal(v, weights(o)[k]) for k, v in before.items())
    assert o.state_dict()["weight_average"] is None


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_ema_decay_out_of_range_is_a_config_error(decay):
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(ema_decay=decay)
