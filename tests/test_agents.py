"""The baseline players: GradientAgent (Definitions 2-3), AdamAgent, RMSpropAgent and the step-size schedules."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import AdamAgent, GradientAgent, MomentumAgent, PolicyWarning, RMSpropAgent, make_agents, run_episode
from agents.gradient import SCHEDULES, step_size
from mtg_env.envs.parallel import NUM_FEATURES
from tests.conftest import make_env

AGENT_CLASSES = (GradientAgent, AdamAgent, RMSpropAgent, MomentumAgent)


# ------------------------------------------------------------------------------------ helpers
def synthetic_setup(h: int, n: int) -> tuple[dict[str, Any], spaces.Box]:
    """An ``update``-mode reset info and a wide action space, as the env would give them."""
    info = {"head_size": h, "trunk_size": n, "action_mode": "update"}
    return info, spaces.Box(-1e6, 1e6, (h + n,), np.float64)


def synthetic_obs(g: np.ndarray) -> np.ndarray:
    """An ``update``-mode observation: concat[g_head, g_trunk, 8 features] (features unused here)."""
    return np.concatenate([g, np.zeros(NUM_FEATURES)]).astype(np.float64)


def gradient_sequence(size: int, steps: int, seed: int = 0) -> np.ndarray:
    """Gradients with coordinates of very different scales, sign flips and an always-zero coordinate."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-3, 1, size)
    g = rng.normal(size=(steps, size)) * scales
    g[:, 0] = 0.0  # a coordinate with no gradient must never move
    g[steps // 2 :, -1] *= -5.0  # a regime change in the last coordinate
    return g


def torch_deltas(make_opt: Any, grads: np.ndarray, h: int) -> np.ndarray:
    """The parameter moves of a torch optimizer fed ``grads``: one head and one trunk parameter."""
    head = torch.zeros(h, dtype=torch.float64, requires_grad=True)
    trunk = torch.zeros(grads.shape[1] - h, dtype=torch.float64, requires_grad=True)
    opt = make_opt(head, trunk)
    out = []
    for g in grads:
        before = torch.cat([head, trunk]).detach().clone()
        head.grad = torch.as_tensor(g[:h].copy())
        trunk.grad = torch.as_tensor(g[h:].copy())
        opt.step()
        out.append((torch.cat([head, trunk]).detach() - before).numpy())
    return np.asarray(out)


def agent_actions(agent: Any, grads: np.ndarray, h: int) -> np.ndarray:
    info, space = synthetic_setup(h, grads.shape[1] - h)
    agent.reset(synthetic_obs(grads[0]), info, space)
    return np.asarray([agent.act(synthetic_obs(g), info) for g in grads])


# ---------------------------------------------------------------------------------------- repr
@pytest.mark.parametrize(
    ("agent", "text"),
    [
        (GradientAgent(), "GradientAgent(lr=0.1, schedule='constant')"),
        (GradientAgent(lr=0.1, schedule="robbins_monro"), "GradientAgent(lr=0.1, schedule='robbins_monro')"),
        (
            GradientAgent(lr=0.5, trunk_lr=0.25, schedule="summable", power=2.0),
            "GradientAgent(lr=0.5, trunk_lr=0.25, schedule='summable', power=2.0)",
        ),
        (AdamAgent(), "AdamAgent(lr=0.001, betas=(0.9, 0.999), eps=1e-08)"),
        (
            AdamAgent(lr=0.01, trunk_lr=0.002, betas=(0.8, 0.99), eps=1e-6),
            "AdamAgent(lr=0.01, trunk_lr=0.002, betas=(0.8, 0.99), eps=1e-06)",
        ),
        (RMSpropAgent(), "RMSpropAgent(lr=0.01, alpha=0.99, eps=1e-08)"),
        (RMSpropAgent(lr=0.05, trunk_lr=0.5, alpha=0.9), "RMSpropAgent(lr=0.05, trunk_lr=0.5, alpha=0.9, eps=1e-08)"),
    ],
)
def test_repr_echoes_the_constructor_call(agent: Any, text: str) -> None:
    assert repr(agent) == text
    rebuilt = eval(text, {"GradientAgent": GradientAgent, "AdamAgent": AdamAgent, "RMSpropAgent": RMSpropAgent})
    assert repr(rebuilt) == text


# ----------------------------------------------------------------------------------- schedules
def test_constant_schedule_never_decays() -> None:
    for t in (0, 1, 10, 10_000):
        assert step_size(0.3, t) == 0.3
        assert step_size(0.3, t, "constant") == 0.3
    assert GradientAgent(lr=0.3, trunk_lr=0.7).steps(123) == (0.3, 0.7)


@pytest.mark.parametrize(
    ("schedule", "power", "p"),
    [
        ("robbins_monro", None, 0.75),
        ("robbins_monro", 1.0, 1.0),
        ("robbins_monro", 0.6, 0.6),
        ("summable", None, 1.5),
        ("summable", 2.0, 2.0),
    ],
)
def test_decaying_schedules(schedule: str, power: float | None, p: float) -> None:
    for t in (0, 1, 2, 7, 1000):
        assert step_size(0.5, t, schedule, power) == pytest.approx(0.5 / (1.0 + t) ** p, rel=1e-14)  # type: ignore[arg-type]
    assert step_size(0.5, 0, schedule, power) == 0.5  # type: ignore[arg-type]
    agent = GradientAgent(lr=0.5, trunk_lr=0.2, schedule=schedule, power=power)  # type: ignore[arg-type]
    for t in (0, 3, 50):
        alpha, beta = agent.steps(t)
        assert alpha == pytest.approx(0.5 / (1.0 + t) ** p, rel=1e-14)
        assert beta == pytest.approx(0.2 / (1.0 + t) ** p, rel=1e-14)


def test_schedules_sum_as_their_names_say() -> None:
    # Robbins-Monro: the partial sums of the steps keep growing; summable: they converge.
    rm = np.array([step_size(1.0, t, "robbins_monro") for t in range(20_000)])
    sm = np.array([step_size(1.0, t, "summable") for t in range(20_000)])
    assert rm.sum() > 40.0 and (rm**2).sum() < 4.0
    assert sm.sum() < 2.62  # zeta(1.5) = 2.612...
    assert np.all(np.diff(rm) < 0) and np.all(np.diff(sm) < 0)


@pytest.mark.parametrize(
    ("schedule", "power"),
    [
        ("robbins_monro", 0.5),
        ("robbins_monro", 0.3),
        ("robbins_monro", 1.01),
        ("robbins_monro", 2.0),
        ("summable", 1.0),
        ("summable", 0.75),
        ("constant", 1.0),
        ("constant", 0.0),
    ],
)
def test_invalid_powers_raise(schedule: str, power: float) -> None:
    with pytest.raises(ValueError, match="power"):
        GradientAgent(schedule=schedule, power=power)  # type: ignore[arg-type]


def test_boundary_powers_are_accepted() -> None:
    assert GradientAgent(schedule="robbins_monro", power=1.0).steps(3)[0] == pytest.approx(0.1 / 4)
    assert GradientAgent(schedule="summable", power=1.0001).steps(0)[0] == 0.1


def test_unknown_schedule_raises() -> None:
    assert set(SCHEDULES) == {"constant", "robbins_monro", "summable"}
    with pytest.raises(ValueError, match="unknown schedule"):
        GradientAgent(schedule="cosine")  # type: ignore[arg-type]


def test_step_size_function_rejects_an_unknown_schedule() -> None:
    # step_size is public (exported by agents); a bad schedule name should be a ValueError, as in the agent.
    with pytest.raises(ValueError):
        step_size(0.1, 0, "cosine")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", AGENT_CLASSES)
@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.0}, {"lr": -0.1}, {"lr": float("nan")}, {"trunk_lr": 0.0}, {"trunk_lr": -1.0}]
)
def test_non_positive_step_sizes_raise(cls: Any, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="> 0"):
        cls(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"betas": (1.0, 0.999)}, {"betas": (0.9, 1.0)}, {"betas": (-0.1, 0.9)}, {"eps": 0.0}]
)
def test_adam_rejects_bad_hyperparameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AdamAgent(**kwargs)


