"""EnvConfig: every env option in one frozen dataclass, checked once; the env, the vector env and their adapters
built from it play the same games as from keyword arguments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env import EnvConfig
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.envs.vector import VectorGameEnv
from mtg_env.suites import make_suite

QUADRATIC = {"suite": "quadratic", "max_cycles": 6, "max_update": 100.0, "condition": 5.0}


def test_from_kwargs_splits_env_options_from_suite_options_and_round_trips() -> None:
    cfg = EnvConfig.from_kwargs(**QUADRATIC, consensus="mean")
    assert cfg.suite == "quadratic" and cfg.consensus == "mean" and cfg.max_cycles == 6
    assert dict(cfg.suite_kwargs) == {"condition": 5.0}
    assert cfg.kwargs()["condition"] == 5.0 and cfg.kwargs()["consensus"] == "mean"
    assert EnvConfig.from_kwargs(**cfg.kwargs()) == cfg
    assert "suite_kwargs" not in cfg.kwargs()


def test_a_config_is_frozen_and_replace_checks_again() -> None:
    cfg = EnvConfig(suite="quadratic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_cycles = 3  # type: ignore[misc]
    assert dataclasses.replace(cfg, max_cycles=3).max_cycles == 3
    with pytest.raises(ValueError, match=r"max_cycles must be an int >= 1 .*got 0"):
        dataclasses.replace(cfg, max_cycles=0)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"action_mode": "steps"}, ValueError, "action_mode must be 'update' or 'step_size'"),
        ({"max_cycles": 2.7}, TypeError, r"max_cycles must be an int >= 1 \(steps before truncation\), got float 2.7"),
        ({"max_cycles": 2**62 + 1}, ValueError, r"max_cycles must be at most 2\*\*62"),
        ({"update_units": "pixels"}, ValueError, "update_units must be 'relative'"),
        ({"divergence_reward": float("nan")}, ValueError, "divergence_reward must be 'remaining', 'clipped_loss' or a"),
        ({"step_size_units": "bits"}, ValueError, "step_size_units must be 'unit'"),
        ({"log_step_range": (1.0, -1.0)}, ValueError, "log_step_range must be finite"),
        ({"render_mode": "movie"}, ValueError, "render_mode must be one of"),
        ({"trunk_optimizer_kwargs": {"lr": 0.1}}, ValueError, "trunk_optimizer_kwargs"),
        ({"consensus_kwargs": [1]}, TypeError, "consensus_kwargs must be a dict"),
    ],
)
def test_config_refuses_what_the_env_refuses_with_the_same_message(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EnvConfig(suite="quadratic", **options)
    with pytest.raises(error, match=message):
        mtg_env.parallel_env(suite="quadratic", **options)


def test_game_and_config_share_one_check_of_each_game_option() -> None:
    """The checks the env and Game both made are written once: Game names its own argument, with the same text."""
    suite = make_suite("quadratic")
    rule = consensus_rule("sum")
    with pytest.raises(TypeError, match=r"horizon \(max_cycles\) must be an int >= 1 \(steps before truncation\)"):
        Game(suite, rule, horizon=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"update_units must be 'relative' .* got 'pixels'"):
        Game(suite, rule, update_units="pixels")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"divergence_reward must be finite in torch.float32"):
        Game(suite, rule, divergence_reward=1e300)
    with pytest.raises(ValueError, match=r"divergence_reward must be finite in torch.float32"):
        mtg_env.parallel_env(suite="quadratic", divergence_reward=1e300)


def test_from_config_plays_the_game_of_the_same_keyword_arguments_bit_for_bit() -> None:
    cfg = EnvConfig.from_kwargs(**QUADRATIC, consensus="upgrad", trunk_optimizer="adam")
    a, b = mtg_env.MultiTaskGameEnv.from_config(cfg), mtg_env.parallel_env(**cfg.kwargs())
    assert a.config == b.config == cfg
    assert repr(a) == repr(b)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    gen = np.random.default_rng(0)
    for t in range(5):
        actions = {agent: gen.uniform(-0.2, 1.0, a.action_space(agent).shape).astype(np.float32) for agent in a.agents}
        obs_a, rew_a, *_ = a.step(actions)
        obs_b, rew_b, *_ = b.step(actions)
        assert rew_a == rew_b, f"step {t}"
        for agent in a.agents:
            np.testing.assert_array_equal(obs_a[agent], obs_b[agent], err_msg=f"step {t}, {agent}")
    with pytest.raises(TypeError, match=r"config must be a mtg_env\.EnvConfig"):
        mtg_env.MultiTaskGameEnv.from_config(QUADRATIC)  # type: ignore[arg-type]


def test_the_env_reads_its_options_from_its_config() -> None:
    env = mtg_env.parallel_env(suite="quadratic", action_mode="step_size", log_step_range=(-6, -2), max_update=None)
    assert env.log_step_range == (-6.0, -2.0) == env.config.log_step_range
    assert env.max_update == float("inf") and env.config.max_update is None
    assert env.action_mode == "step_size" and env.trunk_optimizer is None and env.noise_model is None


def test_vector_env_from_config_needs_no_single_env_and_matches_the_kwargs_form() -> None:
    cfg = EnvConfig.from_kwargs(**QUADRATIC, action_mode="step_size")
    venv = VectorGameEnv.from_config(3, cfg)
    assert "single" not in vars(venv)  # no one-game env is built to read the options
    other = mtg_env.vector_env(3, **cfg.kwargs())
    actions = torch.zeros(3, venv.num_tasks, venv.action_size)
    torch.testing.assert_close(venv.reset(seed=5)[0], other.reset(seed=5)[0], rtol=0, atol=0)
    torch.testing.assert_close(venv.step(actions)[0], other.step(actions)[0], rtol=0, atol=0)
    assert venv.single.game is venv.game  # built on demand, sharing the game
    with pytest.raises(ValueError, match="num_games must be an int >= 1"):
        VectorGameEnv.from_config(0, cfg)
