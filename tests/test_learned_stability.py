"""The learned rules' curvature guard (agents/learned/guard.py): the shipped rules stay stable on ill-conditioned
quadratics under every consensus rule, both forms play the guard alike, and where the step is already safe the
guarded rule plays the unguarded one bit for bit."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mtg_env
from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.checkpoint import load_rule, pretrained_path, save_rule
from agents.learned.family import loss_floor
from agents.learned.rules import Rule, StepRule
from mtg_env import engine
from mtg_env.engine import Game
from mtg_env.suites import QuadraticSuite
from tests.conftest import make_env

#: The shipped weights the guard must keep stable (the MLP rule's files, the step rule's, the LSTM's and the
#: generalist; the digits specialist too: the portfolio, learned_portfolio, may pick it for any game).
SHIPPED = [
    ("learned_mlp", "quadratic"),
    ("learned_mlp", "regression"),
    ("learned_mlp", "digits"),
    ("learned_step", "regression"),
    ("learned_lstm", "quadratic"),
    ("learned_mlp", "general"),
]
CONSENSUS = ("sum", "mean", "mgda", "upgrad")


def shipped_rule(name: str, suite: str, **config: object) -> Rule:
    """The shipped rule ``name`` trained on ``suite``, with config fields replaced by ``config``."""
    _, rule, _ = load_rule(pretrained_path(name, suite))
    if not config:
        return rule
    guarded = type(rule)(replace(rule.config, **config))  # type: ignore[arg-type]
    guarded.load_state_dict(rule.state_dict())
    return guarded


#: The generalist as meta-trained, without the trunk AMSGrad share its shipped file adds (K3/K4's file).
_TRAINED_GENERALIST = Path(__file__).parents[1] / "docs" / "sealed" / "general" / "learned_mlp_general_no_boost.pt"


def _rule_file(path: Path, **config: object) -> Rule:
    """The rule of the file ``path``, with config fields replaced by ``config``."""
    _, rule, _ = load_rule(path)
    replaced = type(rule)(replace(rule.config, **config))  # type: ignore[arg-type]
    replaced.load_state_dict(rule.state_dict())
    return replaced


def stiff_game(consensus: str, horizon: int, condition: float = 1e5, game_seed: int = 1000, **kwargs: object) -> Game:
    """The ill-conditioned quadratic of the issue (3 tasks, heads of 2, a trunk of 8, float64)."""
    suite = QuadraticSuite(
        num_tasks=3, head_dim=2, trunk_dim=8, condition=condition, game_seed=game_seed, dtype="float64"
    )
    return Game(suite, mtg_env.consensus.consensus_rule(consensus, num_tasks=3), horizon=horizon, **kwargs)  # type: ignore[arg-type]


def play(
    rule: Rule, game: Game, seeds: list[int], steps: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``(diverged [B], final total losses [B], total losses per step)`` of ``rule`` over the whole horizon (or its
    first ``steps``)."""
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
    diverged = torch.zeros(len(seeds), dtype=torch.bool)
    history = []
    with torch.no_grad():
        state, out = engine.reset(game, seeds)
        memory = driver.start(out)
        for _ in range(game.horizon if steps is None else steps):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
            diverged |= out.diverged
            history.append(out.losses.sum(1))
    return diverged, out.losses.sum(1), history


def _mode(name: str) -> str:
    return "step_size" if name == "learned_step" else "update"


def test_without_the_guard_the_shipped_quadratic_mlp_rule_diverges_at_condition_1e5() -> None:
    """The failure the guard is for (what the tests below would meet without it)."""
    rule = shipped_rule("learned_mlp", "quadratic", guard=False)
    diverged, _, _ = play(rule, stiff_game("sum", 100), [0, 1])
    assert diverged.all()


@pytest.mark.parametrize(("name", "suite"), SHIPPED)
@pytest.mark.parametrize("consensus", CONSENSUS)
def test_the_shipped_rules_never_diverge_at_condition_1e5(name: str, suite: str, consensus: str) -> None:
    game = stiff_game(consensus, 100, action_mode=_mode(name))
    with torch.no_grad():
        start = engine.reset(game, [0, 1])[1].losses.sum(1)
    diverged, final, _ = play(shipped_rule(name, suite), game, [0, 1])
    assert not diverged.any(), f"{name} ({suite}) diverged under {consensus}"
    if name != "learned_lstm":  # the LSTM's bounded moves can still leave a loss above its start (not a blow-up)
        assert (final < start).all(), f"{name} ({suite}) under {consensus}: the total loss grew, {start} -> {final}"


