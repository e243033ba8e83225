"""The tuning protocol: its declared budget, the batched path against the env path, and the choice it makes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from agents import AdamAgent, GradientAgent, SelfishAgent
from agents.batched import BatchedBaseline
from mtg_env.tuning import (
    Baseline,
    Selfish,
    TuningProtocol,
    Workload,
    evaluate,
    play,
    relative_score,
    tune,
    tune_family,
)

SMALL = {
    "quadratic": (),
    "regression": (("trunk", "mlp"), ("hidden", 8)),
    "digits": (("hidden", (16, 8)), ("batch_size", 32)),
    "toy2d": (),
}


def workload(suite: str, rule: str = "sum", horizon: int = 12) -> Workload:
    return Workload(suite, rule, horizon=horizon, suite_options=SMALL[suite])


# ------------------------------------------------------------------------------------------ protocol
def test_the_grid_has_three_points_per_decade_and_declares_its_budget() -> None:
    protocol = TuningProtocol(low=1e-3, high=1.0, points_per_decade=3, tuning_seeds=(7, 8, 9), eval_seeds=(0, 1))
    lrs = protocol.step_sizes()
    assert len(lrs) == 10
    np.testing.assert_allclose(np.diff(np.log10(lrs)), 1 / 3, rtol=1e-12)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1.0)
    assert protocol.budget == 30
    d = protocol.to_dict()
    assert d["budget"] == 30 and d["step_sizes"] == list(lrs) and d["tuning_seeds"] == (7, 8, 9)
    assert "10 step sizes" in protocol.describe() and "30 trials" in protocol.describe()


def test_quasirandom_search_is_log_uniform_deterministic_and_in_range() -> None:
    protocol = TuningProtocol(low=1e-4, high=1e-1, search="quasirandom", trials=16)
    lrs = protocol.step_sizes()
    assert lrs == protocol.step_sizes() and len(lrs) == 16 and protocol.budget == 32
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
    # the base-2 van der Corput points 1/2, 1/4, 3/4, 1/8, ... : the first 16 are k/16 (k = 1..15) and 1/32
    expected = np.sort(np.r_[np.arange(1, 16) / 16, 1 / 32])
    np.testing.assert_allclose(np.log10(lrs), -4 + 3 * expected, rtol=0, atol=1e-12)
    assert len(set(lrs)) == 16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tuning_seeds": (1, 2), "eval_seeds": (2, 3)}, "disjoint"),
        ({"points_per_decade": 2}, "points_per_decade"),
        ({"points_per_decade": True}, "points_per_decade"),
        ({"low": 1.0, "high": 0.1}, "low < high"),
        ({"low": 0.0}, "low"),
        ({"high": "1"}, "high"),
        ({"search": "quasirandom"}, "trials"),
        ({"search": "random"}, "search"),
        ({"tuning_seeds": (1, 1)}, "repeats"),
        ({"tuning_seeds": ()}, "tuning_seeds"),
        ({"eval_seeds": [0, 1]}, "eval_seeds"),
        ({"tuning_seeds": (-1,)}, "tuning_seeds"),
    ],
)
def test_bad_protocols_are_refused_with_the_argument_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TuningProtocol(**kwargs)


# ------------------------------------------------------------------------------ batched == env path
@pytest.mark.parametrize("suite", ["quadratic", "regression", "toy2d", "digits"])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("gradient", {}),
        ("gradient", {"schedule": "robbins_monro"}),
        ("momentum", {"momentum": 0.8}),
        ("adam", {}),
        ("rmsprop", {}),
    ],
)
def test_the_batched_path_gives_the_env_paths_numbers(suite: str, name: str, kwargs: dict[str, Any]) -> None:
    # One large step size diverges on most suites: a diverged game must match too (curve up to the divergence).
    w = workload(suite, "mean" if suite == "digits" else "sum")
    factory = Baseline(name, **kwargs)
    lrs, seeds = [0.01, 0.9, 0.05], [5, 6, 7]
    batched = play(w, factory, lrs, seeds, batched=True)
    one_by_one = play(w, factory, lrs, seeds, batched=False)
    for b, (x, y) in enumerate(zip(batched, one_by_one, strict=True)):
        assert x.to_dict() == y.to_dict(), f"game {b} (lr {lrs[b]}) differs"
    assert [r.lrs[0] for r in batched] == lrs and [r.seed for r in batched] == seeds


@pytest.mark.parametrize("suite", ["regression", "digits"])
@pytest.mark.parametrize("name", ["adam", "rmsprop", "momentum", "gradient"])
def test_the_batched_path_gives_the_env_paths_numbers_in_float64(suite: str, name: str) -> None:
    # float64 games keep every ulp of the players' float64 arithmetic (float32 games round most away): the batched
    # adaptive rules' square root must be the numpy players' correctly rounded one, not MKL's (one ulp apart).
    w = Workload(suite, "sum", horizon=12, suite_options=SMALL[suite], dtype="float64")
    lrs, seeds = [0.01, 0.05], [5, 6]
    batched = play(w, Baseline(name), lrs, seeds, batched=True)
    one_by_one = play(w, Baseline(name), lrs, seeds, batched=False)
    for b, (x, y) in enumerate(zip(batched, one_by_one, strict=True)):
        assert x.to_dict() == y.to_dict(), f"game {b} (lr {lrs[b]}) differs"


def test_a_game_does_not_depend_on_the_others_in_its_batch() -> None:
    w = workload("regression", "upgrad")
    alone = play(w, Baseline("adam"), [0.02], [11])[0]
    among = play(w, Baseline("adam"), [0.5, 0.02, 0.001], [3, 11, 4])[1]
    assert alone.to_dict() == among.to_dict()


def test_a_mixed_population_plays_each_tasks_own_player() -> None:
    w = workload("quadratic", "sum", horizon=10)
    players = [Baseline("adam"), Baseline("gradient"), Baseline("momentum", momentum=0.5)]
    lrs = [[0.05, 0.01, 0.02], [0.1, 0.03, 0.01]]
    batched = play(w, players, lrs, [0, 1])
    plain = play(w, [lambda lr: AdamAgent(lr=lr), lambda lr: GradientAgent(lr=lr), players[2]], lrs, [0, 1])
    assert [r.to_dict() for r in batched] == [r.to_dict() for r in plain]
    assert batched[0].lrs == [0.05, 0.01, 0.02]


def test_batched_forms_refuse_what_they_cannot_play() -> None:
    w = workload("quadratic")
    with pytest.raises(ValueError, match="batched form"):
        play(w, lambda lr: GradientAgent(lr=lr), [0.1], [0], batched=True)
    with pytest.raises(ValueError, match="no batched form"):
        BatchedBaseline("nope", w.make_env().game, np.array([0.1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one factory or one per task"):
        play(w, [Baseline("adam")] * 2, [0.1], [0])
    with pytest.raises(ValueError, match="step sizes must be finite"):
        play(w, Baseline("adam"), [-0.1], [0])
    with pytest.raises(ValueError, match="unknown baseline"):
        Baseline("sgd")
    with pytest.raises(ValueError, match="trunk_ratio"):
        Baseline("adam", trunk_lr=0.1)


# ------------------------------------------------------------------------------------------- tune
def test_tune_keeps_the_lowest_mean_final_loss_and_counts_divergence_as_inf() -> None:
    protocol = TuningProtocol(low=1e-2, high=3.0, tuning_seeds=(100, 101), eval_seeds=(0, 1, 2))
    w = workload("quadratic", "sum", horizon=25)
    result = tune(Baseline("gradient"), w, protocol)
    lrs = protocol.step_sizes()
    assert result.step_sizes == list(lrs) and result.protocol["budget"] == protocol.budget
    # by hand: every trial, the mean over the tuning seeds of the summed final training loss
    for lr, score, diverged in zip(lrs, result.scores, result.diverged, strict=True):
        games = play(w, Baseline("gradient"), [lr, lr], [100, 101], batched=False)
        expected = [g.score for g in games]
        assert diverged == sum(g.diverged for g in games)
        assert score == (np.mean(expected) if all(map(math.isfinite, expected)) else math.inf)
    assert math.isinf(result.scores[-1]) and result.diverged[-1] == 2  # lr 3 diverges on this game
    finite = [s for s in result.scores if math.isfinite(s)]
    assert result.best_lr == lrs[result.scores.index(min(finite))] and not result.all_diverged
    assert result.to_dict()["scores"][-1] == "inf"


def test_tune_family_keeps_one_step_size_for_every_draw_by_the_mean_relative_loss() -> None:
    """A family's draws have losses of different scales: each trial scores (L_T − f) / (L_0 − f) with its draw's
    floor, and the step size with the lowest mean over every draw and tuning seed wins."""
    protocol = TuningProtocol(low=1e-2, high=3.0, tuning_seeds=(100, 101), eval_seeds=(0,))
    draws = [
        Workload("quadratic", "sum", 25, (("condition", 10.0), ("game_seed", 1))),
        Workload("quadratic", "sum", 25, (("condition", 100.0), ("game_seed", 2), ("trunk_dim", 6))),
    ]
    floors = [-1.0, -2.0]
    result = tune_family(Baseline("gradient"), draws, protocol, floors)
    lrs = protocol.step_sizes()
    for lr, score in zip(lrs, result.scores, strict=True):
        rel = [
            relative_score(g, floor)
            for w, floor in zip(draws, floors, strict=True)
            for g in play(w, Baseline("gradient"), [lr, lr], [100, 101], batched=False)
        ]
        assert score == pytest.approx(np.mean(rel) if all(map(math.isfinite, rel)) else math.inf, rel=1e-12)
    finite = [s for s in result.scores if math.isfinite(s)]
    assert result.best_lr == lrs[result.scores.index(min(finite))]
    assert "2 draws of quadratic/sum/T25" in result.workload
    # a step size stable on the first draw but not on the stiffer second is not kept
    alone = tune(Baseline("gradient"), draws[0], protocol)
    assert result.best_lr <= alone.best_lr


def test_tune_family_refuses_a_bad_family() -> None:
    protocol = TuningProtocol(low=1e-2, high=1.0, tuning_seeds=(1,), eval_seeds=(0,))
    with pytest.raises(ValueError, match="at least one workload"):
        tune_family(Baseline("gradient"), [], protocol)
    with pytest.raises(ValueError, match="one floor per workload"):
        tune_family(Baseline("gradient"), [workload("quadratic")], protocol, floors=[0.0, 1.0])


def test_tune_accepts_any_policy_factory() -> None:
    protocol = TuningProtocol(low=1e-2, high=1.0, tuning_seeds=(5,), eval_seeds=(0,))
    w = workload("regression", "mean")
    user = tune(lambda lr: AdamAgent(lr=lr), w, protocol)
    baseline = tune(Baseline("adam"), w, protocol)
    assert user.scores == baseline.scores and user.best_lr == baseline.best_lr


def test_evaluate_plays_the_chosen_step_size_on_the_held_out_seeds() -> None:
    w = workload("digits", "mean", horizon=5)
    results = evaluate(Baseline("adam"), w, 0.01, [0, 1])
    assert [r.seed for r in results] == [0, 1] and all(r.lrs == [0.01] * 4 for r in results)
    for r in results:
        assert r.final_train_loss is not None and len(r.final_train_loss) == 4
        assert r.nash_gap is not None and min(r.nash_gap) >= 0.0
        assert r.held_out is not None and len(r.held_out) == 4
        assert len(r.curve) == 6 and sum(r.final_train_loss) < sum(r.initial_train_loss)


def test_the_selfish_deviator_batched_matches_its_numpy_form() -> None:
    w = workload("regression", "sum", horizon=10)
    players = [Selfish(Baseline("gradient"), 3.0), Baseline("gradient"), Baseline("gradient")]
    batched = play(w, players, [0.05, 0.02], [0, 1], batched=True)
    plain = play(w, players, [0.05, 0.02], [0, 1], batched=False)
    assert [r.to_dict() for r in batched] == [r.to_dict() for r in plain]


def test_selfish_agent_scales_only_its_trunk_proposal() -> None:
    h, n = 2, 3
    info = {"head_size": h, "trunk_size": n, "action_mode": "update"}
    space = spaces.Box(-1e6, 1e6, (h + n,), np.float64)
    g = np.array([1.0, -2.0, 0.5, 0.25, -4.0, 0, 0, 0, 0, 0, 0, 0])
    agent = SelfishAgent(GradientAgent(lr=0.1), scale=5.0)
    agent.reset(g, info, space)
    np.testing.assert_allclose(agent.act(g, info), [-0.1, 0.2, -0.25, -0.125, 2.0])
    assert repr(agent) == "SelfishAgent(GradientAgent(lr=0.1, schedule='constant'), scale=5.0)"
    with pytest.raises(ValueError, match="scale"):
        SelfishAgent(GradientAgent(), scale=0.0)
