"""Balanced trunk proposals under a min-norm consensus rule (``MLPRuleConfig.balance_min_bounded``) and the common
gradient scale G the env reports for them (``trunk_grad_norm_mean``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtg_env
from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.blocks import Blocks
from agents.learned.checkpoint import load_rule, pretrained_path, with_options
from agents.learned.rules import MLPRule
from agents.runner import run_episode
from mtg_env import engine
from mtg_env.engine import Game, trunk_grad_norm_mean
from tests.conftest import make_env
from tests.test_learned import assert_forms_agree
from tests.test_sum_scale import _losses as _game_losses

BALANCED = {"trunk_adam": True, "balance_min_bounded": True}


def test_g_is_the_mean_over_the_players_of_their_trunk_gradients_norms() -> None:
    jacobian = torch.tensor([[[3.0, 4.0], [0.0, 1.0]], [[0.0, 0.0], [6.0, 8.0]]], dtype=torch.float64)
    torch.testing.assert_close(trunk_grad_norm_mean(jacobian), torch.tensor([3.0, 5.0], dtype=torch.float64))


@pytest.mark.parametrize("numeric", [True, False])
def test_the_env_tells_every_player_g_at_reset_and_at_every_step(numeric: bool) -> None:
    env = make_env("digits", consensus="mgda", numeric_infos=numeric)
    obs, infos = env.reset(seed=1)
    for _ in range(3):
        norms = []
        for a in env.agents:
            slot = env.head_slot(a)
            norms.append(np.linalg.norm(obs[a][slot : slot + env.trunk_size].astype(np.float64)))
        values = {float(infos[a]["trunk_grad_norm_mean"]) for a in env.agents}
        assert len(values) == 1  # the same for every player
        np.testing.assert_allclose(values.pop(), np.mean(norms), rtol=1e-5)  # the observations are float32
        obs, _, _, _, infos = env.step({a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents})


def test_the_vector_env_reports_each_games_g_as_the_single_env_does() -> None:
    venv = mtg_env.vector_env(num_games=2, suite="quadratic", consensus="mgda", num_tasks=3)
    _, vinfos = venv.reset(seed=4)
    for b in range(2):
        env = mtg_env.parallel_env(suite="quadratic", consensus="mgda", num_tasks=3)
        _, infos = env.reset(seed=4 + b)
        assert float(vinfos["trunk_grad_norm_mean"][b]) == pytest.approx(infos["task_0"]["trunk_grad_norm_mean"])
    actions = torch.zeros(2, venv.num_tasks, venv.action_size, dtype=venv.dtype)
    _, _, _, _, vinfos = venv.step(actions)
    torch.testing.assert_close(vinfos["trunk_grad_norm_mean"], trunk_grad_norm_mean(venv.state.jacobian))


def _two_players(balanced: bool, scale: float) -> torch.Tensor:
    """One call of a balancing rule on two players whose trunk gradients point alike, the second ``scale`` times
    as long: their trunk proposals ``[2, n]``."""
    rule = new_rule("learned_mlp", **BALANCED)
    assert isinstance(rule, MLPRule)
    h, n = 3, 5
    is_trunk = torch.tensor([False] * 2 * h + [True] * 2 * n)
    groups = torch.tensor([0] * h + [2] * h + [1] * n + [3] * n)
    blocks = Blocks(is_trunk, groups, 4)
    direction = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])
    g = torch.cat([torch.ones(2 * h), direction, scale * direction]).unsqueeze(0)
    state = rule.init_state(g, blocks, balanced=balanced)
    common = torch.linalg.vector_norm(g[:, 2 * h :].view(1, 2, n), dim=2).mean(1, keepdim=True)
    state = state | {"trunk_grad_norm_mean": common}  # read whenever the rule has the option (used where on)
    features = torch.zeros(1, 4, 8)
    with torch.no_grad():
        update, _ = rule(g, features, blocks, torch.zeros(1, dtype=torch.long), state)
    return blocks.split(update)[1][0]


def test_balanced_a_player_whose_gradient_is_ten_times_as_long_proposes_the_same_step() -> None:
    """MGDA weighs the players by their proposals: balanced, the long gradient loses no say (unbalanced it proposes
    ten times as far)."""
    balanced = _two_players(True, 10.0)
    torch.testing.assert_close(balanced[0], balanced[1], rtol=1e-6, atol=0)
    plain = _two_players(False, 10.0)
    ratio = torch.linalg.vector_norm(plain[1]) / torch.linalg.vector_norm(plain[0])
    assert 5.0 < float(ratio) <= 10.0 + 1e-4  # the heavy ball's part is 10x, the share's (scale-free) 1x


@pytest.mark.parametrize("consensus", ["sum", "mean", "upgrad"])
def test_where_the_shortest_proposal_does_not_bound_the_move_nothing_changes(consensus: str) -> None:
    balanced = new_rule("learned_mlp", **BALANCED)
    plain = with_options("learned_mlp", balanced, balance_min_bounded=False)
    torch.testing.assert_close(_game_losses(balanced, consensus), _game_losses(plain, consensus), rtol=0, atol=0)


def test_under_mgda_the_balance_plays() -> None:
    balanced = new_rule("learned_mlp", **BALANCED)
    plain = with_options("learned_mlp", balanced, balance_min_bounded=False)
    assert not torch.allclose(_game_losses(balanced, "mgda"), _game_losses(plain, "mgda"), rtol=1e-6)


@pytest.mark.parametrize("consensus", ["mgda", "upgrad"])
def test_the_forms_agree_with_the_balance(consensus: str) -> None:
    """The agent reads G from the infos, the driver from the step's Jacobian: the same actions."""
    assert_forms_agree("learned_mlp", "update", BALANCED, "regression", consensus)


