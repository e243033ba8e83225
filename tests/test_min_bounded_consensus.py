"""Whether the shortest proposal bounds a consensus rule's move (``mtg_env.consensus.is_min_bounded``,
``Game.min_bounded_consensus``, the env's info ``min_bounded_consensus``), and the learned MLP rule's AMSGrad share
that plays only under such a rule (``MLPRuleConfig.adam_min_bounded_only``, with ``trunk_adam_beta1``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.checkpoint import load_rule, pretrained_path, with_options
from agents.learned.rule_configs import MLPRuleConfig
from agents.learned.rules import MLPRule
from mtg_env import engine
from mtg_env.consensus import CONSENSUS_RULES, consensus_rule, is_min_bounded
from mtg_env.engine import Game
from tests.conftest import make_env
from tests.test_sum_scale import _Counting
from tests.test_sum_scale import _losses as _game_losses

SHAPES = [(2, 4), (3, 4), (5, 16), (3, 5), (3, 13), (5, 2), (4, 1), (8, 1)]


@pytest.mark.parametrize("name", sorted(CONSENSUS_RULES))
@pytest.mark.parametrize(("m", "n"), SHAPES)
def test_mgda_is_the_min_bounded_named_rule(name: str, m: int, n: int) -> None:
    """aligned_mtl scales its move to the proposals' smallest singular value, but treats one too small as 0 (rank
    deficient): on rows of norms 1e-4, 0.86 and 9e3 that agree it moves 700 times the shortest."""
    if name in ("krum", "trimmed_mean") and m < 3:
        pytest.skip("krum and trimmed_mean need at least 3 tasks")
    assert is_min_bounded(consensus_rule(name, num_tasks=m), m, n) is (name == "mgda")


@pytest.mark.parametrize("n", [1, 4, 16])
def test_mgdas_move_is_never_longer_than_its_shortest_proposal(n: int) -> None:
    """The theorem the probe checks, on random proposals the probe does not use: the min-norm point d of the
    proposals' convex hull has ⟨d, p_m⟩ ≥ ‖d‖² for every m, so ‖d‖ ≤ ‖p_m‖."""
    gen = torch.Generator().manual_seed(3)
    for m in (2, 3, 5):
        rule = consensus_rule("mgda", num_tasks=m)
        for _ in range(20):
            p = torch.randn(m, n, generator=gen, dtype=torch.float64) * torch.rand(m, 1, generator=gen) * 10
            d = rule(p)
            assert float(d.norm()) <= float(p.norm(dim=1).min()) * (1 + 1e-12)
            assert bool(((p @ d) >= d @ d - 1e-12 * float(p.norm()) ** 2).all())


