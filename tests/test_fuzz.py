"""Property-based fuzzing of the public surface (Hypothesis, derandomized so every run tries the same inputs):
constructor arguments, reset options and actions. The property, for every input: a clear error (TypeError or
ValueError) that names the argument, or a valid game; a refused call never changes the game."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtg_env

from .test_bad_input import assert_same_state

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # seeded: the same inputs every run, so a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

#: Values a careless caller passes: of the wrong type, non-finite, out of range, or valid for another argument.
ODD_VALUES = st.sampled_from(
    [None, True, False, 0, 1, -1, 3, 2.7, -0.5, 1e308, 10**30, math.nan, math.inf, -math.inf, "3", "no", "",
     (), (1,), (-3.0, -1.0), [1, 2, 3], {"a": 1}, np.float32(0.5), np.int64(4), torch.tensor(2.0)]
)  # fmt: skip

#: Constructor arguments of the env (quadratic suite: fast to build) and of its suite, with a valid default.
ARGS: dict[str, Any] = {
    "max_cycles": 5,
    "metrics_every": 0,
    "max_update": 1.0,
    "log_step_range": (-5.0, -1.0),
    "divergence_reward": "remaining",
    "divergence_threshold": 1e3,
    "numeric_infos": True,
    "step_size_units": "unit",
    "pad_heads": True,
    "action_mode": "update",
    "render_mode": None,
    "dtype": "float32",
    "device": "cpu",
    "consensus": "sum",
    "consensus_kwargs": None,
    "trunk_optimizer": None,
    "trunk_optimizer_kwargs": None,
    "head_optimizer": None,
    "num_tasks": 3,
    "head_dim": 2,
    "trunk_dim": 2,
    "condition": 10.0,
    "game_seed": 0,
    "init_scale": 1.0,
}


def _play_one_step(env: mtg_env.MultiTaskGameEnv) -> None:
    observations, _ = env.reset(seed=0)
    for agent in env.agents:
        assert env.observation_space(agent).contains(observations[agent])
    zero = {a: np.zeros(env.action_space(a).shape, dtype=env.action_space(a).dtype) for a in env.agents}
    observations, rewards, _, _, _ = env.step(zero)
    assert all(math.isfinite(r) for r in rewards.values())


@FUZZ
@given(name=st.sampled_from(sorted(ARGS)), value=ODD_VALUES)
def test_constructor_names_the_bad_argument_or_builds_a_valid_game(name: str, value: Any) -> None:
    kwargs = {**ARGS, name: value}
    try:
        env = mtg_env.parallel_env(suite="quadratic", **kwargs)
    except (TypeError, ValueError) as err:
        assert name in str(err), f"{name}={value!r}: the error does not name the argument: {err}"
        return
    _play_one_step(env)


@FUZZ
@given(
    options=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["heads", "trunk", "head", "Trunk", "options", "seed"]),
            ODD_VALUES | st.sampled_from([np.zeros(6), np.ones(2), np.full(2, np.nan), [0.1, 0.2]]),
            max_size=2,
        ),
        ODD_VALUES,
    )
)
def test_reset_options_are_a_valid_start_or_refused_without_change(options: Any) -> None:
    env = mtg_env.parallel_env(suite="quadratic", max_update=100.0, dtype="float64")
    env.reset(seed=1)
    before = env.state_dict()
    try:
        env.reset(seed=2, options=options)
    except (TypeError, ValueError) as err:
        assert "option" in str(err), err
        assert_same_state(before, env.state_dict())
        return
    state = env.engine_state
    if isinstance(options, dict) and isinstance(options.get("trunk"), np.ndarray):
        np.testing.assert_array_equal(state.trunk[0].numpy(), options["trunk"])


ACTION = st.one_of(
    st.floats(-2.0, 2.0, width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, 1.0000001, -1.0000001, 1.0, -1.0]),
)


@FUZZ
@given(
    mode=st.sampled_from(["update", "step_size"]),
    values=st.lists(ACTION, min_size=1, max_size=3),
    where=st.integers(0, 2),
    shape_change=st.sampled_from([0, 0, 0, -1, 1]),
    drop_agent=st.booleans(),
)
def test_an_action_is_played_exactly_when_it_is_valid(
    mode: str, values: list[float], where: int, shape_change: int, drop_agent: bool
) -> None:
    env = mtg_env.parallel_env(suite="quadratic", action_mode=mode)
    env.reset(seed=0)
    before = env.state_dict()
    actions: dict[str, Any] = {}
    for agent in env.agents:
        space = env.action_space(agent)
        action = np.zeros(space.shape[0] + shape_change, dtype=np.float32)
        action[: min(len(values), action.size)] = values[: action.size]
        actions[agent] = action
    target = env.agents[where]
    valid_values = {a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents}
    valid_values[target] = actions[target] if shape_change == 0 else valid_values[target]
    actions = {**valid_values, target: actions[target]}
    if drop_agent:
        del actions[env.agents[-1]]
    space = env.action_space(target)
    valid = (
        not drop_agent
        and shape_change == 0
        and bool(np.isfinite(actions[target]).all())
        and bool(space.contains(actions[target]))
    )
    try:
        env.step(actions)
    except (TypeError, ValueError) as err:
        assert not valid, f"a valid action was refused: {err}"
        named = env.agents[-1] if drop_agent else target
        assert named in str(err), err
        assert_same_state(before, env.state_dict())
        return
    assert valid, f"an invalid action was played: {actions[target]!r}"


@pytest.mark.parametrize("suite", ["digits", "regression", "toy2d"])
def test_every_suite_survives_the_odd_values_of_its_options(suite: str) -> None:
    """Each option of each suite, set to each odd value: a named error or a game that plays (no Hypothesis: the
    grid is small enough to try whole)."""
    import inspect

    from mtg_env.suites import SUITES

    small = {"digits": {"hidden": (8,), "batch_size": 16}, "regression": {}, "toy2d": {}}[suite]
    options = [p for p in inspect.signature(SUITES[suite]).parameters if p not in ("device", "dtype")]
    odd = [None, True, 0, -1, 2.7, math.nan, "3", (), (1,), [1, 2, 3]]
    for option in options:
        for value in odd:
            kwargs = {**small, option: value}
            try:
                env = mtg_env.parallel_env(suite=suite, max_cycles=2, **kwargs)
            except (TypeError, ValueError) as err:
                assert option in str(err), f"{option}={value!r}: {err}"
                continue
            _play_one_step(env)
