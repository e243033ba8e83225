"""Whether a consensus rule is linear (``mtg_env.consensus.is_linear``, ``Game.linear_consensus``, the env's info
``linear_consensus``), and the learned MLP rule's trunk boost that plays only under a linear one
(``MLPRuleConfig.boost_linear_only``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.checkpoint import load_rule, pretrained_path
from agents.learned.rules import MLPRule
from mtg_env import engine
from mtg_env.consensus import CONSENSUS_RULES, apply_rule, consensus_rule, is_linear, is_min_bounded
from mtg_env.engine import Game
from tests.conftest import make_env
from tests.test_sum_scale import _Counting
from tests.test_sum_scale import _losses as _game_losses

#: The named rules that are a fixed weighted sum of the proposals; every other named rule projects, selects, clips,
#: bargains, draws its weights or follows the losses.
LINEAR = {"sum", "mean"}


@pytest.mark.parametrize("name", sorted(CONSENSUS_RULES))
@pytest.mark.parametrize(("m", "n"), [(3, 4), (5, 16), (3, 5), (5, 2), (4, 1), (8, 1), (3, 13)])
def test_sum_and_mean_are_the_linear_named_rules(name: str, m: int, n: int) -> None:
    """At the shapes of games, including more players than trunk coordinates (where conflicting rows put 0 in their
    convex hull, and the min-norm rules give 0 on such matrices) and trunk sizes where krum picks one row throughout
    a weaker probe (found in review: mgda at (5, 2) and (4, 1), krum at (3, 5) and (3, 13) read as linear)."""
    if name in ("krum", "trimmed_mean") and m < 3:
        pytest.skip("krum and trimmed_mean need at least 3 tasks")
    linear = name in LINEAR or (name == "aligned_mtl" and n == 1)  # aligned_mtl on one coordinate: the mean (below)
    assert is_linear(consensus_rule(name, num_tasks=m), m, n) == linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_probe_works_in_the_games_dtype(dtype: torch.dtype) -> None:
    """Its tolerance is in the dtype's ulps (found in review: a fixed 1e-10 read sum as nonlinear in float32)."""
    assert is_linear(consensus_rule("sum"), 3, 4, dtype=dtype)
    assert is_linear(consensus_rule("mean"), 5, 16, dtype=dtype)
    assert is_linear(lambda p: (torch.tensor([0.2, -0.3, 5e2], dtype=p.dtype)[:, None] * p).sum(0), 3, 4, dtype=dtype)
    assert not is_linear(consensus_rule("mgda", num_tasks=3), 3, 4, dtype=dtype)
    assert not is_linear(consensus_rule("upgrad", num_tasks=3), 3, 4, dtype=dtype)


