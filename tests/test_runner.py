"""run_episode, History and make_agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents import (
    AGENTS,
    AdamAgent,
    GradientAgent,
    History,
    MomentumAgent,
    RMSpropAgent,
    make_agents,
    run_episode,
)
from tests.conftest import SMALL_SUITES, make_env

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN / Infinity, which are not JSON (RFC 8259)."""

    def refuse(name: str) -> None:
        raise ValueError(f"not valid JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def play(
    suite: str, steps: int, seed: int = 0, agent: str = "gradient", evaluate: bool = True, **env_kw: Any
) -> tuple[Any, History]:
    env = make_env(suite, max_cycles=steps, **env_kw)
    return env, run_episode(env, make_agents(agent, env), seed=seed, evaluate=evaluate)


# ------------------------------------------------------------------------------------ shapes
def test_quadratic_history_shapes() -> None:
    env, h = play("quadratic", 15)
    m = len(env.possible_agents)
    assert m == 3
    assert h.agents == env.possible_agents
    assert h.tasks == [f"quadratic_{i}" for i in range(m)]
    assert h.losses.shape == (16, m)
    assert h.rewards.shape == (15, m)
    assert h.nash_gap is not None and h.nash_gap.shape == (16, m)
    assert h.steps == 15
    assert h.terminated is False
    assert h.losses.dtype == h.rewards.dtype == np.float64
    assert np.all(h.nash_gap >= 0)
    # gradient play on the quadratic game drives the Nash gap down
    assert np.all(h.nash_gap[-1] < h.nash_gap[0])


def test_digits_history_has_no_per_step_nash_gap() -> None:
    _, h = play("digits", 4, evaluate=False)
    assert h.nash_gap is None
    assert h.tasks == ["digit", "parity", "ge5", "ink"]
    assert h.losses.shape == (5, 4)
    assert h.rewards.shape == (4, 4)


@pytest.mark.parametrize("suite", list(SMALL_SUITES))
def test_rewards_are_minus_the_batch_losses(suite: str) -> None:
    _, h = play(suite, 6, evaluate=False)
    np.testing.assert_array_equal(h.rewards, -h.losses[1:])
    assert np.all(np.isfinite(h.losses))


@pytest.mark.parametrize("suite", list(SMALL_SUITES))
def test_history_matches_a_hand_played_episode(suite: str) -> None:
    _, h = play(suite, 5, seed=11, evaluate=False)
    env2 = make_env(suite, max_cycles=5)
    obs, infos = env2.reset(seed=11)
    policies = make_agents("gradient", env2)
    for a in env2.agents:
        policies[a].reset(obs[a], infos[a], env2.action_space(a))
    losses = [[infos[a]["loss"] for a in env2.possible_agents]]
    rewards = []
    while env2.agents:
        obs, rew, _, _, infos = env2.step({a: policies[a].act(obs[a], infos[a]) for a in env2.agents})
        losses.append([infos[a]["loss"] for a in env2.possible_agents])
        rewards.append([rew[a] for a in env2.possible_agents])
    np.testing.assert_array_equal(h.losses, losses)
    np.testing.assert_array_equal(h.rewards, rewards)


def test_same_seed_same_history_other_seed_other_history() -> None:
    _, a = play("regression", 12, seed=3)
    _, b = play("regression", 12, seed=3)
    _, c = play("regression", 12, seed=4)
    assert np.array_equal(a.losses, b.losses)
    assert np.array_equal(a.rewards, b.rewards)
    assert a.final == b.final
    assert not np.array_equal(a.losses, c.losses)


# ------------------------------------------------------------------------------------- final
def test_final_on_quadratic() -> None:
    env, h = play("quadratic", 30, dtype="float64")
    assert set(h.final) == set(env.possible_agents)
    assert h.nash_gap is not None
    for m, a in enumerate(env.possible_agents):
        row = h.final[a]
        assert row["task"] == f"quadratic_{m}"
        assert set(row) == {"task", "train_loss", "nash_gap"}  # a game without data: no held-out metric
        # a deterministic game: the training objective is the batch loss, the gap the last recorded one
        assert row["train_loss"] == pytest.approx(h.losses[-1, m], rel=1e-12, abs=1e-14)
        assert row["nash_gap"] == pytest.approx(h.nash_gap[-1, m], rel=1e-12, abs=1e-300)


def test_final_on_digits() -> None:
    env, h = play("digits", 10)
    assert [h.final[a]["task"] for a in env.possible_agents] == ["digit", "parity", "ge5", "ink"]
    for a in env.possible_agents:
        row = h.final[a]
        assert np.isfinite(row["train_loss"]) and row["train_loss"] >= 0
        assert 0.0 <= row["nash_gap"] <= row["train_loss"] + 1e-6  # every loss here is >= 0
        if row["task"] == "ink":
            assert "test_accuracy" not in row
            assert row["test_mse"] > 0
        else:
            assert "test_mse" not in row
            assert 0.0 <= row["test_accuracy"] <= 1.0


def test_final_on_regression() -> None:
    env, h = play("regression", 10)
    for m, a in enumerate(env.possible_agents):
        row = h.final[a]
        assert row["task"] == f"reg_{m}"
        assert set(row) == {"task", "train_loss", "test_mse", "nash_gap"}
        assert row["nash_gap"] >= 0 and row["test_mse"] > 0


