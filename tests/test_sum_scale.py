"""The consensus rules' unanimity gain, the game's ``sum_scale``, and learned rules that play with ``sum_scaled``: the
trunk moves under any consensus rule as under ``sum`` when every player proposes alike."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from agents.learned import EngineDriver, LearnedAgent, new_rule
from mtg_env import engine
from mtg_env.consensus import CONSENSUS_RULES, RULE_TABLE, consensus_rule, unanimity_gain
from mtg_env.engine import Game
from tests.conftest import make_env
from tests.test_learned import perturbed_rule

#: The gains the rules' papers give for M players proposing one p: the sum, and the rules that average.
KNOWN = {"sum": "M", "mean": 1.0, "mgda": 1.0, "upgrad": 1.0, "pcgrad": "M", "nash_mtl": 1.0, "imtl_g": 1.0}


@pytest.mark.parametrize("name", CONSENSUS_RULES)
def test_every_named_rule_moves_unanimous_proposals_along_them(name: str) -> None:
    m = max(3, RULE_TABLE[name].min_tasks)
    rule = consensus_rule(name, num_tasks=m)
    gain = unanimity_gain(rule, m)
    assert math.isfinite(gain) and gain > 0
    if name in KNOWN:
        assert gain == pytest.approx(m if KNOWN[name] == "M" else KNOWN[name], rel=1e-6)


def test_the_gain_is_what_the_rule_does_to_any_unanimous_proposal() -> None:
    """γ is measured on one p; a homogeneous rule moves any other unanimous p by the same γ."""
    for name in ("mean", "mgda", "upgrad", "cagrad"):
        rule = consensus_rule(name, num_tasks=4)
        p = torch.tensor([0.3, 2.0, -1.0, 0.0, 5.0], dtype=torch.float64)
        move = rule(p.expand(4, 5).clone())
        torch.testing.assert_close(move, unanimity_gain(rule, 4) * p, rtol=1e-6, atol=1e-12)


class _Opposite:
    """A consensus callable that moves the trunk against its players."""

    def __call__(self, proposals: Tensor) -> Tensor:
        return -proposals.sum(0)


class _Counting:
    """A rule that keeps state on itself (a step count)."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def __call__(self, proposals: Tensor) -> Tensor:
        self.calls += 1
        return proposals.mean(0)


@pytest.mark.parametrize(
    "rule", [_Opposite(), lambda p: torch.zeros(p.shape[1], dtype=p.dtype)], ids=["opposite", "zero"]
)
def test_a_rule_that_does_not_follow_unanimous_players_has_no_gain(rule: object) -> None:
    with pytest.raises(ValueError, match="unanimity gain is undefined"):
        unanimity_gain(rule, 3)  # type: ignore[arg-type]


def test_measuring_the_gain_leaves_a_stateful_rule_as_it_was() -> None:
    rule = _Counting()
    rule(torch.ones(2, 3))
    assert unanimity_gain(rule, 2) == pytest.approx(1.0)
    assert rule.calls == 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_num_tasks_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="num_tasks"):
        unanimity_gain(consensus_rule("mean"), bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- the game and the env
@pytest.mark.parametrize(("consensus", "scale"), [("sum", 1.0), ("mean", 3.0), ("mgda", 3.0), ("upgrad", 3.0)])
@pytest.mark.parametrize("numeric", [True, False])
def test_the_env_tells_every_player_the_games_sum_scale(consensus: str, scale: float, numeric: bool) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, numeric_infos=numeric)
    _, infos = env.reset(seed=0)
    assert env.game.sum_scale == pytest.approx(scale)
    assert all(info["sum_scale"] == env.game.sum_scale for info in infos.values())
    if numeric:  # the same numeric keys every step
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() * 0 for a in env.agents})
        assert all(info["sum_scale"] == env.game.sum_scale for info in infos.values())


def test_a_consensus_without_a_gain_has_no_sum_scale_and_a_scaled_rule_is_refused_naming_it() -> None:
    env = make_env("quadratic", consensus=_Opposite(), num_tasks=2, max_update=None)
    obs, infos = env.reset(seed=0)
    assert env.game.sum_scale is None
    assert all("sum_scale" not in info for info in infos.values())
    rule = new_rule("learned_mlp", sum_scaled=True)
    with pytest.raises(ValueError, match=r"sum_scaled=True.*_Opposite object.*no unanimity gain"):
        EngineDriver(rule, env.game)
    agent = LearnedAgent(rule, "learned_mlp")
    with pytest.raises(ValueError, match=r"sum_scaled=True.*this env's info has no unanimity gain"):
        agent.reset(obs[env.agents[0]], infos[env.agents[0]], env.action_space(env.agents[0]))
    # without the option the rule plays any consensus rule, as before
    EngineDriver(new_rule("learned_mlp"), env.game)


# ------------------------------------------------------------------------------------- the scaled rule's play
def _losses(rule: torch.nn.Module, consensus: str, steps: int = 25) -> Tensor:
    """``[steps, B, M]`` the losses of 3 quadratic games (float64) played by ``rule`` through the engine."""
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64")
    game = Game(env.suite, env.game.consensus, action_mode="update", horizon=steps)
    driver = EngineDriver(rule, game)
    out_losses = []
    with torch.no_grad():
        state, out = engine.reset(game, [0, 1, 2])
        memory = driver.start(out)
        for _ in range(steps):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
            out_losses.append(out.losses)
    return torch.stack(out_losses)


@pytest.mark.parametrize("name", ["learned_mlp", "learned_lstm"])
def test_under_mean_a_sum_scaled_rule_plays_its_game_under_sum(name: str) -> None:
    """mean(M·p_m) = Σ p_m: the game under ``mean`` is the game under ``sum``, to the round-off of one float64
    multiplication and division a step (about M·2⁻⁵² relative), which a converging game does not grow."""
    rule = perturbed_rule(name, sum_scaled=True)
    under_sum = _losses(rule, "sum")
    under_mean = _losses(rule, "mean")
    torch.testing.assert_close(under_mean, under_sum, rtol=1e-10, atol=1e-12)
    plain = _losses(perturbed_rule(name), "mean")  # without the option the trunk moves M times slower
    assert not torch.allclose(plain, under_sum, rtol=1e-3)


def test_under_sum_the_option_changes_nothing() -> None:
    torch.testing.assert_close(
        _losses(perturbed_rule("learned_mlp", sum_scaled=True), "sum"),
        _losses(perturbed_rule("learned_mlp"), "sum"),
        rtol=0,
        atol=0,
    )