def diverged_stiff_games(name: str, suite: str, consensus: str, condition: float, game_seeds: range) -> set[int]:
    """The game seeds of :func:`stiff_game` (1 000 steps) where the shipped rule ``name`` of ``suite`` diverged in
    either of play seeds 0 and 1."""
    rule = shipped_rule(name, suite)
    games = set()
    for game_seed in game_seeds:
        game = stiff_game(consensus, 1000, condition, game_seed, action_mode=_mode(name))
        if play(rule, game, [0, 1])[0].any():
            games.add(game_seed)
    return games


#: The stiff games of the slow test below where a shipped file is known to diverge (game seeds), by (name, suite,
#: consensus, condition). None since the thirtieth session (the digits specialist's ``mgda`` 1e5 game 1004 diverged
#: before it took ``lift_growing = False``); the test fails if a game diverges that is not listed, or one listed stops.
KNOWN_DIVERGENT: dict[tuple[str, str, str, float], set[int]] = {}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "suite"), SHIPPED)
@pytest.mark.parametrize("consensus", CONSENSUS)
@pytest.mark.parametrize("condition", [1e4, 1e5])
def test_the_shipped_rules_never_diverge_over_ten_times_the_horizon(
    name: str, suite: str, consensus: str, condition: float
) -> None:
    """Game seeds 1000-1012 (docs/sealed/stability/survey.py plays the same games), save :data:`KNOWN_DIVERGENT`.
    About half an hour on one core for every case. Checked on an AMD EPYC's own MKL branch; a game that drifts for
    hundreds of steps follows the rounding, so run it under ``MKL_CBWR`` branches too where that matters."""
    diverged_games = diverged_stiff_games(name, suite, consensus, condition, range(1000, 1013))
    expected = KNOWN_DIVERGENT.get((name, suite, consensus, condition), set())
    assert diverged_games == expected, f"{name} ({suite}) under {consensus} at {condition:.0e}: diverged games"


def other_rules() -> tuple[str, ...]:
    """The named consensus rules beyond :data:`CONSENSUS` that the stiff quadratic admits: all but the five that take
    the logarithm or a ratio of the losses at their defaults, which need every loss > 0 (a quadratic's are not; the
    game refuses them; FAMO plays one given its ``min_losses``)."""
    admitted = []
    for name in mtg_env.consensus.CONSENSUS_RULES:
        if name in CONSENSUS:
            continue
        try:
            stiff_game(name, 1)
        except ValueError as err:
            assert "takes the logarithm or ratio of the losses" in str(err), err
        else:
            admitted.append(name)
    return tuple(admitted)