@pytest.mark.parametrize("name", ["sum", "mean", "upgrad", "mgda"])
def test_with_one_player_a_rule_that_moves_by_the_proposal_is_min_bounded(name: str) -> None:
    assert is_min_bounded(consensus_rule(name, num_tasks=1), 1, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_probe_works_in_the_games_dtype(dtype: torch.dtype) -> None:
    """Its slack is in the dtype's ulps: mgda's solver in float32 overshoots the shortest row by about 2e-8."""
    assert is_min_bounded(consensus_rule("mgda", num_tasks=3), 3, 4, dtype=dtype)
    assert is_min_bounded(consensus_rule("mgda", num_tasks=5), 5, 16, dtype=dtype)
    assert not is_min_bounded(consensus_rule("sum"), 3, 4, dtype=dtype)
    assert not is_min_bounded(consensus_rule("upgrad", num_tasks=3), 3, 4, dtype=dtype)


def _shortest(proposals: Tensor) -> Tensor:
    return proposals[proposals.norm(dim=1).argmin()]


def _mean_capped(proposals: Tensor) -> Tensor:
    """The mean, shortened to the shortest proposal's norm where it is longer."""
    mean, cap = proposals.mean(0), proposals.norm(dim=1).min()
    return mean * torch.clamp(cap / mean.norm().clamp_min(1e-300), max=1.0)


def _global_random(proposals: Tensor) -> Tensor:  # a random row, from the global generator (the generators and the
    # rule left as they were, and bad sizes: tests/test_linear_consensus.py, for both probes)
    return proposals[int(torch.randint(proposals.shape[0], (1,)))]


@pytest.mark.parametrize(
    ("rule", "bounded"),
    [
        (_shortest, True),
        (_mean_capped, True),
        (lambda p: 0.5 * consensus_rule("mgda", num_tasks=3)(p), True),
        (lambda p: (1.0 + 1e-9) * _shortest(p), False),  # beyond the slack
        (lambda p: (1.0 + 1e-14) * _shortest(p), True),  # within 1e3 ulps of float64 (2.2e-13)
        (lambda p: p.mean(0) * 1e-6, False),  # small moves are not enough: the probe's rows are up to 1e8 apart
        (lambda p: p.mean(0) * 1e-9, True),  # a finite probe: a rule this timid passes it
        (_global_random, False),  # not the shortest row, at some step
        (lambda p: _shortest(p).unsqueeze(0), False),  # a wrong shape: [1, n]
        (lambda p: _shortest(p) * float("nan"), False),
        (_Counting(), False),  # keeps state: its moves could follow it
    ],
    ids=[
        "shortest",
        "mean_capped",
        "half_mgda",
        "over",
        "ulps",
        "small_mean",
        "timid_mean",
        "random_row",
        "shape",
        "nan",
        "stateful",
    ],
)
def test_a_rule_of_your_own_is_min_bounded_only_if_it_never_outruns_its_shortest_proposal(
    rule: object, bounded: bool
) -> None:
    assert is_min_bounded(rule, 3, 4) is bounded  # type: ignore[arg-type]


def test_a_loss_aware_rule_is_not_counted() -> None:
    assert not is_min_bounded(consensus_rule("db_mtl", num_tasks=3), 3, 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_a_half_dtype_is_refused_by_both_probes(dtype: torch.dtype) -> None:
    """Their tolerances are in float32's or float64's ulps: in bfloat16 1e3 ulps is a factor 8.8, and imtl_g (2.0
    times its shortest proposal) would pass (found in review)."""
    from mtg_env.consensus import is_linear

    for probe in (is_min_bounded, is_linear):
        with pytest.raises(ValueError, match=r"dtype must be torch\.float32 or torch\.float64"):
            probe(consensus_rule("mgda", num_tasks=3), 3, 4, dtype=dtype)


# ------------------------------------------------------------------------------------- the game and the env
@pytest.mark.parametrize(("consensus", "bounded"), [("sum", False), ("mean", False), ("mgda", True), ("upgrad", False)])
@pytest.mark.parametrize("numeric", [True, False])
def test_the_env_tells_every_player_whether_the_shortest_proposal_bounds_the_move(
    consensus: str, bounded: bool, numeric: bool
) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, numeric_infos=numeric)
    _, infos = env.reset(seed=0)
    assert env.game.min_bounded_consensus is bounded
    if numeric:  # the same numeric keys every step, as numbers
        assert all(info["min_bounded_consensus"] == float(bounded) for info in infos.values())
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() * 0 for a in env.agents})
        assert all(info["min_bounded_consensus"] == float(bounded) for info in infos.values())
    else:
        assert all(info["min_bounded_consensus"] is bounded for info in infos.values())


@pytest.mark.parametrize("consensus", ["sum", "mgda", "db_mtl"])
def test_the_vector_env_tells_each_game_what_the_single_env_tells_its_players(consensus: str) -> None:
    import mtg_env

    venv = mtg_env.vector_env(num_games=3, suite="regression", consensus=consensus, num_tasks=3)
    _, infos = venv.reset(seed=0)
    env = make_env("regression", consensus=consensus, num_tasks=3)
    _, single = env.reset(seed=0)
    assert infos["min_bounded_consensus"].dtype == torch.bool
    expected = bool(single[env.agents[0]]["min_bounded_consensus"])
    assert infos["min_bounded_consensus"].tolist() == [expected] * 3
    assert expected is (consensus == "mgda")