def test_digits_ink_nash_gap_is_the_least_squares_gap() -> None:
    """The ink head's Nash gap is an exact least-squares gap; check it against numpy's solver.

    Seed 0 leaves dead ReLU units in the small trunk, so the design matrix is rank deficient.
    """
    env, h = play("digits", 20, seed=0)
    heads, trunk = env.get_parameters()
    x, _, ink = env.suite.train_batch()
    feats = env.suite.features(trunk, x).double().cpu().numpy()
    design = np.c_[feats, np.ones(len(feats))]
    target = ink.double().cpu().numpy()
    w = env.suite.split_heads(heads)[3].double().cpu().numpy()
    best = np.linalg.lstsq(design, target, rcond=None)[0]
    gap = np.mean((design @ w - target) ** 2) - np.mean((design @ best - target) ** 2)
    assert gap > 0.01
    assert h.final["task_3"]["nash_gap"] == pytest.approx(gap, rel=1e-6)


def test_evaluate_false_leaves_final_empty() -> None:
    env = make_env("quadratic", max_cycles=3)
    h = run_episode(env, make_agents("gradient", env), seed=0, evaluate=False)
    assert h.final == {}
    assert h.steps == 3


@pytest.mark.parametrize("threshold", [1e3, None])
def test_divergence_is_recorded(threshold: float | None) -> None:
    env = make_env("quadratic", dtype="float64", max_update=1e300, max_cycles=200, divergence_threshold=threshold)
    h = run_episode(env, make_agents("gradient", env, lr=10.0), seed=0)
    assert h.terminated is True
    assert h.steps < 200
    assert h.final == {}  # no evaluation of a diverged game
    if threshold is None:  # only a non-finite loss ends the game
        assert not np.all(np.isfinite(h.losses[-1]))
    else:  # a loss beyond 1000 times its start ends it first, while everything is still finite
        assert np.isfinite(h.losses).all() and np.abs(h.losses[-1]).max() > 1e3 * max(1, np.abs(h.losses[0]).max())
    assert np.all(np.isfinite(h.rewards))  # rewards stay finite


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env("quadratic", max_cycles=3)
    run_episode(env, make_agents("gradient", env), seed=0, progress=True)
    captured = capsys.readouterr()
    assert "mtg_quadratic_v6" in captured.err
    assert "3/3" in captured.err
    assert captured.out == ""


# ------------------------------------------------------------------------------ save and plot
def test_save_writes_the_history_as_json(tmp_path: Path) -> None:
    _, h = play("quadratic", 8)
    path = tmp_path / "history.json"
    h.save(path)
    data = strict_json(path.read_text())
    assert data == json.loads(json.dumps(h.to_dict()))
    assert data["agents"] == h.agents and data["tasks"] == h.tasks
    assert data["steps"] == 8 and data["terminated"] is False
    np.testing.assert_array_equal(np.asarray(data["losses"]), h.losses)
    np.testing.assert_array_equal(np.asarray(data["rewards"]), h.rewards)
    np.testing.assert_array_equal(np.asarray(data["nash_gap"]), h.nash_gap)
    assert set(data["final"]) == set(h.agents)


def test_save_without_nash_gap(tmp_path: Path) -> None:
    _, h = play("regression", 3)
    h.save(tmp_path / "h.json")
    data = strict_json((tmp_path / "h.json").read_text())
    assert data["nash_gap"] is None
    assert len(data["losses"]) == 4


def test_save_of_a_diverged_episode_is_valid_json(tmp_path: Path) -> None:
    env = make_env("quadratic", dtype="float64", max_update=1e300, max_cycles=200)
    h = run_episode(env, make_agents("gradient", env, lr=10.0), seed=0)
    assert h.terminated
    h.save(tmp_path / "h.json")
    data = strict_json((tmp_path / "h.json").read_text())  # inf / nan must not leak as Infinity / NaN
    assert data["terminated"] is True


def test_plot_quadratic_writes_loss_and_gap_pngs(tmp_path: Path) -> None:
    _, h = play("quadratic", 10)
    out = tmp_path / "nested" / "plots"
    paths = h.plot(out)
    assert [p.name for p in paths] == ["losses.png", "nash_gap.png"]
    for p in paths:
        assert p.parent == out
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 5000  # a real figure, not an empty file


def test_plot_digits_writes_only_losses(tmp_path: Path) -> None:
    _, h = play("digits", 3, evaluate=False)
    paths = h.plot(tmp_path)
    assert [p.name for p in paths] == ["losses.png"]
    assert (tmp_path / "losses.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not (tmp_path / "nash_gap.png").exists()


# -------------------------------------------------------------------------------- make_agents
def test_make_agents_builds_one_fresh_player_per_agent() -> None:
    env = make_env("quadratic")
    assert {"adam", "gradient", "momentum", "rmsprop", "learned_mlp", "learned_lstm", "learned_step"} <= set(AGENTS)
    assert (AGENTS["gradient"], AGENTS["adam"], AGENTS["rmsprop"]) == (GradientAgent, AdamAgent, RMSpropAgent)
    assert AGENTS["momentum"] is MomentumAgent
    players = make_agents("adam", env, lr=0.02, trunk_lr=0.01)
    assert list(players) == env.possible_agents
    assert all(type(p) is AdamAgent and p.lr == 0.02 and p.trunk_lr == 0.01 for p in players.values())
    assert len({id(p) for p in players.values()}) == len(players)


def test_make_agents_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown agent"):
        make_agents("sgd", make_env("quadratic"))


def test_missing_policy_raises() -> None:
    env = make_env("quadratic", max_cycles=3)
    policies = make_agents("gradient", env)
    del policies["task_1"]
    with pytest.raises(ValueError, match="task_1"):
        run_episode(env, policies, seed=0)