#: Issue 23 asks for no divergence "under every named consensus rule"; the tests above play the bar's four. The
#: thirty-third session played the other thirteen the stiff quadratic admits (``docs/sealed/stability/survey.py
#: --rules all --seeds 1000 1003``, game seeds 1000-1002, two play seeds each, 1 000 steps): the shipped MLP files
#: diverge under six of them (docs/results/learned.md, "Stability under every named rule"). The games where each
#: file diverged, by (name, suite, consensus, condition), on an Intel Xeon's own MKL branch (a game that drifts for
#: hundreds of steps follows the rounding); the slow test below fails if another diverges or a listed one stops.
#: ``nash_mtl`` was surveyed for the MLP files (no divergence) and not yet for the LSTM and the step rule.
_MLP_Q, _MLP_R, _MLP_D, _MLP_G = (("learned_mlp", s) for s in ("quadratic", "regression", "digits", "general"))
_LSTM = ("learned_lstm", "quadratic")
#: The files whose ``nash_mtl`` games were surveyed (the slow test skips the others' until they are).
_NASH_SURVEYED = {_MLP_Q, _MLP_R, _MLP_D, _MLP_G}
KNOWN_DIVERGENT_OTHER: dict[tuple[str, str, str, float], set[int]] = {
    (*_MLP_Q, "cagrad", 1e5): {1000, 1001},
    (*_MLP_Q, "imtl_g", 1e4): {1000},
    (*_MLP_Q, "krum", 1e5): {1002},
    (*_MLP_R, "cagrad", 1e4): {1000, 1001, 1002},
    (*_MLP_R, "cagrad", 1e5): {1000, 1001, 1002},
    (*_MLP_R, "imtl_g", 1e4): {1000},
    (*_MLP_R, "aligned_mtl", 1e4): {1000},
    (*_MLP_R, "aligned_mtl", 1e5): {1000},
    (*_MLP_R, "krum", 1e4): {1000},
    (*_MLP_R, "krum", 1e5): {1000},
    (*_MLP_R, "fairgrad", 1e4): {1000},
    (*_MLP_R, "fairgrad", 1e5): {1000, 1001},
    (*_MLP_D, "cagrad", 1e4): {1000, 1001, 1002},
    (*_MLP_D, "cagrad", 1e5): {1001, 1002},
    (*_MLP_D, "imtl_g", 1e4): {1000},
    (*_MLP_D, "krum", 1e4): {1000, 1001, 1002},
    (*_MLP_D, "krum", 1e5): {1000},
    (*_MLP_D, "trimmed_mean", 1e4): {1000, 1002},
    (*_MLP_D, "trimmed_mean", 1e5): {1000, 1002},
    (*_MLP_G, "cagrad", 1e4): {1000, 1001, 1002},
    (*_MLP_G, "cagrad", 1e5): {1000, 1001, 1002},
    (*_MLP_G, "imtl_g", 1e4): {1000, 1002},
    (*_MLP_G, "imtl_g", 1e5): {1000},
    (*_MLP_G, "krum", 1e4): {1000},
    (*_MLP_G, "krum", 1e5): {1002},
    (*_LSTM, "krum", 1e4): {1000, 1002},
    (*_LSTM, "krum", 1e5): {1000, 1001, 1002},
    (*_LSTM, "trimmed_mean", 1e5): {1000},
}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::mtg_env.ConsensusWarning")  # nash_mtl's counted failures, warned once a game
@pytest.mark.parametrize(("name", "suite"), SHIPPED)
@pytest.mark.parametrize("consensus", other_rules())
@pytest.mark.parametrize("condition", [1e4, 1e5])
def test_the_shipped_rules_under_every_other_named_rule(
    name: str, suite: str, consensus: str, condition: float
) -> None:
    """Game seeds 1000-1002 over ten times the horizon, save :data:`KNOWN_DIVERGENT_OTHER`. About an hour on one core
    for every case (``nash_mtl`` a third of it: a solve a game and step)."""
    if consensus == "nash_mtl" and (name, suite) not in _NASH_SURVEYED:
        pytest.skip(f"{name} ({suite}) under nash_mtl: not surveyed yet (a solve a game and step: slow)")
    diverged_games = diverged_stiff_games(name, suite, consensus, condition, range(1000, 1003))
    expected = KNOWN_DIVERGENT_OTHER.get((name, suite, consensus, condition), set())
    assert diverged_games == expected, f"{name} ({suite}) under {consensus} at {condition:.0e}: diverged games"


def test_every_named_rule_the_stiff_quadratic_admits_is_played_by_the_tests() -> None:
    # the four of the bar in the tests above, the others in the slow test: seventeen of the twenty-two named rules
    assert set(CONSENSUS) | set(other_rules()) == set(mtg_env.consensus.CONSENSUS_RULES) - {
        "dwa", "famo", "db_mtl", "gls", "gradnorm"
    }  # fmt: skip


def _hold(move: float, hold: bool) -> torch.Tensor:
    """L̂ after one guarded step of one player (a head of 1, a trunk proposal of 2 whose last move was 2 long, L̂ 1 and
    4), its trunk gradient changed by 0.1 and the consensus's last move ``move`` long."""
    from agents.learned.blocks import Blocks
    from agents.learned.guard import GuardConfig, apply_guard, guard_state

    blocks = Blocks(torch.tensor([False, True, True]))
    last = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[0.5, 1.1, 0.0]], dtype=torch.float64)
    state = guard_state(g, 2, torch.float64) | {
        "guard_g": last, "guard_s": torch.tensor([[0.5, 2.0]], dtype=torch.float64),
        "guard_l": torch.tensor([[1.0, 4.0]], dtype=torch.float64), "guard_seen": torch.ones(1, 2, dtype=torch.float64),
        "guard_n": torch.tensor([[1.0, 1.0]], dtype=torch.float64),
    }  # fmt: skip
    update = blocks.split(-0.01 * g)
    config = GuardConfig(guard_hold_unplayed=hold)
    _, _, after = apply_guard(update, None, g, blocks, torch.tensor([move], dtype=torch.float64), state, config)
    return after["guard_l"][0]


