"""The learned portfolio (agents/learned/portfolio.py, ``learned_portfolio``): the shipped file holds the shipped
specialists bit for bit and a selector fitted on the tuning stream; every player of a game picks the same expert,
the batched driver the same one, and the pick then plays exactly as that expert alone; the games' property it reads
(``stochastic_gradients``) is right for every suite and told to every player."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

import mtg_env
from agents import make_agents, run_episode
from agents.learned import EngineDriver, LearnedAgent, load_rule, new_rule, save_rule
from agents.learned.checkpoint import GENERAL, pretrained_path, read_rule
from agents.learned.family import FAMILIES, draw_games
from agents.learned.meta_config import MetaTrainConfig
from agents.learned.portfolio import FEATURES, PortfolioConfig, PortfolioRule, game_features
from mtg_env import engine
from mtg_env.bench.sealed_search import _game
from tests.conftest import make_env

SHIPPED = pretrained_path("learned_portfolio", GENERAL)


def _fit_script() -> Any:
    """scripts/fit_portfolio.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "fit_portfolio", Path(__file__).parents[1] / "scripts/fit_portfolio.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _portfolio(selector: list[list[float]] | None = None) -> PortfolioRule:
    """The three shipped MLP specialists in a portfolio (quadratic, regression, digits), with ``selector``."""
    experts = [read_rule(pretrained_path("learned_mlp", f))[1] for f in FAMILIES]
    config = PortfolioConfig(experts=tuple(("learned_mlp", asdict(r.config)) for r in experts), labels=FAMILIES)
    rule = PortfolioRule(config)
    for slot, expert in zip(rule.experts, experts, strict=True):
        slot.load_state_dict(expert.state_dict())
    if selector is not None:
        with torch.no_grad():
            rule.selector.copy_(torch.tensor(selector))
    return rule


# ------------------------------------------------------------------------------------- the shipped file
def test_the_shipped_portfolio_holds_the_shipped_specialists_bit_for_bit() -> None:
    name, rule, meta = load_rule(SHIPPED)
    assert name == "learned_portfolio" and isinstance(rule, PortfolioRule)
    assert rule.config.labels == FAMILIES
    assert meta["selector"]["fitted_on"] == "tuning stream" and meta["selector"]["games"] > 0
    for label, expert in zip(rule.config.labels, rule.experts, strict=True):
        specialist = read_rule(pretrained_path("learned_mlp", label))[1]
        assert asdict(expert.config) == asdict(specialist.config)
        for key, value in specialist.state_dict().items():
            assert torch.equal(expert.state_dict()[key], value), (label, key)


