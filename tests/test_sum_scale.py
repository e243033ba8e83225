"""The consensus rules' unanimity gain, the game's ``sum_scale``, and learned rules that play with ``sum_scaled``: the
trunk moves under any consensus rule as under ``sum`` when every player proposes alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from agents.learned import EngineDriver, LearnedAgent, new_rule
from mtg_env import engine
from mtg_env.consensus import CONSENSUS_RULES, RULE_TABLE, consensus_rule, unanimity_gain
from mtg_env.engine import Game
from tests.conftest import make_env
from tests.test_learned import perturbed_rule

#: The gains the rules' papers give for M players proposing one p: the sum, and the rules that average (CAGrad's
#: c = 0.5 adds c·‖g₀‖ along the mean: 1.5).
KNOWN = {
    "sum": "M", "pcgrad": "M", "graddrop": "M", "mean": 1.0, "mgda": 1.0, "upgrad": 1.0, "nash_mtl": 1.0, "imtl_g": 1.0,
    "aligned_mtl": 1.0, "dualproj": 1.0, "random": 1.0, "krum": 1.0, "trimmed_mean": 1.0, "cagrad": 1.5,
}  # fmt: skip
#: Rules without a constant gain: the loss-aware ones (their weights follow the losses) and FairGrad, whose move has
#: a fixed norm whatever the proposals' size (not positively homogeneous).
NO_GAIN = {"uw", "dwa", "famo", "gradvac", "fairgrad", "db_mtl", "gls", "gradnorm"}


def test_every_named_rule_is_known_here() -> None:
    assert set(KNOWN) | NO_GAIN == set(CONSENSUS_RULES)


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_every_named_rule_moves_unanimous_proposals_along_them(name: str) -> None:
    m = max(3, RULE_TABLE[name].min_tasks)
    rule = consensus_rule(name, num_tasks=m)
    gain = unanimity_gain(rule, m, trunk_size=7)
    assert gain == (m if KNOWN[name] == "M" else KNOWN[name])  # rounded to 12 digits: exact
    p = torch.tensor([0.3, 2.0, -1.0, 0.0, 5.0, 1e-3, -4.0], dtype=torch.float64)  # any other unanimous p
    move = rule(p.expand(m, 7).clone()) if name not in ("random", "graddrop") else None
    if move is not None:  # (the randomized rules draw from the env's generator: measured with seed 0 above)
        torch.testing.assert_close(move, gain * p, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NO_GAIN))
def test_a_rule_whose_gain_changes_has_none(name: str) -> None:
    with pytest.raises(ValueError, match=rf"'{name}'.*(weighs the proposals by the losses|not positively homogeneous)"):
        unanimity_gain(consensus_rule(name, num_tasks=3), 3)


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


def test_measuring_the_gain_leaves_the_global_generators_where_they_were() -> None:
    def noisy(proposals: Tensor) -> Tensor:  # a rule of your own that draws from the global generators
        np.random.rand()  # noqa: NPY002
        return proposals.mean(0) * (1.0 + 0.0 * torch.rand(()))

    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    assert unanimity_gain(noisy, 3) == 1.0
    after = (torch.rand(1), np.random.rand())  # noqa: NPY002
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    assert after == (torch.rand(1), np.random.rand())  # noqa: NPY002


def test_the_gain_is_measured_at_the_games_trunk_size() -> None:
    """A rule of your own that only works at its game's trunk size has its gain (a weighted mean here: 0.5)."""
    env = make_env("quadratic", num_tasks=3)
    weights = torch.full((env.trunk_size,), 0.5, dtype=env.game.dtype)
    env = make_env("quadratic", num_tasks=3, consensus=lambda p: p.mean(0) * weights)
    assert env.game.sum_scale == 6.0


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


@pytest.mark.parametrize("consensus", [_Opposite(), "db_mtl", "fairgrad"], ids=["opposite", "db_mtl", "fairgrad"])
def test_where_the_game_has_no_sum_scale_a_scaled_rule_plays_its_proposals_as_they_are(consensus: object) -> None:
    """No info key, and both forms play the rule's own proposals (the shipped files play every consensus rule)."""
    env = make_env("regression", consensus=consensus, num_tasks=3, max_update=None)
    obs, infos = env.reset(seed=0)
    assert env.game.sum_scale is None
    assert all("sum_scale" not in info for info in infos.values())
    rule = perturbed_rule("learned_mlp", sum_scaled=True)
    assert EngineDriver(rule, env.game).trunk_scale == 1.0
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs[env.agents[0]], infos[env.agents[0]], env.action_space(env.agents[0]))
    assert agent.trunk_scale == 1.0
    plain = LearnedAgent(perturbed_rule("learned_mlp"), "learned_mlp")
    plain.reset(obs[env.agents[0]], infos[env.agents[0]], env.action_space(env.agents[0]))
    a = env.agents[0]
    np.testing.assert_array_equal(agent.act(obs[a], infos[a]), plain.act(obs[a], infos[a]))


def test_a_rule_without_the_option_never_measures_the_gain() -> None:
    calls = []

    def logged(proposals: Tensor) -> Tensor:
        calls.append(proposals.shape)
        return proposals.sum(0)

    suite = make_env("quadratic", num_tasks=2).suite
    EngineDriver(new_rule("learned_mlp"), Game(suite, logged, action_mode="update", horizon=5))
    assert calls == []


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