@pytest.mark.parametrize("kwargs", [{"alpha": 1.0}, {"alpha": -0.5}, {"eps": -1e-8}])
def test_rmsprop_rejects_bad_hyperparameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RMSpropAgent(**kwargs)


# ------------------------------------------------------------------------- GradientAgent in an env
def test_gradient_agent_update_mode_is_minus_step_times_gradient() -> None:
    env = make_env("quadratic", "update", dtype="float64", max_cycles=6, max_update=100.0, update_units="raw")
    obs, infos = env.reset(seed=0)
    agents = {a: GradientAgent(lr=0.05, trunk_lr=0.02, schedule="robbins_monro", power=0.6) for a in env.agents}
    for a in env.agents:
        agents[a].reset(obs[a], infos[a], env.action_space(a))
    for t in range(env.max_cycles):
        alpha, beta = 0.05 / (1.0 + t) ** 0.6, 0.02 / (1.0 + t) ** 0.6
        actions = {}
        for a in env.agents:
            h, n = env.head_size(a), env.trunk_size
            assert agents[a].t == t
            action = agents[a].act(obs[a], infos[a])
            assert agents[a].t == t + 1
            expected = np.concatenate([-alpha * obs[a][:h], -beta * obs[a][h : h + n]])
            assert action.shape == env.action_space(a).shape
            assert action.dtype == np.float64
            np.testing.assert_allclose(action, expected, rtol=1e-15, atol=0)
            assert np.any(action != 0)
            actions[a] = action
        obs, _, _, _, infos = env.step(actions)