def test_guard_hold_unplayed_holds_the_estimate_of_a_proposal_the_consensus_did_not_play() -> None:
    """Moved by less than a quarter of its 2-long proposal (0 and 0.49), the trunk block's L̂ stays 4 (without the
    option it fades to 0.9 · 4, the secant 0.1 / 0.5 being smaller); moved by 0.5 or more, the option changes nothing;
    the head's estimate is the same either way."""
    for move in (0.0, 0.49):
        held, faded = _hold(move, True), _hold(move, False)
        assert float(held[1]) == 4.0 and float(faded[1]) == pytest.approx(3.6, rel=1e-15)
        assert held[0] == faded[0]
    for move in (0.5, 3.0):
        assert torch.equal(_hold(move, True), _hold(move, False))


@pytest.mark.parametrize(
    ("consensus", "game_seed", "seed", "steps", "below_start"),
    [("krum", 1002, 0, 100, False), ("cagrad", 1000, 1, 150, True)],
)
def test_guard_hold_unplayed_keeps_the_quadratic_specialist_stable_where_the_rule_left_proposals_unplayed(
    consensus: str, game_seed: int, seed: int, steps: int, below_start: bool
) -> None:
    """The stiff quadratic at 1e5 where the shipped quadratic specialist diverges (``krum`` at t = 45, choosing one
    proposal; ``cagrad`` at t = 121, after 57 steps of a zero move, torchjd's CAGrad stopping the trunk where one
    task's gradient is 1e-4 of the others'): with its trunk proposals' L̂ held while unplayed, it does not. Under
    ``cagrad`` its total loss ends at 6 % of its start; under ``krum`` the game stalls at about twice its start (1.8×
    at step 100, 1.9× at 1 000): stable, not solved."""
    game = stiff_game(consensus, 1000, 1e5, game_seed)  # the survey's game (the rule reads its progress t / 1000)
    diverged, _, _ = play(shipped_rule("learned_mlp", "quadratic"), game, [seed], steps)
    assert diverged.all()
    held, final, _ = play(shipped_rule("learned_mlp", "quadratic", guard_hold_unplayed=True), game, [seed], steps)
    with torch.no_grad():
        start = engine.reset(game, [seed])[1].losses.sum(1)
    assert not held.any()
    assert bool((final < start).all()) == below_start, "the loss against its start is this option's result, pinned"


def test_guard_hold_unplayed_is_a_bool_and_the_step_rule_refuses_it() -> None:
    from agents.learned.guard import GuardConfig

    with pytest.raises(TypeError, match=r"^guard_hold_unplayed must be a bool, got 1$"):
        GuardConfig(guard_hold_unplayed=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"leave it False for learned_step$"):
        new_rule("learned_step", guard_hold_unplayed=True)


#: The files before the specialists took ``guard_slack`` 2 (scripts/train_weights.py's ``ADDED_OPTIONS``).
_BEFORE_SLACK = Path(__file__).parents[1] / "docs" / "sealed" / "stability" / "slack"


#: The options each specialist took since the thirtieth session (scripts/train_weights.py's ``ADDED_OPTIONS``), after
#: the last keys that scored it before them (quadratic K18-K20, regression K17-K20, digits K24): the digits
#: specialist's ``heads_adam`` is the thirty-first session's, its ``heads_adam_min_horizon`` the thirty-second's.
_HEADS_ADAM = {"heads_adam": True, "heads_adam_lr": 0.1, "heads_handover": 0.1, "heads_adam_min_horizon": 100}
_SINCE_SLACK: dict[str, dict[str, object]] = {
    "quadratic": {"guard_slack": 2.0},
    "regression": {"guard_slack": 2.0},
    "digits": {"guard_slack": 2.0, "lift_growing": False, **_HEADS_ADAM},
}


