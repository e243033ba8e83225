"""The guard's memory in noisy min-bounded games (``MLPRuleConfig.guard_memory_noisy_bounded``): where the gradients are
estimates and the shortest proposal bounds the move (``mgda`` on minibatches) the rule plays that memory, bit for bit as
the same rule with ``guard_memory`` set to it; everywhere else it plays as without the option, and both forms read the
same games alike."""

from __future__ import annotations

import pytest
import torch

from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.checkpoint import load_rule, pretrained_path, with_options
from agents.learned.rules import MLPRule
from mtg_env import engine
from mtg_env.engine import Game
from tests.conftest import make_env
from tests.test_learned import assert_forms_agree


def _digits() -> MLPRule:
    """The shipped digits specialist without the option (the file before it: its weights and every other option but
    the later ``heads_adam``, whose heads the guard's memory was not chosen with)."""
    rule = with_options("learned_mlp", load_rule(pretrained_path("learned_mlp", "digits"))[1],
                        guard_memory_noisy_bounded=None, heads_adam=False)  # fmt: skip
    assert isinstance(rule, MLPRule) and rule.config.guard and rule.config.guard_memory == 0.9
    return rule


def _trunks(rule: MLPRule, game: Game, steps: int = 40) -> torch.Tensor:
    """The trunks ``[2, n]`` of two games of ``game`` after ``steps`` steps of ``rule``'s batched form."""
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
    with torch.no_grad():
        state, out = engine.reset(game, [0, 1])
        memory = driver.start(out)
        for _ in range(steps):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
    return state.trunk


def _game(consensus: str, minibatch: bool) -> Game:
    options = {} if minibatch else {"batch_size": None}  # batch_size None: the whole train split, exact gradients
    env = make_env("digits", consensus=consensus, max_update=None, **options)
    assert env.game.stochastic_gradients is minibatch
    return env.game


def test_in_a_noisy_min_bounded_game_the_option_is_that_guard_memory() -> None:
    base = _digits()
    game = _game("mgda", minibatch=True)
    optioned = with_options("learned_mlp", base, guard_memory_noisy_bounded=0.3)
    faded = with_options("learned_mlp", base, guard_memory=0.3)
    assert EngineDriver(optioned, game).noisy_bounded
    played = _trunks(optioned, game)
    torch.testing.assert_close(played, _trunks(faded, game), rtol=0, atol=0)
    assert not torch.equal(played, _trunks(base, game))  # the memory plays in these games


@pytest.mark.parametrize(("consensus", "minibatch"), [("sum", True), ("upgrad", True), ("mgda", False)])
def test_elsewhere_the_option_changes_nothing(consensus: str, minibatch: bool) -> None:
    """Linear or exact: the rule plays ``guard_memory``, bit for bit as without the option (in games where that memory
    itself plays: 0.3 everywhere moves the trunks)."""
    base = _digits()
    game = _game(consensus, minibatch)
    optioned = with_options("learned_mlp", base, guard_memory_noisy_bounded=0.3)
    assert not EngineDriver(optioned, game).noisy_bounded
    played = _trunks(base, game)
    torch.testing.assert_close(_trunks(optioned, game), played, rtol=0, atol=0)
    assert not torch.equal(_trunks(with_options("learned_mlp", base, guard_memory=0.3), game), played)


@pytest.mark.parametrize(("consensus", "minibatch", "plays"), [("mgda", True, True), ("mgda", False, False),
                                                               ("sum", True, False)])  # fmt: skip
def test_the_agent_reads_the_infos_as_the_driver_reads_the_game(consensus: str, minibatch: bool, plays: bool) -> None:
    options = {} if minibatch else {"batch_size": None}
    env = make_env("digits", consensus=consensus, max_update=None, **options)
    obs, infos = env.reset(seed=0)
    rule = with_options("learned_mlp", _digits(), guard_memory_noisy_bounded=0.3)
    with torch.no_grad():
        _, out = engine.reset(env.game, [0])
    assert ("guard_fade" in EngineDriver(rule, env.game).start(out)) is plays
    a = env.agents[0]
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs[a], infos[a], env.action_space(a))
    assert ("guard_fade" in agent._memory) is plays
    told = {k: v for k, v in infos[a].items() if k != "stochastic_gradients"}  # an env that does not say: exact
    agent.reset(obs[a], told, env.action_space(a))
    assert "guard_fade" not in agent._memory


def test_the_forms_agree_with_the_option() -> None:
    assert_forms_agree("learned_mlp", "update", {"guard_memory_noisy_bounded": 0.0}, "digits", "mgda", steps=8)


def test_without_the_guard_the_option_is_inert() -> None:
    game = _game("mgda", minibatch=True)
    rule = new_rule("learned_mlp", guard=False, guard_memory_noisy_bounded=0.3)
    driver = EngineDriver(rule, game)
    assert not driver.noisy_bounded
    with torch.no_grad():
        _, out = engine.reset(game, [0])
    assert "guard_fade" not in driver.start(out)


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan"), True, 1, "0.3"])
def test_a_memory_outside_0_to_1_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"guard_memory_noisy_bounded must be None \(guard_memory\) or a float in"):
        new_rule("learned_mlp", guard_memory_noisy_bounded=value)


def test_the_shipped_digits_file_is_the_one_before_with_the_option_alone() -> None:
    """docs/sealed/general/k24's before-file (the digits specialist K13 to K23 scored) plus
    ``guard_memory_noisy_bounded = 0.3`` is the file K24 scored (kept in docs/sealed/stability/slack/ since the
    shipped one took ``guard_slack`` 2: tests/test_learned_stability.py), weights and every other option; the shipped
    portfolio's digits expert is the shipped file."""
    from dataclasses import asdict
    from pathlib import Path

    from agents.learned.portfolio import PortfolioRule

    before = load_rule(Path(__file__).resolve().parents[1] / "docs/sealed/general/k24/learned_mlp_digits_before.pt")[1]
    scored = load_rule(
        Path(__file__).resolve().parents[1] / "docs/sealed/stability/slack/learned_mlp_digits_before.pt"
    )[1]
    shipped = load_rule(pretrained_path("learned_mlp", "digits"))[1]
    assert before.config.guard_memory_noisy_bounded is None and scored.config.guard_memory_noisy_bounded == 0.3
    assert with_options("learned_mlp", before, guard_memory_noisy_bounded=0.3).config == scored.config
    assert shipped.config.guard_memory_noisy_bounded == 0.3
    expected, got = before.state_dict(), scored.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    portfolio = load_rule(pretrained_path("learned_portfolio", "general"))[1]
    assert isinstance(portfolio, PortfolioRule)
    assert asdict(portfolio.experts[portfolio.config.labels.index("digits")].config) == asdict(shipped.config)