def test_at_trunk_size_one_aligned_mtl_is_the_mean_and_so_linear() -> None:
    """Measured at the game's shape: on one coordinate aligned_mtl's balancing leaves the mean."""
    rule = consensus_rule("aligned_mtl", num_tasks=3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        p = torch.randn(3, 1, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(apply_rule(rule, p, 0), p.mean(0), rtol=1e-12, atol=1e-12)
    assert is_linear(rule, 3, 1) and not is_linear(rule, 3, 4)


def _agem(proposals: Tensor) -> Tensor:
    """An A-GEM-like rule: the mean, projected off the first proposal where it conflicts with it."""
    g, first = proposals.mean(0), proposals[0]
    dot = g @ first
    return g - dot / (first @ first) * first if dot < 0 else g


def _global_random_weights(proposals: Tensor) -> Tensor:  # new weights at every call, from the global generator
    return (torch.rand(proposals.shape[0], 1, dtype=proposals.dtype) * proposals).sum(0)


@pytest.mark.parametrize(
    ("rule", "linear"),
    [
        (lambda p: (torch.tensor([0.2, 0.3, 0.5], dtype=p.dtype)[:, None] * p).sum(0), True),
        (lambda p: -2.0 * p[0] + p[2], True),
        (lambda p: p.sum(0).clamp(-1.0, 1.0), False),
        (lambda p: p[p.norm(dim=1).argmin()], False),  # selects a proposal
        (lambda p: p.mean(0) + 1e-3, False),  # affine, not linear
        (_agem, False),  # projects only when the mean conflicts with the first proposal
        (lambda p: 1e-12 * p.median(0).values, False),  # nonlinear however small its moves
        (lambda p: p.mean(0) * torch.clamp(100.0 / p.mean(0).norm(), max=1.0), False),  # a clip at norm 100
        (lambda p: (p * torch.clamp(50.0 / p.norm(dim=1, keepdim=True), max=1.0)).sum(0), False),  # rows capped
        (lambda p: p.sum(0, keepdim=True), False),  # a wrong shape: [1, n]
        (_global_random_weights, False),
        (_Counting(), False),  # keeps state (a counter): its weights could follow it
    ],
    ids=[
        "weighted",
        "signed",
        "clipped",
        "selects",
        "affine",
        "agem",
        "tiny",
        "clip100",
        "row_cap",
        "shape",
        "random_weights",
        "stateful",
    ],
)
def test_a_rule_of_your_own_is_linear_only_if_it_is_a_fixed_weighted_sum(rule: object, linear: bool) -> None:
    assert is_linear(rule, 3, 4) is linear  # type: ignore[arg-type]


@pytest.mark.parametrize("probe", [is_linear, is_min_bounded])
def test_measuring_leaves_the_global_generators_and_the_rule_as_they_were(probe: Callable[..., bool]) -> None:
    """Both probes (is_min_bounded: tests/test_min_bounded_consensus.py)."""
    stateful = _Counting()
    stateful(torch.ones(2, 3))
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    assert not probe(_global_random_weights, 3)
    assert not probe(stateful, 3)
    after = (torch.rand(1), np.random.rand())  # noqa: NPY002
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    assert after == (torch.rand(1), np.random.rand())  # noqa: NPY002
    assert stateful.calls == 1


@pytest.mark.parametrize("probe", [is_linear, is_min_bounded])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_the_sizes_must_be_positive_ints(probe: Callable[..., bool], bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="num_tasks"):
        probe(consensus_rule("mean"), bad)
    with pytest.raises((ValueError, TypeError), match="trunk_size"):
        probe(consensus_rule("mean"), 3, bad)


# ------------------------------------------------------------------------------------- the game and the env
@pytest.mark.parametrize(("consensus", "linear"), [("sum", True), ("mean", True), ("mgda", False), ("upgrad", False)])
@pytest.mark.parametrize("numeric", [True, False])
def test_the_env_tells_every_player_whether_the_consensus_is_linear(
    consensus: str, linear: bool, numeric: bool
) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, numeric_infos=numeric)
    _, infos = env.reset(seed=0)
    assert env.game.linear_consensus is linear
    assert all(info["linear_consensus"] == linear for info in infos.values())
    if numeric:  # the same numeric keys every step, as numbers
        assert all(isinstance(info["linear_consensus"], float) for info in infos.values())
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() * 0 for a in env.agents})
        assert all(info["linear_consensus"] == float(linear) for info in infos.values())
    else:
        assert all(info["linear_consensus"] is linear for info in infos.values())


@pytest.mark.parametrize("consensus", ["sum", "mean", "upgrad", "db_mtl"])
def test_the_vector_env_tells_each_game_what_the_single_env_tells_its_players(consensus: str) -> None:
    """The game's constants at reset, one per game: linear_consensus, and sum_scale where the rule has a gain."""
    import mtg_env

    venv = mtg_env.vector_env(num_games=3, suite="regression", consensus=consensus, num_tasks=3)
    _, infos = venv.reset(seed=0)
    env = make_env("regression", consensus=consensus, num_tasks=3)
    _, single = env.reset(seed=0)
    info = single[env.agents[0]]
    assert infos["linear_consensus"].dtype == torch.bool
    assert infos["linear_consensus"].tolist() == [bool(info["linear_consensus"])] * 3
    if "sum_scale" in info:
        assert infos["sum_scale"].tolist() == pytest.approx([info["sum_scale"]] * 3)
    else:
        assert consensus == "db_mtl" and "sum_scale" not in infos