@pytest.mark.parametrize("suite", ["quadratic", "regression", "digits"])
def test_each_specialist_is_its_file_before_with_guard_slack_2(suite: str) -> None:
    """The shipped specialist is the file before the option (the one the last keys scored) with ``guard_slack`` 2
    (and the digits specialist ``lift_growing = False`` and ``heads_adam`` too) alone: the same weights and every other
    option; its meta records the options. The digits file K25 names as the one before ``lift_growing`` is the slack's
    before-file with ``guard_slack`` 2, and the one K26 names as before ``heads_adam`` is K25's with ``lift_growing``
    False, and K27's before ``heads_adam_min_horizon`` K26's with ``heads_adam``."""
    from agents.learned.checkpoint import with_options

    before = load_rule(_BEFORE_SLACK / f"learned_mlp_{suite}_before.pt")[1]
    _, shipped, meta = load_rule(pretrained_path("learned_mlp", suite))
    assert before.config.guard_slack == 10.0 and shipped.config.guard_slack == 2.0
    assert with_options("learned_mlp", before, **_SINCE_SLACK[suite]).config == shipped.config
    expected, got = before.state_dict(), shipped.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert {k: meta["added_options"][k] for k in _SINCE_SLACK[suite]} == _SINCE_SLACK[suite]
    if suite == "digits":
        k25 = load_rule(Path(__file__).parents[1] / "docs/sealed/general/k25/learned_mlp_digits_before.pt")[1]
        assert with_options("learned_mlp", before, guard_slack=2.0).config == k25.config
        assert all(torch.equal(expected[k], v) for k, v in k25.state_dict().items())
        k26 = load_rule(Path(__file__).parents[1] / "docs/sealed/general/k26/learned_mlp_digits_before.pt")[1]
        assert with_options("learned_mlp", k25, lift_growing=False).config == k26.config
        k27 = load_rule(Path(__file__).parents[1] / "docs/sealed/general/k27/learned_mlp_digits_before.pt")[1]
        assert with_options("learned_mlp", k26, **{**_HEADS_ADAM, "heads_adam_min_horizon": 0}).config == k27.config
        assert with_options("learned_mlp", k27, heads_adam_min_horizon=100).config == shipped.config
        for older in (k26, k27):
            assert older.state_dict().keys() == expected.keys()
            assert all(torch.equal(expected[k], v) for k, v in older.state_dict().items())


def test_guard_slack_2_stops_the_second_move_of_a_block_not_yet_armed() -> None:
    """Game 1011 at condition 1e5 under ``sum``: the quadratic specialist's block whose gradient shrank on its first
    move (so its cap does not hold yet) took a second step ``guard_slack`` = 10 times the stable one, and the game
    diverged; at the shipped 2 it does not."""
    game = stiff_game("sum", 1000, 1e5, 1011)
    assert play(_rule_file(_BEFORE_SLACK / "learned_mlp_quadratic_before.pt"), game, [1])[0].all()
    assert not play(shipped_rule("learned_mlp", "quadratic"), game, [1])[0].any()


@pytest.mark.parametrize("consensus", ["sum", "upgrad"])
def test_the_guard_keeps_the_result_where_the_step_is_safe(consensus: str) -> None:
    """At condition 10 (the training family's low end) the shipped quadratic MLP rule's steps are safe: the guard
    caps at most a rare head step (its loose bound, 10× the secant's): the final gaps stay within 10 % of the
    unguarded ones. Without the trunk boost the shipped file adds (tenth session): the boost raises the trunk step
    up to 10×, past where it is safe, and the guard then acts (with it the final gaps here are 1000× lower, 3e-9 to
    2.4e-8 of the floor, and one game's guarded gap is 3× its unguarded one)."""
    name, suite = "learned_mlp", "quadratic"
    game = stiff_game(consensus, 100, condition=10.0)
    guarded = play(shipped_rule(name, suite, trunk_boost=0.0), game, [0, 1, 2])[2]
    plain = play(shipped_rule(name, suite, trunk_boost=0.0, guard=False), game, [0, 1, 2])[2]
    floor = float(loss_floor(game.suite))
    assert torch.equal(guarded[0], plain[0])  # the first move is within the trust radius here
    torch.testing.assert_close(guarded[-1] - floor, plain[-1] - floor, rtol=0.1, atol=1e-9)  # 6 % apart, one game