@pytest.mark.parametrize("consensus", ["sum", "mean", "mgda", "upgrad"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_shipped_selector_picks_each_familys_specialist_on_its_validation_games(
    family: str, consensus: str
) -> None:
    """On games of each family it was not fitted on (the validation stream), under every named rule, the shipped
    selector picks the specialist of that family."""
    rule = load_rule(SHIPPED)[1]
    assert isinstance(rule, PortfolioRule)
    for options, _ in draw_games(family, "validation", 6, 1):
        game = _game(family, options, 5, device="cpu", consensus=consensus)
        assert rule.expert_for_game(game) is rule.experts[FAMILIES.index(family)], options


@pytest.mark.parametrize("suite", FAMILIES)
def test_the_portfolio_plays_each_familys_test_suite_exactly_as_its_specialist(suite: str) -> None:
    """The agent form (every player its own copy, from the env's infos) plays the test suite's episode with the
    losses of the specialist alone, bit for bit: the pick does not touch the expert's play."""
    kwargs = {"max_cycles": 12, "max_update": None, **({"dtype": "float64"} if suite == "quadratic" else {})}
    histories = []
    for name, weights in (("learned_portfolio", SHIPPED), ("learned_mlp", pretrained_path("learned_mlp", suite))):
        env = make_env(suite, "update", **kwargs)
        players = make_agents(name, env, weights=weights, allow_other_suite=True)
        histories.append(run_episode(env, players, seed=3, evaluate=False).losses)
        if name == "learned_portfolio":
            # every player (each with its own copy of the file) the same expert: the family's specialist
            assert all(p.rule is p.given.experts[FAMILIES.index(suite)] for p in players.values())
    assert len(histories[0]) == len(histories[1]) == 13
    for a, b in zip(*histories, strict=True):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_the_driver_plays_its_pick_as_that_specialists_file_alone() -> None:
    """The batched driver's pick plays its B games as the specialist's own file (read separately) does, bit for bit."""
    selector = [[0.0] * len(FEATURES) for _ in FAMILIES]
    selector[1][2] = 1.0  # noisy gradients: the regression specialist; exact ones the quadratic one
    rule = _portfolio(selector)
    game = make_env("regression", "update", max_update=None).game
    driver = EngineDriver(rule, game)
    assert driver.given is rule and driver.rule is rule.experts[1]
    alone = EngineDriver(read_rule(pretrained_path("learned_mlp", "regression"))[1], game)
    runs = []
    for d in (driver, alone):
        with torch.no_grad():
            state, out = engine.reset(game, [5, 6])
            memory = d.start(out)
            for _ in range(8):
                actions, memory = d.act(state, out, memory)
                state, out = engine.step(game, state, actions)
        runs.append(out.losses)
    assert torch.equal(runs[0], runs[1])
    assert EngineDriver(rule, make_env("quadratic", "update").game).rule is rule.experts[0]


@pytest.mark.parametrize("numeric", [True, False])
@pytest.mark.parametrize("consensus", ["sum", "mean", "mgda", "upgrad"])
def test_every_player_picks_what_the_driver_picks_and_scales_its_trunk_as_it_does(
    consensus: str, numeric: bool
) -> None:
    """Experts of different configs (one without ``sum_scaled``) and random selectors over every feature: each
    player, from its infos (numeric or named), picks the driver's expert and plays its trunk scale, on games with exact
    and noisy gradients."""
    experts = [read_rule(pretrained_path("learned_mlp", f))[1] for f in FAMILIES]
    configs = [asdict(r.config) for r in experts]
    configs[0]["sum_scaled"] = False
    rule = PortfolioRule(PortfolioConfig(experts=tuple(("learned_mlp", c) for c in configs), labels=FAMILIES))
    generator = torch.Generator().manual_seed(7)
    picked = set()
    for _ in range(6):
        with torch.no_grad():
            rule.selector.copy_(torch.randn(rule.selector.shape, generator=generator))
        for suite in ("quadratic", "regression"):
            env = make_env(suite, "update", consensus=consensus, numeric_infos=numeric)
            driver = EngineDriver(rule, env.game)
            obs, infos = env.reset(seed=0)
            for agent in env.agents:
                player = LearnedAgent(rule, name="learned_portfolio")
                player.reset(obs[agent], infos[agent], env.action_space(agent))
                assert player.rule is driver.rule, (suite, agent)
                assert player.trunk_scale == driver.trunk_scale, (suite, agent)
            picked.add(FAMILIES[list(rule.experts).index(driver.rule)])
    assert picked == set(FAMILIES)  # every expert was picked somewhere


def test_a_file_round_trips_and_a_bad_portfolio_is_refused_naming_what(tmp_path: Path) -> None:
    rule = _portfolio([[0.1 * (i + 1) * (k + 1) for i in range(len(FEATURES))] for k in range(len(FAMILIES))])
    path = save_rule(tmp_path / "p.pt", "learned_portfolio", rule, {"config": {"suite": list(FAMILIES)}})
    name, back, _ = load_rule(path)
    assert name == "learned_portfolio" and isinstance(back, PortfolioRule)
    assert torch.equal(back.selector, rule.selector)
    assert back.config == rule.config
    experts = rule.config.experts
    with pytest.raises(ValueError, match="at least one expert"):
        PortfolioRule(PortfolioConfig(experts=(), labels=()))
    with pytest.raises(ValueError, match="labels must name each of the 3 experts once"):
        PortfolioRule(PortfolioConfig(experts=experts, labels=("a", "a", "b")))
    with pytest.raises(ValueError, match=r"experts\[0\] must be \(name, config dict\)"):
        PortfolioRule(PortfolioConfig(experts=(("learned_step", {}),), labels=("x",)))
    with pytest.raises(ValueError, match=r"experts\[0\] \('x'\): learned_mlp's config refuses"):
        PortfolioRule(PortfolioConfig(experts=(("learned_mlp", {"no_such": 1}),), labels=("x",)))
    with pytest.raises(TypeError, match="does not play itself"):
        rule(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="trunk_size must be a positive int"):
        game_features(0, False, True, False)
    with pytest.raises(ValueError, match="'learned_portfolio' is not meta-trained"):
        MetaTrainConfig(agent="learned_portfolio")
    env = make_env("regression", "step_size")
    player = make_agents("learned_portfolio", env, weights=path)["task_0"]
    obs, infos = env.reset(seed=0)
    with pytest.raises(ValueError, match="plays action_mode='update'"):
        player.reset(obs["task_0"], infos["task_0"], env.action_space("task_0"))
    assert new_rule("learned_portfolio", **asdict(rule.config)).selector.abs().sum() == 0
    with pytest.raises(ValueError, match="labels must be a list of non-empty strings"):
        PortfolioRule(PortfolioConfig(experts=experts, labels="abc"))  # type: ignore[arg-type]
    for field, value in (("labels", "abc"), ("labels", [1, 2, 3]), ("experts", [["learned_mlp", "x"]] * 3)):
        payload = torch.load(path, weights_only=True)
        payload["config"][field] = value
        torch.save(payload, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=r"bad\.pt: the rule's config is not one learned_portfolio accepts"):
            load_rule(tmp_path / "bad.pt")


def test_the_registry_plays_the_portfolio_on_any_suite_from_its_general_file() -> None:
    env = mtg_env.parallel_env(suite="toy2d", max_cycles=5, max_update=None)
    players = make_agents("learned_portfolio", env)
    assert repr(players[env.possible_agents[0]]) == (
        "LearnedAgent('learned_portfolio', weights='learned_portfolio_general.pt')"
    )
    history = run_episode(env, players, seed=0, evaluate=False)
    assert len(history.losses) == 6
    assert repr(players[env.possible_agents[0]]) == (  # toy2d: exact gradients on a trunk of 2, as the quadratics'
        "LearnedAgent('learned_portfolio', weights='learned_portfolio_general.pt', expert='quadratic')"
    )


# ------------------------------------------------------------------------------------- what it reads of a game
@pytest.mark.parametrize(
    ("suite", "options", "stochastic"),
    [
        ("quadratic", {}, False),
        ("toy2d", {}, False),
        ("regression", {}, True),
        ("regression", {"batch_size": None}, False),
        ("digits", {"hidden": (8,)}, True),
        ("digits", {"hidden": (8,), "batch_size": None}, False),
    ],
)
def test_every_player_is_told_whether_the_gradients_are_estimates(suite: str, options: dict, stochastic: bool) -> None:
    for numeric in (True, False):
        env = mtg_env.parallel_env(suite=suite, numeric_infos=numeric, **options)
        _, infos = env.reset(seed=0)
        assert env.game.stochastic_gradients is stochastic
        for info in infos.values():  # a number in the numeric infos, a bool in the named ones
            assert info["stochastic_gradients"] == stochastic
            assert type(info["stochastic_gradients"]) is (float if numeric else bool)
    venv = mtg_env.vector_env(num_games=2, suite=suite, **options)
    _, vinfos = venv.reset(seed=0)
    assert vinfos["stochastic_gradients"].tolist() == [stochastic] * 2


def test_gradient_or_label_noise_makes_gradients_estimates_and_the_other_noise_models_do_not() -> None:
    def stochastic(suite: str = "quadratic", **options: object) -> bool:
        return mtg_env.parallel_env(suite=suite, **options).game.stochastic_gradients

    assert not stochastic()
    assert stochastic(noise_model=mtg_env.NoiseSpec(grad_std=0.1))
    assert stochastic("digits", hidden=(8,), batch_size=None, noise_model=mtg_env.NoiseSpec(label_noise=0.1))
    assert stochastic(
        "digits", hidden=(8,), batch_size=None, noise_model=mtg_env.NoiseSpec(label_noise=(0.0, 0.2, 0.0, 0.0))
    )
    assert not stochastic("digits", hidden=(8,), batch_size=None, noise_model=mtg_env.NoiseSpec(label_noise=(0.0,) * 4))
    assert not stochastic(num_tasks=4, noise_model=mtg_env.NoiseSpec(byzantine=1))  # attacks, not estimates
    assert not stochastic(noise_model=mtg_env.NoiseSpec(delay=2))  # stale proposals of exact gradients


def test_which_suites_draw_minibatches() -> None:
    from tests.test_module_suite import bench_suite

    assert bench_suite(batch_size=32).stochastic_gradients
    assert not bench_suite(batch_size=None).stochastic_gradients
    assert mtg_env.MultiDigits(n_train=200, n_test=50, batch_size=16).stochastic_gradients
    assert not mtg_env.MultiDigits(n_train=200, n_test=50, batch_size=None).stochastic_gradients
    # digits draws without replacement: a batch of the whole train split is the exact objective
    full = mtg_env.DigitsSuite(hidden=(8,), batch_size=None).describe()["n_train"]
    assert not mtg_env.DigitsSuite(hidden=(8,), batch_size=full).stochastic_gradients
    assert mtg_env.DigitsSuite(hidden=(8,), batch_size=full - 1).stochastic_gradients


def test_the_fit_finds_each_experts_region() -> None:
    """scripts/fit_portfolio.py's fit on games where each expert is best in its own region (exact gradients: the
    first; noisy ones on a small trunk: the second; noisy on a large trunk: the third) picks the best expert in every
    game."""
    fit_portfolio = _fit_script()
    rows = []
    for n in (5, 9, 15, 20, 40, 80, 150, 300, 1000, 2000, 3000):
        for noisy in (False, True):
            best = 0 if not noisy else (1 if n < 500 else 2)
            gaps = [1e-3 if k == best else 10.0 ** -(1 + k % 2) for k in range(3)]
            rows.append({"game": [n, noisy, True, False], "gaps": gaps})
    x, regret = fit_portfolio.regrets(rows)
    weight = fit_portfolio.fit_selector(x, regret, l2=1e-4, tau=0.25)
    picks = (x @ weight.T).argmax(1)
    assert float(regret.gather(1, picks[:, None]).max()) == 0.0


def test_the_fit_refuses_games_played_by_other_specialists_or_another_stream(tmp_path: Path) -> None:
    fit_portfolio = _fit_script()
    games = json.loads((Path(__file__).parents[1] / "docs/sealed/portfolio/tuning/gaps.json").read_text())
    assert len(fit_portfolio._cells(Path(__file__).parents[1] / "docs/sealed/portfolio/tuning")) == 32
    with pytest.raises(SystemExit, match="holds the tuning stream's games, not the validation stream's"):
        fit_portfolio._cells(Path(__file__).parents[1] / "docs/sealed/portfolio/tuning", "validation")
    games["setup"]["experts"]["digits"] = "0" * 64
    (tmp_path / "gaps.json").write_text(json.dumps(games))
    with pytest.raises(SystemExit, match="the shipped specialists changed since its games were played"):
        fit_portfolio._cells(tmp_path)
    with pytest.raises(SystemExit, match="resume with the same stream, draws, seeds and experts"):
        fit_portfolio.collect(tmp_path, 16, 2)


@pytest.mark.parametrize("consensus", ["sum", "mean", "mgda", "upgrad"])
def test_the_shipped_portfolio_never_diverges_at_condition_1e5(consensus: str) -> None:
    """Issue 23's stiff quadratic (and with gradient noise, which the selector reads): whichever expert it picks stays
    stable (each expert's 10x-horizon runs are in tests/test_learned_stability.py)."""
    from tests.test_learned_stability import play, stiff_game

    rule = load_rule(SHIPPED)[1]
    for noise in (None, mtg_env.NoiseSpec(grad_std=0.01)):
        game = stiff_game(consensus, 100, noise_model=noise)
        with torch.no_grad():
            start = engine.reset(game, [0, 1])[1].losses.sum(1)
        diverged, final, _ = play(rule, game, [0, 1])  # type: ignore[arg-type]
        assert not diverged.any() and (final < start).all(), (consensus, noise)


def test_the_fit_takes_shipped_tags_and_rule_files_of_ones_own() -> None:
    fit_portfolio = _fit_script()
    fit_portfolio._use(["digits", "mine=docs/sealed/portfolio/learned_mlp_regression_anneal.pt"])
    assert fit_portfolio.EXPERTS == ("digits", "mine")
    assert fit_portfolio.FILES["digits"] == pretrained_path("learned_mlp", "digits")
    assert fit_portfolio._files() == {"mine": "docs/sealed/portfolio/learned_mlp_regression_anneal.pt"}  # for the setup
    experts, sha256 = fit_portfolio._experts()
    assert experts["mine"].config.anneal == 1.0 and len(sha256["mine"]) == 64


def test_sync_gives_the_experts_the_shipped_specialists_configs_and_keeps_the_rest(tmp_path: Path) -> None:
    """``fit_portfolio.py sync`` on the portfolio as shipped before the twenty-ninth and thirtieth sessions' options
    (docs/sealed/general/k24's before-file) gives the shipped portfolio: the same selector and weights, the shipped
    specialists' configs; what changed is recorded per expert, and a second sync changes nothing."""
    fit_portfolio = _fit_script()
    path = tmp_path / "p.pt"
    before = Path(__file__).parents[1] / "docs/sealed/general/k24/learned_portfolio_general_before.pt"
    path.write_bytes(before.read_bytes())
    fit_portfolio.sync(path, "a test")
    _, synced, meta = load_rule(path)
    _, shipped, _ = load_rule(SHIPPED)
    assert isinstance(synced, PortfolioRule) and isinstance(shipped, PortfolioRule)
    assert [asdict(e.config) for e in synced.experts] == [asdict(e.config) for e in shipped.experts]
    expected, got = shipped.state_dict(), synced.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert (
        "'guard_slack': 2.0" in meta["experts_updated"]["quadratic"] and "a test" in meta["experts_updated"]["digits"]
    )
    for label in ("quadratic", "digits"):  # the source file is named with its bytes' sha256
        source = pretrained_path("learned_mlp", label)
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        assert f"from {source.name} (sha256 {sha256})" in meta["experts_updated"][label]
    written = path.read_bytes()
    fit_portfolio.sync(path, "again")
    assert path.read_bytes() == written


def test_sync_refuses_an_expert_whose_weights_are_not_its_specialists(tmp_path: Path) -> None:
    fit_portfolio = _fit_script()
    rule = _portfolio()
    with torch.no_grad():
        rule.experts[1].log_lr.add_(0.1)  # type: ignore[operator]
    path = save_rule(tmp_path / "p.pt", "learned_portfolio", rule, {"config": {"suite": list(FAMILIES)}})
    written = path.read_bytes()
    with pytest.raises(SystemExit, match="the shipped learned_mlp 'regression' file's weights are not its"):
        fit_portfolio.sync(path, "")
    assert path.read_bytes() == written
