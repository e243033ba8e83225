"""The ``update``-mode action codec (:mod:`mtg_env.engine.codec`): relative units, exact both ways."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mtg_env
from agents import AdamAgent, GradientAgent, SelfishAgent
from mtg_env.engine.codec import FLOOR_EXP, SCALE_EXP, UPHILL, decode, decode_numpy, encode, reference_steps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_steps_are_downhill_powers_of_two_between_an_eighth_and_a_quarter_of_the_gradient(dtype) -> None:  # type: ignore[no-untyped-def]
    g = torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=dtype) * 10.0 ** torch.randint(
        -6, 4, (10_000,), generator=torch.Generator().manual_seed(1)
    ).to(dtype)
    d = reference_steps(g)
    mantissa, _ = torch.frexp(d)
    assert bool((mantissa.abs() == 0.5).all())  # powers of two: multiplying by them is exact
    assert bool((torch.sign(d) == -torch.sign(g)).all())  # downhill
    big = g.abs() * 2.0**SCALE_EXP >= 2.0**FLOOR_EXP
    assert bool((d.abs()[big] > g.abs()[big] * 2.0**SCALE_EXP).all())
    assert bool((d.abs()[big] <= g.abs()[big] * 2.0 ** (SCALE_EXP + 1)).all())
    assert bool((d.abs() >= 2.0**FLOOR_EXP).all())
    edge = reference_steps(torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf")], dtype=dtype))
    assert edge.tolist() == [-(2.0**FLOOR_EXP)] * 5  # no gradient to follow: the floor, a finite unit


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
def test_encode_then_decode_gives_back_every_update_bit_for_bit(np_dtype) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    g = (rng.standard_normal(5000) * 10.0 ** rng.integers(-8, 5, 5000)).astype(np_dtype)
    g[:10] = 0.0
    u = (rng.standard_normal(5000) * 10.0 ** rng.integers(-8, 2, 5000)).astype(np_dtype)
    a = encode(u, g).astype(np_dtype)  # as the reader casts it to the env's dtype
    back = decode(torch.from_numpy(a), torch.from_numpy(g)).numpy()
    np.testing.assert_array_equal(back, u)
    np.testing.assert_array_equal(decode_numpy(a, g).astype(np_dtype), u)


def _play(agent: type, units: str, steps: int = 12, **env_kwargs) -> tuple[tuple[torch.Tensor, ...], list[int]]:  # type: ignore[no-untyped-def]
    env = mtg_env.parallel_env(update_units=units, max_cycles=steps, **env_kwargs)
    obs, info = env.reset(seed=5)
    players = {a: agent() for a in env.agents}
    for a, p in players.items():
        p.reset(obs[a], info[a], env.action_space(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clipping warning: the rule is played as written
        while env.agents:
            obs, _, _, _, info = env.step({a: players[a].act(obs[a], info[a]) for a in env.agents})
    return env.get_parameters(), [p.clipped_steps for p in players.values()]


@pytest.mark.parametrize("agent", [GradientAgent, AdamAgent, lambda: SelfishAgent(GradientAgent(lr=0.01))])
@pytest.mark.parametrize("pad_heads", [True, False])
def test_the_paper_players_play_the_same_updates_in_relative_and_raw_units(agent, pad_heads) -> None:  # type: ignore[no-untyped-def]
    relative, clipped = _play(agent, "relative", pad_heads=pad_heads)
    raw, _ = _play(agent, "raw", pad_heads=pad_heads)
    assert clipped == [0, 0, 0, 0]
    for x, y in zip(relative, raw, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_raw_units_restore_the_v5_box_and_relative_units_descend_on_average() -> None:
    raw = mtg_env.parallel_env(update_units="raw")
    assert raw.action_space("task_0").low.min() == -1.0 and raw.action_space("task_0").high.max() == 1.0
    rel = mtg_env.parallel_env()
    assert rel.update_units == "relative"
    space = rel.action_space("task_0")
    assert space.low.min() == UPHILL and space.high.max() == 1.0
    assert (space.low + space.high).min() > 0  # a uniform action's mean is downhill
    _, info = rel.reset(seed=0)
    assert info["task_0"]["relative_updates"] == 1.0
    with pytest.raises(ValueError, match="update_units"):
        mtg_env.parallel_env(update_units="units")


def test_an_action_of_one_moves_each_head_by_its_reference_descent_step_and_lowers_the_loss() -> None:
    env = mtg_env.parallel_env(max_cycles=20)
    _, info = env.reset(seed=0)
    start = np.mean([i["loss"] for i in info.values()])
    heads0, _ = env.get_parameters()
    grads = env.engine_state.head_grads[0].clone()
    steps = reference_steps(grads)
    env.step({a: np.ones_like(env.action_space(a).high) for a in env.agents})
    torch.testing.assert_close(env.get_parameters()[0], heads0 + steps, rtol=0, atol=0)
    assert bool((steps * grads <= 0).all())  # downhill on every coordinate
    while env.agents:
        _, _, _, _, info = env.step({a: np.ones_like(env.action_space(a).high) for a in env.agents})
    assert np.mean([i["loss"] for i in info.values()]) < start