#: Two quadratic draws of the validation stream (options, game seed) where the first guard's secant stalled the
#: generalist: the trunk's (proposals cancelling near the trunk equilibrium, ‖ΔΨ‖ → 0) and the heads' (a capped head
#: reading the trunk's effect on its gradient as curvature).
_STALLED = [
    ({"num_tasks": 3, "head_dim": 3, "trunk_dim": 15, "condition": 36.623964693048215, "game_seed": 1871246890},
     2358314652245563591),
    ({"num_tasks": 4, "head_dim": 1, "trunk_dim": 13, "condition": 242.5063625585759, "game_seed": 863870323},
     3177455851425663739),
]  # fmt: skip


@pytest.mark.parametrize(("options", "seed"), _STALLED)
def test_the_bounded_secant_lets_a_benign_game_converge_as_unguarded(options: dict[str, float], seed: int) -> None:
    """On a well-conditioned game the guard should not bind: with the bounded secant (the default) the generalist as
    meta-trained (the file K3 and K4 scored, before its trunk AMSGrad share was added; no trunk boost) ends within 1e-8
    of its start of where it ends unguarded; the first secant (``"shorter"``) stalled it above (by 1e-4 to 1e-3 of its
    start: the cap, different for every player, moved the trunk's fixed point)."""
    suite = QuadraticSuite(**options, dtype="float64")  # type: ignore[arg-type]
    game = Game(suite, mtg_env.consensus.consensus_rule("sum", num_tasks=int(options["num_tasks"])), horizon=100)
    finals = {}
    for label, config in (("free", {"guard": False}), ("first", {"guard_secant": "shorter"}), ("bounded", {})):
        rule = _rule_file(_TRAINED_GENERALIST, trunk_boost=0.0, **config)  # the guard alone moves the trunk
        diverged, final, history = play(rule, game, [seed])
        assert not diverged.any()
        finals[label], start = float(final[0]), float(history[0][0])
    assert finals["bounded"] <= finals["free"] + 1e-8 * start
    assert finals["first"] > finals["free"] + 5e-5 * start


@pytest.mark.parametrize("name", ["learned_mlp", "learned_lstm", "learned_step"])
def test_both_forms_agree_with_the_guard_active(name: str) -> None:
    """The env's per-agent players and the batched driver play the same guarded updates on a stiff game, where the
    guard engages (without it these games blow up)."""
    suite = {"learned_mlp": "quadratic", "learned_lstm": "quadratic", "learned_step": "regression"}[name]
    rule = shipped_rule(name, suite)
    mode = _mode(name)
    kwargs = {"num_tasks": 3, "head_dim": 2, "trunk_dim": 8, "condition": 1e5, "game_seed": 1000}
    env = make_env(
        "quadratic", mode, max_update=None, max_cycles=12, dtype="float64", update_units="raw",
        log_step_range=(-12.0, 2.0), **kwargs,
    )  # fmt: skip
    obs, infos = env.reset(seed=3)
    players = {a: LearnedAgent(rule, name) for a in env.agents}
    for a in env.agents:
        players[a].reset(obs[a], infos[a], env.action_space(a))
    driver = EngineDriver(rule, env.game, log_step_range=env.log_step_range)
    state, out = engine.reset(env.game, [3])
    memory = driver.start(out)
    for t in range(12):
        actions = {a: players[a].act(obs[a], infos[a]) for a in env.agents}
        with torch.no_grad():
            batched, memory = driver.act(state, out, memory)
        for m, a in enumerate(env.agents):
            if mode == "update":
                head_updates, proposals = batched
                lo = env.suite.head_offsets[m]
                expected = np.concatenate([head_updates[0, lo : lo + 2].numpy(), proposals[0, m].numpy()])
            else:
                expected = batched[0, m].numpy()
                if env.step_size_units == "unit":
                    lo, hi = env.log_step_range
                    expected = 2.0 * (expected - lo) / (hi - lo) - 1.0
            # The shipped rules compute in float32: their batched matmuls may round differently from the lone
            # player's (by an ulp, on MKL branches other than this machine's AVX-512 one), and the stiff game
            # amplifies a relative perturbation by up to its condition number (float32 eps · 1e5 ≈ 1.2e-2; seen: the
            # LSTM 2.2e-4 at step 6, the MLP rule 2e-7 at step 0 under MKL_CBWR=AVX2).
            rtol = float(np.finfo(np.float32).eps) * kwargs["condition"]
            np.testing.assert_allclose(actions[a], expected, rtol=rtol, atol=1e-7, err_msg=f"step {t}, {a}")
        obs, _, terminations, _, infos = env.step(actions)
        state, out = engine.step(env.game, state, batched)
        assert not any(terminations.values()), f"step {t}: the game diverged"
    assert float(memory["guard_seen"].min()) == 1.0  # every block moved and has a curvature estimate


