"""Consensus rules: registry, resolution, and the paper's sum (Eq. 24) and mean (Eq. 21)."""

from __future__ import annotations

import pytest
import torch

import mtg_env
from mtg_env.consensus import consensus_rule, mean_rule, sum_rule


def test_registry_lists_the_papers_rules() -> None:
    assert set(mtg_env.CONSENSUS_RULES) == {"sum", "mean"}
    assert consensus_rule("sum") is sum_rule and consensus_rule("mean") is mean_rule


def test_sum_and_mean_are_exact() -> None:
    p = torch.randn(5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(sum_rule(p), p[0] + p[1] + p[2] + p[3] + p[4], rtol=0, atol=1e-15)
    torch.testing.assert_close(mean_rule(p), sum_rule(p) / 5, rtol=0, atol=1e-15)


def test_a_callable_passes_through_and_other_things_are_refused() -> None:
    rule = lambda p: p[0]  # noqa: E731
    assert consensus_rule(rule) is rule
    with pytest.raises(ValueError, match=r"unknown consensus rule 'mgda'; available: \['mean', 'sum'\]"):
        consensus_rule("mgda")
    with pytest.raises(TypeError, match="rule name or a callable"):
        consensus_rule(3)  # type: ignore[arg-type]


def test_a_stateful_rule_is_reset_by_env_reset() -> None:
    class Counting:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, p: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return p.mean(0)

        def reset(self) -> None:
            self.calls = 0

    rule = Counting()
    env = mtg_env.parallel_env(suite="quadratic", consensus=rule, action_mode="step_size")
    env.reset(seed=0)
    for _ in range(3):
        env.step({a: [-3.0, -3.0] for a in env.agents})
    assert rule.calls == 3
    env.reset(seed=0)
    assert rule.calls == 0