@pytest.mark.parametrize("units", ["unit", "log"])
def test_gradient_agent_step_size_mode_plays_its_log_steps(units: str) -> None:
    env = make_env("quadratic", "step_size", step_size_units=units)
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    agent = GradientAgent(lr=0.3, trunk_lr=0.1, schedule="summable")
    agent.reset(obs[a], infos[a], env.action_space(a))
    lo, hi = env.log_step_range
    for t in range(5):
        action = agent.act(obs[a], infos[a])
        assert action.shape == (2,)
        assert action.dtype == env.action_space(a).dtype
        expected = np.log([0.3 / (1 + t) ** 1.5, 0.1 / (1 + t) ** 1.5])
        if units == "unit":  # the env maps [-1, 1] onto [lo, hi]
            expected = 2 * (expected - lo) / (hi - lo) - 1
        np.testing.assert_allclose(action, expected, rtol=1e-6)
    assert agent.t == 5 and agent.clipped_steps == 0


def test_gradient_agent_says_when_its_step_size_is_clipped() -> None:
    env = make_env("quadratic", "step_size", log_step_range=(-10.0, 1.0), step_size_units="log")
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    agent = GradientAgent(lr=100.0, trunk_lr=1e-9)  # log 100 = 4.6 > 1 and log 1e-9 = -20.7 < -10
    agent.reset(obs[a], infos[a], env.action_space(a))
    with pytest.warns(PolicyWarning, match="left the action space .* and was clipped"):
        action = agent.act(obs[a], infos[a])
    np.testing.assert_array_equal(action, [1.0, -10.0])
    assert env.action_space(a).contains(action) and agent.clipped_steps == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per episode, counted every step
        agent.act(obs[a], infos[a])
    assert agent.clipped_steps == 2


def test_gradient_agent_update_mode_clips_to_the_action_space_and_counts_it() -> None:
    env = make_env("quadratic", "update", dtype="float64", max_update=1e-3, max_cycles=5, update_units="raw")
    obs, infos = env.reset(seed=0)
    agents = {a: GradientAgent(lr=10.0) for a in env.agents}
    for a in env.agents:
        agents[a].reset(obs[a], infos[a], env.action_space(a))
    with pytest.warns(PolicyWarning):
        for _ in range(env.max_cycles):
            actions = {}
            for a in env.agents:
                h, n = env.head_size(a), env.trunk_size
                action = agents[a].act(obs[a], infos[a])
                raw = -10.0 * obs[a][: h + n]
                assert np.abs(raw).max() > 1e-3  # clipping is really needed
                np.testing.assert_array_equal(action, np.clip(raw, -1e-3, 1e-3))
                assert env.action_space(a).contains(action)
                actions[a] = action
            obs, _, _, _, infos = env.step(actions)  # the env accepts every clipped action
    assert all(agent.clipped_steps == 5 for agent in agents.values())


def test_the_runner_reports_clipped_steps() -> None:
    env = make_env("quadratic", "update", max_update=1e-3, max_cycles=4)
    with pytest.warns(PolicyWarning):
        history = run_episode(env, make_agents("gradient", env, lr=10.0), seed=0)
    assert history.clipped_steps == dict.fromkeys(env.possible_agents, 4)
    assert history.to_dict()["clipped_steps"] == history.clipped_steps