def test_the_guard_is_on_by_default_and_a_rule_file_keeps_it_off(tmp_path: object) -> None:
    """The shipped files predate the option and play it on; a rule saved with it off loads with it off."""
    for name, suite in SHIPPED:
        assert load_rule(pretrained_path(name, suite))[1].config.guard
    rule = shipped_rule("learned_step", "regression", guard=False)
    path = save_rule(tmp_path / "r.pt", "learned_step", rule)  # type: ignore[operator]
    loaded = load_rule(path)[1]
    assert isinstance(loaded, StepRule) and not loaded.config.guard


def test_meta_training_runs_without_the_guard_unless_asked() -> None:
    """The guard is a safeguard of play: a run meta-trains the rule as the shipped ones were (no guard), unless its
    ``rule`` or ``train_rule`` asks; the played rule (``best.pt``) keeps the guard on."""
    from agents.learned.train import MetaTrainConfig

    plain = MetaTrainConfig(agent="learned_mlp", suite="quadratic")
    assert plain.training_rule_options()["guard"] is False
    assert "guard" not in plain.rule_options()  # best.pt: the rule's default, on
    asked = MetaTrainConfig(agent="learned_mlp", suite="quadratic", train_rule={"guard": True})
    assert asked.training_rule_options()["guard"] is True


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("guard_memory", 5.0, r"guard_memory must be a number in \[0, 1\], got 5.0"),
     ("guard_step", 0.0, "guard_step must be a finite number > 0"),
     ("guard_radius", float("nan"), "guard_radius must be a finite number > 0"),
     ("guard_growth", -1.0, "guard_growth must be a finite number > 0"),
     ("guard_slack", 0.5, "guard_slack must be a number >= 1"),
     ("guard_free", True, "guard_free must be a number >= 1")],
)  # fmt: skip
@pytest.mark.parametrize("name", ["learned_mlp", "learned_lstm", "learned_step"])
def test_a_guard_option_outside_its_range_is_refused(name: str, field: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        new_rule(name, **{field: value})
    with pytest.raises(TypeError, match="guard must be a bool, got 1"):
        new_rule(name, guard=1)


def test_the_digits_specialists_restart_held_where_a_gradient_grew_keeps_its_stiff_mgda_game_stable() -> None:
    """Game 1004 at condition 1e5 under ``mgda``, 1 000 steps: with ``lift_growing = False`` (shipped since the
    thirtieth session) the digits specialist does not diverge, and the option acts there (the play differs from the
    file before it). The file before drifted up from step 400 to a blow-up at step 956 on this machine's own MKL
    branch, but not under ``MKL_CBWR=COMPATIBLE``: a slow drift follows the rounding, so that is not asserted here
    (docs/results/learned.md, thirtieth session). Known divergence: under ``MKL_CBWR=COMPATIBLE`` on an Intel Xeon
    with AVX-512 (thirty-first session) the shipped file's drift reaches a blow-up in play seed 0 (not on the AMD EPYC
    the thirtieth session checked, nor under the other branches on either): there only play seed 1 is asserted."""
    game = stiff_game("mgda", 1000, 1e5, 1004)
    before = Path(__file__).parents[1] / "docs" / "sealed" / "general" / "k25" / "learned_mlp_digits_before.pt"
    diverged, final, _ = play(shipped_rule("learned_mlp", "digits"), game, [0, 1])
    known = os.environ.get("MKL_CBWR", "").upper().startswith("COMPATIBLE")
    assert not (diverged[1:] if known else diverged).any()
    _, final_before, _ = play(_rule_file(before), game, [0])
    assert not torch.equal(final[:1], final_before)
