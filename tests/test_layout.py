"""engine/layout: the one statement of the observation and action layout; every reader agrees with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mtg_env
from agents.base import ObservationReader
from mtg_env.engine import layout
from mtg_env.wrappers import UnitActions


def test_the_unit_map_sends_the_ends_and_the_middle_where_the_docs_say() -> None:
    lo, hi = -5.0, -1.0
    assert layout.unit_to_log_steps(-1.0, (lo, hi)) == lo
    assert layout.unit_to_log_steps(1.0, (lo, hi)) == hi
    assert layout.unit_to_log_steps(0.0, (lo, hi)) == -3.0
    x = np.linspace(-1.0, 1.0, 101)
    np.testing.assert_allclose(layout.log_steps_to_unit(layout.unit_to_log_steps(x, (lo, hi)), (lo, hi)), x, atol=1e-15)
    t = torch.linspace(-1.0, 1.0, 9, dtype=torch.float32)
    assert layout.unit_to_log_steps(t, (lo, hi)).dtype == torch.float32  # a tensor stays a tensor of its dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["update", "step_size"])
def test_every_space_is_the_layouts(dtype: str, mode: str) -> None:
    """The single env's Boxes, the vector env's bounds and the SB3 adapter's Box are the layout's, in the dtype."""
    kwargs = {"suite": "regression", "hidden": 4, "trunk": "mlp", "task_sizes": [20, 20, 20], "dtype": dtype}
    env = mtg_env.parallel_env(action_mode=mode, max_update=0.5, **kwargs)
    venv = mtg_env.vector_env(2, action_mode=mode, max_update=0.5, **kwargs)
    torch_dtype = getattr(torch, dtype)
    slot, n = env.head_slot("task_0"), env.trunk_size
    low, high = layout.observation_bounds(mode, slot, n, torch_dtype)
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        np.testing.assert_array_equal(space.low, low.numpy())
        np.testing.assert_array_equal(space.high, high.numpy())
        assert space.shape == (layout.observation_size(mode, slot, n),)
        assert env.action_space(agent).shape == (layout.action_size(mode, slot, n),)
    torch.testing.assert_close(venv.observation_low, low, rtol=0, atol=0)
    # The vector env's action bounds are the single env's Box, in the game's dtype (float64 too: not rounded).
    box = env.action_space("task_0")
    np.testing.assert_array_equal(venv.action_low.numpy(), box.low)
    np.testing.assert_array_equal(venv.action_high.numpy(), box.high)
    expected = (-0.125, 0.5) if mode == "update" else (-1.0, 1.0)
    assert layout.action_bounds(mode, max_update=0.5) == expected == (float(box.low[0]), float(box.high[0]))
    f_low, f_high = layout.feature_bounds(torch_dtype)
    assert float(f_high[0]) == pytest.approx(math.log1p(float(torch.finfo(torch_dtype).max)))
    np.testing.assert_array_equal(env.state_space.low, np.tile(f_low.numpy(), env.suite.num_tasks))


def test_step_size_actions_agree_between_env_player_and_wrapper() -> None:
    """The env's step_size_action, the players' reader and UnitActions convert through the one map."""
    env = mtg_env.parallel_env(suite="quadratic", action_mode="step_size", log_step_range=(-6.0, 0.0), dtype="float64")
    _, infos = env.reset(seed=0)
    reader = ObservationReader(infos["task_0"], env.action_space("task_0"))
    alpha, beta = 0.05, 0.2
    np.testing.assert_array_equal(env.step_size_action(alpha, beta), reader.step_action(np.log([alpha, beta])))
    log_env = mtg_env.parallel_env(suite="quadratic", action_mode="step_size", log_step_range=(-6.0, 0.0),
                                   step_size_units="log", dtype="float64")  # fmt: skip
    wrapped = UnitActions(log_env)
    unit = env.step_size_action(alpha, beta)
    np.testing.assert_allclose(wrapped.to_env_action("task_0", unit), np.log([alpha, beta]), rtol=1e-15)


def test_one_assembly_of_update_observations_for_the_env_padded_or_not_and_the_vector_env() -> None:
    """Digits heads differ in size: the padded env, the unpadded env and the vector env show the same gradients and
    features, the padded ones with zeros after each head (the layout's one assembly)."""
    kwargs = {"suite": "digits", "hidden": (16, 8), "batch_size": 32, "max_cycles": 3}
    padded, plain = mtg_env.parallel_env(**kwargs), mtg_env.parallel_env(pad_heads=False, **kwargs)
    venv = mtg_env.vector_env(1, **kwargs)
    obs_p, _ = padded.reset(seed=2)
    obs_u, _ = plain.reset(seed=2)
    obs_v, _ = venv.reset(seed=2)
    widest = max(padded.suite.head_sizes)
    for m, agent in enumerate(padded.possible_agents):
        h = padded.head_size(agent)
        assert obs_p[agent].shape == (widest + padded.trunk_size + layout.NUM_FEATURES,)
        np.testing.assert_array_equal(obs_p[agent], obs_v[0, m].numpy())
        np.testing.assert_array_equal(obs_p[agent][h:widest], 0.0)
        np.testing.assert_array_equal(obs_u[agent], np.concatenate((obs_p[agent][:h], obs_p[agent][widest:])))