@pytest.mark.parametrize(("consensus", "on"), [("mgda", 1.0), ("upgrad", 0.0), ("sum", 0.0)])
def test_the_agent_reads_the_infos_as_the_driver_reads_the_game(consensus: str, on: float) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    rule = new_rule("learned_mlp", **BALANCED)
    with torch.no_grad():
        _, out = engine.reset(env.game, [0])
    assert ("balance_on" in EngineDriver(rule, env.game).start(out)) is bool(on)
    a = env.agents[0]
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs[a], infos[a], env.action_space(a))
    assert ("balance_on" in agent._memory) is bool(on)


@pytest.mark.parametrize("key", ["min_bounded_consensus", "trunk_grad_norm_mean"])
def test_an_env_that_does_not_say_turns_the_balance_off(key: str) -> None:
    """Off, and the agent plays on without G: as the rule without the option does."""
    env = make_env("quadratic", consensus="mgda", num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    rule = new_rule("learned_mlp", **BALANCED)
    agent = LearnedAgent(rule, "learned_mlp")
    plain = LearnedAgent(with_options("learned_mlp", rule, balance_min_bounded=False), "learned_mlp")
    told = {k: v for k, v in infos[a].items() if k != key}
    agent.reset(obs[a], told, env.action_space(a))
    assert "balance_on" not in agent._memory
    plain.reset(obs[a], told, env.action_space(a))
    for _ in range(3):
        bare = {k: v for k, v in told.items() if k != "trunk_grad_norm_mean"}
        np.testing.assert_array_equal(agent.act(obs[a], bare), plain.act(obs[a], bare))


@pytest.mark.parametrize("consensus", ["sum", "upgrad"])
def test_where_the_balance_is_off_the_agent_needs_no_g(consensus: str) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    agent = LearnedAgent(load_rule(pretrained_path("learned_mlp", "quadratic"))[1], "learned_mlp")
    agent.reset(obs[a], infos[a], env.action_space(a))
    assert np.isfinite(agent.act(obs[a], {})).all()  # an info without G (or without anything) plays


def test_an_info_without_g_mid_game_is_refused_naming_the_agent() -> None:
    env = make_env("quadratic", consensus="mgda", num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    agent = LearnedAgent(new_rule("learned_mlp", **BALANCED), "learned_mlp[balanced]")
    agent.reset(obs[a], infos[a], env.action_space(a))
    info = {k: v for k, v in infos[a].items() if k != "trunk_grad_norm_mean"}
    with pytest.raises(ValueError, match=r"learned_mlp\[balanced\]: the env's info lacks 'trunk_grad_norm_mean'"):
        agent.act(obs[a], info)


def test_a_balancing_rule_called_without_g_is_refused() -> None:
    env = make_env("quadratic", consensus="mgda", num_tasks=2)
    game = Game(env.suite, env.game.consensus, action_mode="update", horizon=5)
    driver = EngineDriver(new_rule("learned_mlp", **BALANCED), game)
    with torch.no_grad():
        _, out = engine.reset(game, [0])
    g = driver.gradients(out)
    state = driver.start(out)
    with pytest.raises(ValueError, match=r"add state\['trunk_grad_norm_mean'\]"):
        driver.rule(g, out.features[:, driver.block_task], driver.blocks, torch.zeros(1, dtype=torch.long), state)


def test_the_option_is_a_bool() -> None:
    with pytest.raises(TypeError, match="balance_min_bounded must be a bool"):
        new_rule("learned_mlp", balance_min_bounded=1)


def test_a_rule_without_the_option_never_measures_the_consensus() -> None:
    calls = []

    def logged(proposals: torch.Tensor) -> torch.Tensor:
        calls.append(proposals.shape)
        return proposals.mean(1)

    game = Game(make_env("quadratic", num_tasks=2).suite, logged, action_mode="update", horizon=5)
    assert EngineDriver(new_rule("learned_mlp", trunk_adam=True), game).balanced is False
    assert calls == []


@pytest.mark.parametrize("name", ["quadratic", "regression", "digits", "general"])
@pytest.mark.parametrize(("consensus", "plays"), [("mgda", True), ("sum", False), ("upgrad", False)])
def test_the_shipped_files_balance_only_under_mgda(name: str, consensus: str, plays: bool) -> None:
    _, rule, _ = load_rule(pretrained_path("learned_mlp", name))
    assert rule.config.balance_min_bounded
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_cycles=3, max_update=None)
    history = run_episode(env, {a: LearnedAgent(rule, "learned_mlp") for a in env.possible_agents}, seed=0)
    assert np.isfinite(np.asarray(history.losses)).all()
    assert EngineDriver(rule, env.game).balanced is plays


@pytest.mark.parametrize("name", ["quadratic", "regression", "digits", "general"])
def test_the_files_before_the_balance_are_the_shipped_files_without_it(name: str) -> None:
    """docs/sealed/general/k13's before-files, which K13 scored beside the files shipped then (the regression
    specialist K13 scored is docs/sealed/general/k16's before-file: K16 replaced it; the digits specialist is k24's:
    it took ``guard_memory_noisy_bounded`` after K23; the quadratic specialist is docs/sealed/stability/slack's: it
    took ``guard_slack`` 2 after K24)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs/sealed/general"
    _, old, _ = load_rule(docs / f"k13/learned_mlp_{name}_before.pt")
    then = {"regression": docs / "k16/learned_mlp_regression_before.pt",
            "digits": docs / "k24/learned_mlp_digits_before.pt",
            "quadratic": docs.parent / "stability/slack/learned_mlp_quadratic_before.pt"}.get(name)  # fmt: skip
    _, shipped, _ = load_rule(then or pretrained_path("learned_mlp", name))
    unbalanced = with_options("learned_mlp", shipped, balance_min_bounded=False)
    assert old.config == unbalanced.config
    expected, got = unbalanced.state_dict(), old.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


#: The trunk proposals' gradients of :func:`_restart` (blocks 1, 3, 5: 1, 4 and 0 long), after three heads' (0.5 each).
_G = torch.tensor([[0.5, 0.5, 0.5, 0.6, 0.8, 0.0, 4.0, 0.0, 0.0]], dtype=torch.float64)


def _restart(
    floor: torch.Tensor | None, lift_growing: bool = True, **state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The guard's restart of three capped trunk proposals (armed, L̂ = 4, no move seen unless ``state`` says), whose
    gradients are 1, 4 and 0 long (:data:`_G`): the guarded heads, trunk proposals and each block's recorded move (the
    next secant's divisor)."""
    from agents.learned.guard import GuardConfig, apply_guard, guard_state

    h, n = 1, 2
    is_trunk = torch.tensor([False] * 3 * h + [True] * 3 * n)
    blocks = Blocks(is_trunk, torch.tensor([0, 2, 4, 1, 1, 3, 3, 5, 5]), 6)
    g = _G
    fresh = guard_state(g, 6, torch.float64) | {
        "guard_l": torch.full((1, 6), 4.0, dtype=torch.float64),
        "guard_seen": torch.ones(1, 6, dtype=torch.float64),
        "guard_armed": torch.ones(1, 6, dtype=torch.float64),
    }
    heads, trunk = blocks.split(-100.0 * g + 0.01)  # far beyond the cap c·‖g‖ / L̂: every proposal is capped
    (guarded_heads, guarded), capped, after = apply_guard(
        (heads, trunk), None, g, blocks, torch.zeros(1, dtype=torch.float64), fresh | state,
        GuardConfig(guard_step=1.0), restart=True, restart_floor=floor, lift_growing=lift_growing,
    )  # fmt: skip
    assert capped[0, blocks.trunk_block].all()
    return guarded_heads[0], guarded[0], after["guard_s"][0]


def test_balanced_a_capped_player_whose_gradient_is_short_restarts_as_if_it_were_g_long() -> None:
    """A restart is a gradient step at the cap, c·g / L̂. Under MGDA the shortest proposal bounds every player's move,
    so balanced, a restart is never shorter than a gradient G long; a longer gradient restarts as it did, a zero one
    stays at rest, the heads are untouched, and the move recorded for the next secant is the one played."""
    plain_heads, plain, plain_moved = _restart(None)
    heads, lifted, moved = _restart(torch.tensor([[2.5]], dtype=torch.float64))
    torch.testing.assert_close(plain, torch.tensor([[-0.15, -0.2], [0.0, -1.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(lifted[0], 2.5 * plain[0], rtol=1e-15, atol=0)  # ‖g‖ = 1 < G: as if 2.5 long
    assert torch.equal(lifted[1], plain[1]) and torch.equal(lifted[2], plain[2])  # ‖g‖ = 4 > G; ‖g‖ = 0
    assert torch.equal(heads, plain_heads)
    trunks = torch.tensor([1, 3, 5])  # the trunk proposals' blocks
    torch.testing.assert_close(moved[trunks], torch.linalg.vector_norm(lifted, dim=1), rtol=1e-15, atol=0)
    torch.testing.assert_close(plain_moved[trunks], torch.tensor([0.25, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"restart_floor must be \[B, 1\]"):
        _restart(torch.tensor([2.5], dtype=torch.float64))


def test_with_lift_growing_false_a_restart_whose_gradient_grew_is_not_lifted() -> None:
    """``lift_growing=False``: a capped player whose gradient grew over its last move (block 1: 0.5 -> 1) restarts at
    the cap, c·g / L̂, not lifted to G; one whose gradient shrank (block 3: 8 -> 4) is lifted as before, and the
    default lifts both."""
    ones = torch.ones(1, 6, dtype=torch.float64)
    moved = {  # every block moved last step with no change of gradient: L̂ = 0.9 · 4 = 3.6 (the last estimate, fading)
        "guard_g": _G.clone(), "guard_s": ones,
        "guard_n": torch.tensor([[1.0, 0.5, 1.0, 8.0, 1.0, 1.0]], dtype=torch.float64),
    }  # fmt: skip
    floor = torch.tensor([[5.0]], dtype=torch.float64)
    plain, lifted, held = (_restart(f, lift, **moved)[1] for f, lift in ((None, True), (floor, True), (floor, False)))
    torch.testing.assert_close(plain[0], -_G[0, 3:5] / 3.6, rtol=1e-15, atol=0)
    torch.testing.assert_close(lifted[0], 5.0 * plain[0], rtol=1e-15, atol=0)  # grew, lifted by default
    assert torch.equal(held[0], plain[0])  # grew: held at the cap
    torch.testing.assert_close(held[1], 1.25 * plain[1], rtol=1e-15, atol=0)  # shrank: lifted (G / ‖g‖ = 5 / 4)
    assert torch.equal(held[1], lifted[1]) and torch.equal(held[2], lifted[2])


def test_lift_growing_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="lift_growing must be a bool, got 0"):
        new_rule("learned_mlp", balance_min_bounded=True, lift_growing=0)


@pytest.mark.parametrize("suite", ["regression", "digits"])
def test_the_forms_agree_where_restarts_are_lifted(suite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule's trunk step 30x: the heavy ball overshoots, the guard restarts, and the lift changes restarts; the
    agent (G from the infos) and the driver (G from the Jacobian) still play the same actions."""
    import agents.learned.guard as guard
    import agents.learned.rules as rules

    lifted: list[bool] = []

    def spy(*args: object, **kwargs: object) -> object:
        out = guard.apply_guard(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("restart_floor") is not None:
            plain = guard.apply_guard(*args, **(kwargs | {"restart_floor": None}))  # type: ignore[arg-type]
            lifted.append(not torch.equal(out[0][1], plain[0][1]))
        return out

    monkeypatch.setattr(rules, "apply_guard", spy)
    assert_forms_agree("learned_mlp", "update", BALANCED, suite, "mgda", steps=12, trunk_scale=30.0)
    assert sum(lifted) >= 4