def test_a_rule_that_fails_on_the_test_matrices_is_not_linear_and_the_game_still_plays() -> None:
    def picky(proposals: Tensor) -> Tensor:
        if bool((proposals < -1.5).any()):  # the test matrices' conflicting rows reach -2 and below
            raise ValueError("picky: a proposal below -1.5")
        return proposals.sum(0)

    env = make_env("quadratic", consensus=picky, num_tasks=3)
    _, infos = env.reset(seed=0)
    assert env.game.linear_consensus is False
    assert all(info["linear_consensus"] == 0.0 for info in infos.values())
    env.step({a: env.action_space(a).sample() * 0 for a in env.agents})


# ------------------------------------------------------------------------------------- the gated boost
def _shipped_quadratic(**options: object) -> MLPRule:
    """The shipped quadratic MLP rule (a trunk boost of 0.05) with config fields replaced by ``options``."""
    from dataclasses import replace

    _, rule, _ = load_rule(pretrained_path("learned_mlp", "quadratic"))
    assert isinstance(rule, MLPRule)
    replaced = MLPRule(replace(rule.config, **options))  # type: ignore[arg-type]
    replaced.load_state_dict(rule.state_dict())
    return replaced


def _losses(rule: torch.nn.Module, consensus: str) -> Tensor:
    """``[60, B, M]``: 60 steps, long enough for the boost to rise (tests/test_sum_scale.py's games)."""
    return _game_losses(rule, consensus, steps=60)


def test_under_a_linear_rule_the_gated_boost_plays_as_the_boost() -> None:
    gated = _losses(_shipped_quadratic(boost_linear_only=True), "sum")
    torch.testing.assert_close(gated, _losses(_shipped_quadratic(boost_linear_only=False), "sum"), rtol=0, atol=0)
    assert not torch.allclose(gated, _losses(_shipped_quadratic(trunk_boost=0.0), "sum"), rtol=1e-6)  # it boosts


@pytest.mark.parametrize("consensus", ["upgrad", "mgda"])
def test_under_a_rule_that_is_not_linear_the_gated_boost_never_rises(consensus: str) -> None:
    gated = _losses(_shipped_quadratic(boost_linear_only=True), consensus)
    torch.testing.assert_close(gated, _losses(_shipped_quadratic(trunk_boost=0.0), consensus), rtol=0, atol=0)
    ungated = _losses(_shipped_quadratic(boost_linear_only=False), consensus)
    assert not torch.allclose(gated, ungated, rtol=1e-6)  # the boost would have played here


@pytest.mark.parametrize(("consensus", "on"), [("sum", 1.0), ("upgrad", 0.0)])
def test_the_agent_reads_the_info_as_the_driver_reads_the_game(consensus: str, on: float) -> None:
    env = make_env("quadratic", consensus=consensus, num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    rule = _shipped_quadratic(boost_linear_only=True)
    driver = EngineDriver(rule, env.game)
    with torch.no_grad():
        _, out = engine.reset(env.game, [0])
    assert float(driver.start(out)["boost_on"][0, 0]) == on
    a = env.agents[0]
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs[a], infos[a], env.action_space(a))
    assert float(agent._memory["boost_on"][0, 0]) == on


def test_without_the_info_an_agent_counts_the_game_as_linear() -> None:
    """An env before the key (or a wrapper that drops it) tells the agent nothing: the boost plays, as it did."""
    env = make_env("quadratic", consensus="upgrad", num_tasks=3, dtype="float64", max_update=None)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    info = {k: v for k, v in infos[a].items() if k != "linear_consensus"}
    agent = LearnedAgent(_shipped_quadratic(boost_linear_only=True), "learned_mlp")
    agent.reset(obs[a], info, env.action_space(a))
    assert float(agent._memory["boost_on"][0, 0]) == 1.0


def test_a_rule_without_the_option_never_measures_linearity() -> None:
    calls = []

    def logged(proposals: Tensor) -> Tensor:
        calls.append(proposals.shape)
        return proposals.sum(0)

    suite = make_env("quadratic", num_tasks=2).suite
    game = Game(suite, logged, action_mode="update", horizon=5)
    for rule in (new_rule("learned_mlp", trunk_boost=0.05), new_rule("learned_mlp", boost_linear_only=True)):
        assert EngineDriver(rule, game).boost_allowed is True
    assert calls == []
    assert EngineDriver(new_rule("learned_mlp", trunk_boost=0.05, boost_linear_only=True), game).boost_allowed
    assert calls  # measured: logged is a sum, so linear