# ------------------------------------------------------------------------- adaptive agents vs torch
@pytest.mark.parametrize("trunk_lr", [None, 0.003])
def test_adam_agent_matches_torch_adam(trunk_lr: float | None) -> None:
    h, n, steps = 3, 5, 40
    lr, betas, eps = 0.01, (0.8, 0.95), 1e-6
    grads = gradient_sequence(h + n, steps)
    actions = agent_actions(AdamAgent(lr=lr, trunk_lr=trunk_lr, betas=betas, eps=eps), grads, h)

    def make_opt(head: torch.Tensor, trunk: torch.Tensor) -> torch.optim.Optimizer:
        groups = [{"params": [head], "lr": lr}, {"params": [trunk], "lr": lr if trunk_lr is None else trunk_lr}]
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps)

    expected = torch_deltas(make_opt, grads, h)
    assert actions.shape == expected.shape == (steps, h + n)
    np.testing.assert_allclose(actions, expected, rtol=1e-10, atol=1e-12)
    assert np.all(actions[:, 0] == 0.0)
    if trunk_lr is not None:  # the trunk part really uses trunk_lr: with lr everywhere it would differ
        same_lr = agent_actions(AdamAgent(lr=lr, betas=betas, eps=eps), grads, h)
        np.testing.assert_allclose(same_lr[:, :h], actions[:, :h], rtol=1e-14)
        np.testing.assert_allclose(same_lr[:, h:] * trunk_lr / lr, actions[:, h:], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("trunk_lr", [None, 0.05])
def test_rmsprop_agent_matches_torch_rmsprop(trunk_lr: float | None) -> None:
    h, n, steps = 4, 3, 40
    lr, alpha, eps = 0.01, 0.9, 1e-6
    grads = gradient_sequence(h + n, steps, seed=1)
    actions = agent_actions(RMSpropAgent(lr=lr, trunk_lr=trunk_lr, alpha=alpha, eps=eps), grads, h)

    def make_opt(head: torch.Tensor, trunk: torch.Tensor) -> torch.optim.Optimizer:
        groups = [{"params": [head], "lr": lr}, {"params": [trunk], "lr": lr if trunk_lr is None else trunk_lr}]
        return torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, momentum=0, centered=False)

    expected = torch_deltas(make_opt, grads, h)
    np.testing.assert_allclose(actions, expected, rtol=1e-10, atol=1e-12)
    assert np.all(actions[:, 0] == 0.0)


def test_adam_with_default_hyperparameters_matches_torch() -> None:
    h, n = 2, 6
    grads = gradient_sequence(h + n, 25, seed=2)
    actions = agent_actions(AdamAgent(), grads, h)
    expected = torch_deltas(lambda hd, tr: torch.optim.Adam([hd, tr]), grads, h)
    np.testing.assert_allclose(actions, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [AdamAgent, RMSpropAgent])
def test_reset_clears_the_moments(cls: Any) -> None:
    h, n = 2, 3
    grads = gradient_sequence(h + n, 10, seed=3)
    agent = cls(lr=0.01)
    first = agent_actions(agent, grads, h)
    assert agent.t == 10
    second = agent_actions(agent, grads, h)  # agent_actions resets the same agent
    np.testing.assert_array_equal(first, second)
    other = gradient_sequence(h + n, 10, seed=4)
    assert not np.allclose(agent_actions(agent, other, h), first)


@pytest.mark.parametrize("cls", [AdamAgent, RMSpropAgent])
def test_adaptive_update_actions_are_clipped(cls: Any) -> None:
    h, n = 2, 2
    info = {"head_size": h, "trunk_size": n, "action_mode": "update"}
    space = spaces.Box(-1e-4, 1e-4, (h + n,), np.float32)
    agent = cls(lr=0.1)
    obs = synthetic_obs(np.array([1.0, -2.0, 3.0, 0.0]))
    agent.reset(obs, info, space)
    with pytest.warns(PolicyWarning):
        action = agent.act(obs, info)
    assert action.dtype == np.float32
    assert space.contains(action) and agent.clipped_steps == 1
    np.testing.assert_array_equal(action, np.array([-1e-4, 1e-4, -1e-4, 0.0], dtype=np.float32))


