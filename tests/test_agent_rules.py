"""The baselines' rules (agents/rules.py), written once for the numpy players and the batched forms: a batch of
players is the players one at a time, the schedules are :func:`agents.step_size`'s, the square root is IEEE's."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from agents import AdamAgent, GradientAgent, MomentumAgent, RMSpropAgent, step_size
from agents.rules import SCHEDULES, AdaptiveRule, GradientRule, coordinate_lrs, ieee_sqrt

PLAYERS: list[Any] = [
    GradientAgent(lr=0.1, schedule="robbins_monro"),
    MomentumAgent(momentum=0.8),
    AdamAgent(betas=(0.5, 0.9)),
    RMSpropAgent(alpha=0.9),
]


def test_ieee_sqrt_is_correctly_rounded() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal(20_000) * np.exp(rng.uniform(-300, 300, 20_000)))
    expected = np.array([math.sqrt(v) for v in x])  # the C library's: correctly rounded
    got = ieee_sqrt(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, expected)
    # strided and float32 inputs too
    y = torch.from_numpy(np.stack([x, x], 1))[:, 0]
    assert np.array_equal(ieee_sqrt(y).numpy(), expected)
    f = x[(x > 1e-30) & (x < 1e30)].astype(np.float32)
    assert np.array_equal(ieee_sqrt(torch.from_numpy(f)).numpy(), np.sqrt(f.astype(np.float64)).astype(np.float32))


def test_coordinate_lrs_lays_out_head_then_trunk_step_sizes() -> None:
    lrs = coordinate_lrs([0.1, 0.2], [0.3, 0.4], 2, 3)
    assert lrs.dtype == torch.float64
    assert lrs.tolist() == [[0.1, 0.1, 0.3, 0.3, 0.3], [0.2, 0.2, 0.4, 0.4, 0.4]]


@pytest.mark.parametrize("player", PLAYERS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_batch_of_players_is_the_players_one_at_a_time(player: Any, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(1)
    grads = torch.from_numpy(rng.normal(size=(6, 3, 5)) * np.logspace(-3, 2, 5)).to(dtype)
    lrs = coordinate_lrs([0.01, 0.1, 0.5], [0.02, 0.05, 1.0], 2, 3)
    batch = player.make_rule(lrs)
    alone = [player.make_rule(lrs[b : b + 1]) for b in range(3)]
    for t, g in enumerate(grads):
        together = batch.step(g)
        for b, rule in enumerate(alone):
            assert torch.equal(together[b : b + 1], rule.step(g[b : b + 1])), f"step {t}, game {b}"
    assert batch.t == len(grads)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_gradient_rule_rates_are_the_schedules_step_sizes(schedule: str) -> None:
    power = {"constant": None, "robbins_monro": 0.6, "summable": 2.5}[schedule]
    rule = GradientRule(coordinate_lrs([0.3], [0.7], 1, 1), schedule, power)  # type: ignore[arg-type]
    for t in range(20):
        expected = [step_size(0.3, t, schedule, power), step_size(0.7, t, schedule, power)]  # type: ignore[arg-type]
        assert rule.next_rates()[0].tolist() == expected


def test_norm_step_of_the_adaptive_rule_is_the_rms_normalised_step_size() -> None:
    # One step: v = (1 − β2) ‖g‖²/dim, bias-corrected to ‖g‖²/dim: the step is lr / (RMS coordinate + eps).
    rule = AdaptiveRule(coordinate_lrs([0.1], [0.2], 1, 1), 0.9, 0.999, 1e-8)
    norms = torch.tensor([[3.0, 8.0]], dtype=torch.float64)
    steps = rule.norm_step(norms, torch.tensor([[9.0, 16.0]], dtype=torch.float64))
    torch.testing.assert_close(steps, torch.tensor([[0.1 / (1.0 + 1e-8), 0.2 / (2.0 + 1e-8)]], dtype=torch.float64))