def test_a_rule_that_fails_on_the_test_matrices_is_not_min_bounded_and_the_game_still_plays() -> None:
    def picky(proposals: Tensor) -> Tensor:
        if bool((proposals.abs() > 1e3).any()):  # the test matrices reach 1e4
            raise ValueError("picky: a proposal above 1e3")
        return _shortest(proposals)

    env = make_env("quadratic", consensus=picky, num_tasks=3)
    _, infos = env.reset(seed=0)
    assert env.game.min_bounded_consensus is False
    assert all(info["min_bounded_consensus"] == 0.0 for info in infos.values())
    env.step({a: env.action_space(a).sample() * 0 for a in env.agents})


# ------------------------------------------------------------------------------------- the gated share
def _quadratic(**options: object) -> MLPRule:
    """The shipped quadratic MLP rule without its AMSGrad share (its trunk network's share row and α_A dropped), with
    ``options`` added."""
    from dataclasses import replace

    _, rule, _ = load_rule(pretrained_path("learned_mlp", "quadratic"))
    assert isinstance(rule, MLPRule)
    unshared = replace(
        rule.config, trunk_adam=False, trunk_adam_beta1=None, adam_min_bounded_only=False, balance_min_bounded=False
    )
    base = MLPRule(replace(unshared, init_trunk_adam_lr=MLPRuleConfig.init_trunk_adam_lr))
    state = {k: v for k, v in rule.state_dict().items() if k != "trunk_adam_log_lr"}
    last = len(base.trunk_net) - 1
    for key in (f"trunk_net.{last}.weight", f"trunk_net.{last}.bias"):
        state[key] = state[key][:2]  # (log step, momentum logit): the share's row goes
    base.load_state_dict(state)
    out = with_options("learned_mlp", base, **options) if options else base
    assert isinstance(out, MLPRule)
    return out


SHARE = {"trunk_adam": True, "init_trunk_adam_lr": 0.3, "trunk_adam_beta1": 0.0}


def test_the_file_before_the_share_is_the_shipped_file_without_it() -> None:
    """docs/sealed/general/k12's before-file, which K12 scored beside the shipped one, is what _quadratic() builds
    (with the guard slack of then: the shipped file took ``guard_slack`` 2 after K24)."""
    from pathlib import Path

    before = Path(__file__).resolve().parents[1] / "docs/sealed/general/k12/learned_mlp_quadratic_before.pt"
    _, rule, _ = load_rule(before)
    then = _quadratic(guard_slack=10.0)
    expected, got = then.state_dict(), rule.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert rule.config == then.config


@pytest.mark.parametrize("consensus", ["sum", "mean", "upgrad"])
def test_the_shipped_file_plays_as_the_file_before_through_the_env(consensus: str) -> None:
    """One LearnedAgent a player, 30 steps of a float64 game: the same losses bit for bit."""
    from agents.runner import run_episode

    _, shipped, _ = load_rule(pretrained_path("learned_mlp", "quadratic"))

    def losses(rule: MLPRule) -> np.ndarray:
        env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_cycles=30)
        history = run_episode(env, {a: LearnedAgent(rule, "learned_mlp") for a in env.possible_agents}, seed=5)
        return np.asarray(history.losses)

    assert isinstance(shipped, MLPRule)
    np.testing.assert_array_equal(losses(shipped), losses(_quadratic()))


@pytest.mark.parametrize("consensus", ["sum", "mean", "upgrad"])
def test_where_the_shortest_proposal_does_not_bound_the_move_the_gated_share_is_off(consensus: str) -> None:
    gated = _game_losses(_quadratic(**SHARE, adam_min_bounded_only=True), consensus, steps=40)
    torch.testing.assert_close(gated, _game_losses(_quadratic(), consensus, steps=40), rtol=0, atol=0)
    ungated = _game_losses(_quadratic(**SHARE), consensus, steps=40)
    assert not torch.allclose(gated, ungated, rtol=1e-6)  # the share would have played here


def test_under_mgda_the_gated_share_plays_as_the_share() -> None:
    gated = _game_losses(_quadratic(**SHARE, adam_min_bounded_only=True), "mgda", steps=40)
    torch.testing.assert_close(gated, _game_losses(_quadratic(**SHARE), "mgda", steps=40), rtol=0, atol=0)
    assert not torch.allclose(gated, _game_losses(_quadratic(), "mgda", steps=40), rtol=1e-6)  # it plays