# ---------------------------------------------------------------- adaptive agents in step_size mode
class Recorder:
    """Wraps a policy and keeps every action it took."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.actions: list[np.ndarray] = []

    def reset(self, observation: np.ndarray, info: Any, action_space: spaces.Box) -> None:
        self.policy.reset(observation, info, action_space)

    def act(self, observation: np.ndarray, info: Any) -> np.ndarray:
        action = self.policy.act(observation, info)
        self.actions.append(action)
        return action


@pytest.mark.parametrize("cls", [AdamAgent, RMSpropAgent])
def test_adaptive_agents_lower_every_loss_in_step_size_mode(cls: Any) -> None:
    # The v1 log-step range: wide enough that the adaptive steps are never clipped (their rule is played as is).
    env = make_env("regression", "step_size", max_cycles=200, log_step_range=(-20.0, 2.0))
    policies = {a: Recorder(cls()) for a in env.possible_agents}
    history = run_episode(env, policies, seed=0, evaluate=False)
    assert not history.terminated
    assert history.steps == 200
    first = history.losses[0]
    last = history.losses[-10:].mean(axis=0)
    assert np.all(last < 0.75 * first), (first, last)
    for a, rec in policies.items():
        space = env.action_space(a)
        assert len(rec.actions) == 200
        for action in rec.actions:
            assert action.shape == (2,)
            assert space.contains(action)
        # the steps adapt: they are not all the same
        assert np.ptp(np.asarray(rec.actions), axis=0).min() > 0


@pytest.mark.parametrize("cls", [AdamAgent, RMSpropAgent])
def test_step_size_mode_first_step_is_the_rms_normalised_lr(cls: Any) -> None:
    # Adam after one step (bias-corrected) and RMSprop with alpha=0 give a per-coordinate RMS move of lr:
    # alpha_0 * |g| / sqrt(dim) = lr (up to eps).
    env = make_env("regression", "step_size", dtype="float64", step_size_units="log", log_step_range=(-20.0, 2.0))
    obs, infos = env.reset(seed=1)
    a = env.agents[0]
    agent = cls(lr=0.01, trunk_lr=0.03) if cls is AdamAgent else cls(lr=0.01, trunk_lr=0.03, alpha=0.0)
    agent.reset(obs[a], infos[a], env.action_space(a))
    action = agent.act(obs[a], infos[a])
    h, n = infos[a]["head_size"], infos[a]["trunk_size"]
    norms = np.expm1(obs[a][[2, 3]])  # the symlog'd gradient norms of the features
    rms_move = np.exp(action) * norms / np.sqrt([h, n])
    np.testing.assert_allclose(rms_move, [0.01, 0.03], rtol=1e-5)


# ----------------------------------------------------------------------------------- misuse
@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_act_before_reset_raises(cls: Any) -> None:
    with pytest.raises(RuntimeError, match="reset"):
        cls().act(np.zeros(10), {})


@pytest.mark.parametrize("cls", AGENT_CLASSES)
def test_reset_without_sizes_raises(cls: Any) -> None:
    info = {"trunk_size": 2, "action_mode": "update"}
    with pytest.raises(ValueError, match="head_size"):
        cls().reset(np.zeros(10), info, spaces.Box(-1.0, 1.0, (4,), np.float32))


# ------------------------------------------------------------------------------------- MomentumAgent
@pytest.mark.parametrize(
    ("agent", "text"),
    [
        (MomentumAgent(), "MomentumAgent(lr=0.1, momentum=0.9)"),
        (MomentumAgent(lr=0.05, momentum=0.5, trunk_lr=0.01), "MomentumAgent(lr=0.05, momentum=0.5, trunk_lr=0.01)"),
    ],
)
def test_momentum_repr_echoes_the_constructor_call(agent: MomentumAgent, text: str) -> None:
    assert repr(agent) == text
    assert repr(eval(text, {"MomentumAgent": MomentumAgent})) == text


@pytest.mark.parametrize("trunk_lr", [None, 0.004])
def test_momentum_agent_matches_torch_sgd_with_momentum(trunk_lr: float | None) -> None:
    h, n, steps, lr, mu = 3, 4, 40, 0.01, 0.8
    grads = gradient_sequence(h + n, steps, seed=5)
    actions = agent_actions(MomentumAgent(lr=lr, momentum=mu, trunk_lr=trunk_lr), grads, h)

    def make_opt(head: torch.Tensor, trunk: torch.Tensor) -> torch.optim.Optimizer:
        groups = [{"params": [head], "lr": lr}, {"params": [trunk], "lr": lr if trunk_lr is None else trunk_lr}]
        return torch.optim.SGD(groups, lr=lr, momentum=mu)

    np.testing.assert_allclose(actions, torch_deltas(make_opt, grads, h), rtol=1e-10, atol=1e-13)
    assert np.all(actions[:, 0] == 0.0)


def test_momentum_zero_is_the_gradient_agent() -> None:
    h, n = 2, 5
    grads = gradient_sequence(h + n, 12, seed=6)
    np.testing.assert_array_equal(
        agent_actions(MomentumAgent(lr=0.03, momentum=0.0, trunk_lr=0.02), grads, h),
        agent_actions(GradientAgent(lr=0.03, trunk_lr=0.02), grads, h),
    )


def test_momentum_agent_plays_the_heavy_ball_rule_on_the_quadratic_suite() -> None:
    # A hand loop of u_t = mu u_{t-1} - lr g_t per player, with the env's gradients: the agent's actions match.
    env = make_env("quadratic", "update", dtype="float64", max_cycles=8, max_update=100.0, update_units="raw")
    obs, infos = env.reset(seed=3)
    lr, beta, mu = 0.05, 0.02, 0.7
    agents = {a: MomentumAgent(lr=lr, momentum=mu, trunk_lr=beta) for a in env.agents}
    velocity = {a: np.zeros(env.head_size(a) + env.trunk_size) for a in env.agents}
    for a in env.agents:
        agents[a].reset(obs[a], infos[a], env.action_space(a))
    losses = []
    for _ in range(env.max_cycles):
        actions = {}
        for a in env.agents:
            h, n = env.head_size(a), env.trunk_size
            g = obs[a][: h + n]
            velocity[a] = mu * velocity[a] - np.concatenate([lr * g[:h], beta * g[h:]])
            action = agents[a].act(obs[a], infos[a])
            np.testing.assert_allclose(action, velocity[a], rtol=1e-14, atol=0)
            actions[a] = action
        obs, _, _, _, infos = env.step(actions)
        losses.append(sum(infos[a]["loss"] for a in env.agents))
    assert losses[-1] < losses[0]
    assert all(agent.clipped_steps == 0 and agent.t == 8 for agent in agents.values())


def test_momentum_agent_reaches_the_quadratic_equilibrium() -> None:
    env = make_env("quadratic", "update", dtype="float64", max_cycles=400, max_update=100.0)
    history = run_episode(env, make_agents("momentum", env, lr=0.02, momentum=0.9), seed=0)
    assert not history.terminated
    assert history.nash_gap is not None and history.nash_gap[-1].max() < 1e-8


def test_momentum_update_actions_are_clipped_and_counted() -> None:
    h, n = 2, 2
    info = {"head_size": h, "trunk_size": n, "action_mode": "update"}
    space = spaces.Box(-1e-4, 1e-4, (h + n,), np.float32)
    agent = MomentumAgent(lr=0.1)
    obs = synthetic_obs(np.array([1.0, -2.0, 3.0, 0.0]))
    agent.reset(obs, info, space)
    with pytest.warns(PolicyWarning, match="clipped"):
        action = agent.act(obs, info)
    assert action.dtype == np.float32 and space.contains(action) and agent.clipped_steps == 1
    np.testing.assert_array_equal(action, np.array([-1e-4, 1e-4, -1e-4, 0.0], dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per episode, counted every step
        agent.act(obs, info)
    assert agent.clipped_steps == 2


def test_momentum_agent_refuses_step_size_mode() -> None:
    env = make_env("quadratic", "step_size")
    obs, infos = env.reset(seed=0)
    a = env.agents[0]
    agent = MomentumAgent()
    with pytest.raises(ValueError, match="action_mode='update'"):
        agent.reset(obs[a], infos[a], env.action_space(a))
    with pytest.raises(RuntimeError, match="reset"):
        agent.act(obs[a], infos[a])  # the refused reset left the agent unstarted


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"momentum": 1.0}, ValueError), ({"momentum": -0.1}, ValueError), ({"momentum": True}, TypeError),
     ({"momentum": "0.9"}, TypeError)],
)  # fmt: skip
def test_momentum_rejects_bad_momentum(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"momentum must be a finite number in \[0.0, 1.0\)"):
        MomentumAgent(**kwargs)
