"""Grokfast matches its published update rules."""

from __future__ import annotations

import torch

from refiner.config.sections import GrokfastConfig
from refiner.train.grokfast import GrokfastFilter


def _param_with_grads(grads: list[torch.Tensor]):
    p = torch.nn.Parameter(torch.zeros_like(grads[0]))
    for g in grads:
        p.grad = g.clone()
        yield p


def test_ema_rule():
    alpha, lamb = 0.9, 2.0
    f = GrokfastFilter(GrokfastConfig(mode="ema", alpha=alpha, lamb=lamb))
    grads = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    mu = None
    for g, p in zip(grads, _param_with_grads(grads), strict=True):
        f.apply([("w", p)])
        mu = (
            g.clone() if mu is None else alpha * mu + (1 - alpha) * g
        )  # mu starts as the first gradient
        assert torch.allclose(p.grad, g + lamb * mu, atol=1e-6)
        assert torch.allclose(f.ema["w"], mu, atol=1e-6)


def test_moving_average_rule_with_warmup():
    window, lamb = 3, 0.5
    f = GrokfastFilter(GrokfastConfig(mode="ma", window=window, lamb=lamb, warmup=True))
    grads = [torch.full((2,), float(i + 1)) for i in range(5)]
    for i, (g, p) in enumerate(zip(grads, _param_with_grads(grads), strict=True)):
        f.apply([("w", p)])
        if i + 1 < window:
            assert torch.equal(p.grad, g)  # warmup: unchanged until the window is full
        else:
            avg = torch.stack(grads[i + 1 - window : i + 1]).mean(0)
            assert torch.allclose(p.grad, g + lamb * avg)


def test_moving_average_without_warmup_filters_from_the_start():
    f = GrokfastFilter(GrokfastConfig(mode="ma", window=4, lamb=1.0, warmup=False))
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([2.0, 4.0])
    f.apply([("w", p)])
    assert torch.equal(p.grad, torch.tensor([4.0, 8.0]))


def test_off_is_a_no_op_and_missing_grads_are_skipped():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    GrokfastFilter(GrokfastConfig(mode="off")).apply([("w", p)])
    assert torch.equal(p.grad, torch.ones(2))
    q = torch.nn.Parameter(torch.ones(2))
    f = GrokfastFilter(GrokfastConfig(mode="ema"))
    f.apply([("q", q)])
    assert f.ema == {}


def test_state_round_trip_continues_identically():
    for cfg in (
        GrokfastConfig(mode="ema", alpha=0.8),
        GrokfastConfig(mode="ma", window=3, warmup=False),
    ):
        grads = [torch.randn(4, generator=torch.Generator().manual_seed(i)) for i in range(6)]
        a, b = GrokfastFilter(cfg), GrokfastFilter(cfg)
        for g in grads[:3]:
            p = torch.nn.Parameter(torch.zeros(4))
            p.grad = g.clone()
            a.apply([("w", p)])
        b.load_state_dict(a.state_dict())
        for g in grads[3:]:
            pa, pb = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
            pa.grad, pb.grad = g.clone(), g.clone()
            a.apply([("w", pa)])
            b.apply([("w", pb)])
            assert torch.equal(pa.grad, pb.grad)