def test_with_beta1_zero_the_shares_first_moment_is_the_gradient() -> None:
    """trunk_adam_beta1 = 0: an RMSprop step on the AMSGrad maximum (the moment is the current trunk gradient)."""
    env = make_env("quadratic", consensus="mgda", num_tasks=3, dtype="float64")
    game = Game(env.suite, env.game.consensus, action_mode="update", horizon=10)
    driver = EngineDriver(_quadratic(**SHARE, adam_min_bounded_only=True), game)
    with torch.no_grad():
        state, out = engine.reset(game, [0, 1])
        memory = driver.start(out)
        for _ in range(3):
            g_trunk = driver.blocks.split(driver.gradients(out))[1].flatten(1)
            actions, memory = driver.act(state, out, memory)
            torch.testing.assert_close(memory["trunk_m"], g_trunk.to(memory["trunk_m"].dtype), rtol=0, atol=0)
            state, out = engine.step(game, state, actions)


@pytest.mark.parametrize(("consensus", "on"), [("mgda", 1.0), ("upgrad", 0.0), ("sum", 0.0)])
def test_the_agent_reads_the_infos_as_the_driver_reads_the_game(consensus: str, on: float) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    rule = _quadratic(**SHARE, adam_min_bounded_only=True)
    driver = EngineDriver(rule, env.game)
    with torch.no_grad():
        _, out = engine.reset(env.game, [0])
    assert float(driver.start(out)["adam_on"][0, 0]) == on
    a = env.agents[0]
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs[a], infos[a], env.action_space(a))
    assert float(agent._memory["adam_on"][0, 0]) == on


def test_without_the_infos_an_agent_plays_without_the_share() -> None:
    """An env before the key (or a wrapper that drops it) tells the agent nothing: the share stays off."""
    env = make_env("quadratic", consensus="mgda", num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    info = {k: v for k, v in infos[a].items() if k != "min_bounded_consensus"}
    agent = LearnedAgent(_quadratic(**SHARE, adam_min_bounded_only=True), "learned_mlp")
    agent.reset(obs[a], info, env.action_space(a))
    assert float(agent._memory["adam_on"][0, 0]) == 0.0


def test_a_rule_without_the_option_never_measures_the_consensus() -> None:
    calls = []

    def logged(proposals: Tensor) -> Tensor:
        calls.append(proposals.shape)
        return _shortest(proposals)

    suite = make_env("quadratic", num_tasks=2).suite
    game = Game(suite, logged, action_mode="update", horizon=5)
    for rule in (new_rule("learned_mlp"), new_rule("learned_mlp", trunk_adam=True)):
        assert EngineDriver(rule, game).adam_allowed is True  # no share, or one that plays everywhere
    assert calls == []
    assert EngineDriver(new_rule("learned_mlp", trunk_adam=True, adam_min_bounded_only=True), game).adam_allowed
    assert calls  # measured: the shortest row is min-bounded, and not linear


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"trunk_adam_beta1": 0.0}, "need trunk_adam=True"),
        ({"adam_min_bounded_only": True}, "need trunk_adam=True"),
        ({"trunk_adam": True, "trunk_adam_beta1": 1.0}, "trunk_adam_beta1 must be"),
        ({"trunk_adam": True, "trunk_adam_beta1": -0.1}, "trunk_adam_beta1 must be"),
        ({"trunk_adam": True, "trunk_adam_beta1": 0}, "trunk_adam_beta1 must be"),  # an int is not coerced
    ],
)
def test_the_shares_options_are_checked(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        new_rule("learned_mlp", **options)


@pytest.mark.parametrize(("consensus", "plays"), [("mgda", True), ("sum", False), ("mean", False), ("upgrad", False)])
def test_the_shipped_quadratic_specialist_plays_its_share_only_under_mgda(consensus: str, plays: bool) -> None:
    _, rule, meta = load_rule(pretrained_path("learned_mlp", "quadratic"))
    assert isinstance(rule, MLPRule) and rule.config.adam_min_bounded_only and rule.config.trunk_adam_beta1 == 0.0
    assert meta["added_options"]["adam_min_bounded_only"] is True
    env = make_env("quadratic", consensus=consensus, num_tasks=3)
    assert EngineDriver(rule, env.game).adam_allowed is plays
