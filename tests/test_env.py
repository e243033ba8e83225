"""Behaviour of the env a user relies on: the game step, determinism, refusals, episode ends."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
import torch

import mtg_env
from agents import GradientAgent, make_agents, run_episode
from tests.conftest import DEVICE, MODES, SMALL_SUITES, make_env, steps_action


def gradient_actions(env: mtg_env.MultiTaskGameEnv, obs: dict, lr: float = 0.05) -> dict:
    """Plain gradient steps from update-mode observations, for driving the env in tests."""
    out = {}
    for a in env.agents:
        k = env.head_slot(a) + env.trunk_size  # the padding of the head part is zero in the observation
        out[a] = np.clip(-lr * obs[a][:k], -1, 1)
    return out


def assert_same_step(step: int, out1: tuple, out2: tuple) -> None:
    names = ("observations", "rewards", "terminations", "truncations", "infos")
    for name, x, y in zip(names, out1, out2, strict=True):
        assert x.keys() == y.keys(), f"step {step}: {name} keys differ"
        for agent in x:
            if isinstance(x[agent], np.ndarray):
                assert np.array_equal(x[agent], y[agent], equal_nan=True), f"step {step}: {name}[{agent}] differs"
            else:
                assert x[agent] == y[agent], f"step {step}: {name}[{agent}] differs: {x[agent]} != {y[agent]}"


# ------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("suite", list(SMALL_SUITES))
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_gives_the_same_whole_episode(suite: str, mode: str) -> None:
    env1, env2 = make_env(suite, mode, max_cycles=40), make_env(suite, mode, max_cycles=40)
    for env in (env1, env2):
        for i, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(100 + i)
    out1, out2 = env1.reset(seed=7), env2.reset(seed=7)
    assert_same_step(0, (*out1, {}, {}, {}), (*out2, {}, {}, {}))
    step = 0
    while env1.agents:
        step += 1
        actions = {a: env1.action_space(a).sample() for a in env1.agents}
        if mode == "step_size":  # keep random step sizes moderate so the episode runs its length
            actions = {a: np.clip(x, -1.0, 0.0) for a, x in actions.items()}  # log steps in [-7, -4]
        else:
            actions = {a: x * 0.01 for a, x in actions.items()}
        assert_same_step(step, env1.step(actions), env2.step(actions))
    assert step == 40 and not env2.agents
    h1, t1 = env1.get_parameters()
    h2, t2 = env2.get_parameters()
    assert torch.equal(h1, h2) and torch.equal(t1, t2)


def test_reset_with_the_same_seed_replays_and_other_seeds_differ() -> None:
    env = make_env("digits", "step_size", max_cycles=10)
    obs_a, _ = env.reset(seed=3)
    losses_a = [env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})[1] for _ in range(5)]
    obs_b, _ = env.reset(seed=3)
    losses_b = [env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})[1] for _ in range(5)]
    assert all(np.array_equal(obs_a[a], obs_b[a]) for a in obs_a)
    assert losses_a == losses_b
    obs_c, _ = env.reset(seed=4)
    assert not np.array_equal(obs_a["task_0"], obs_c["task_0"])


# ------------------------------------------------------------------------------ one step
def test_sum_consensus_is_eq_24_and_heads_follow_eq_23() -> None:
    env = make_env("regression", dtype="float64", consensus="sum", update_units="raw")  # actions: the updates
    obs, _ = env.reset(seed=0)
    heads0, trunk0 = env.get_parameters()
    alpha, beta = 0.05, 0.02
    actions = {}
    g_trunk_sum = np.zeros(env.trunk_size)
    g_heads = []
    for a in env.agents:
        h = env.head_size(a)
        g_heads.append(obs[a][:h])
        g_trunk_sum += obs[a][h : h + env.trunk_size]
        actions[a] = np.concatenate([-alpha * obs[a][:h], -beta * obs[a][h : h + env.trunk_size]])
    env.step(actions)
    heads1, trunk1 = env.get_parameters()
    np.testing.assert_allclose(trunk1.cpu().numpy(), trunk0.cpu().numpy() - beta * g_trunk_sum, rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        heads1.cpu().numpy(), heads0.cpu().numpy() - alpha * np.concatenate(g_heads), rtol=0, atol=1e-15
    )


def test_mean_consensus_is_eq_21() -> None:
    env = make_env("quadratic", dtype="float64", consensus="mean", update_units="raw")
    _obs, _ = env.reset(seed=0)
    _, trunk0 = env.get_parameters()
    actions = {a: np.concatenate([np.zeros(2), np.full(2, 0.1 * (i + 1))]) for i, a in enumerate(env.agents)}
    env.step(actions)
    _, trunk1 = env.get_parameters()
    np.testing.assert_allclose(trunk1.cpu().numpy() - trunk0.cpu().numpy(), [0.2, 0.2], atol=1e-15)


def test_a_callable_consensus_decides_the_trunk_move() -> None:
    dictator = lambda proposals: proposals[1]  # noqa: E731 - the trunk follows task_1 only
    env = make_env("quadratic", dtype="float64", consensus=dictator, update_units="raw")
    env.reset(seed=0)
    _, trunk0 = env.get_parameters()
    actions = {a: np.concatenate([np.zeros(2), np.full(2, 0.1 * (i + 1))]) for i, a in enumerate(env.agents)}
    env.step(actions)
    _, trunk1 = env.get_parameters()
    np.testing.assert_allclose(trunk1.cpu().numpy() - trunk0.cpu().numpy(), [0.2, 0.2], atol=1e-15)


def test_step_size_mode_plays_the_same_game_as_update_mode() -> None:
    upd = make_env("digits", "update", dtype="float64", update_units="raw")  # actions: the updates themselves
    ss = make_env("digits", "step_size", dtype="float64")
    obs_u, _ = upd.reset(seed=5)
    ss.reset(seed=5)
    alpha, beta = 0.1, 0.03
    for _ in range(10):
        actions_u = {}
        for a in upd.agents:
            h, n = upd.head_slot(a), upd.trunk_size
            actions_u[a] = np.concatenate([-alpha * obs_u[a][:h], -beta * obs_u[a][h : h + n]])
        obs_u, rew_u, *_ = upd.step(actions_u)
        _, rew_s, *_ = ss.step({a: steps_action(ss, alpha, beta) for a in ss.agents})
        np.testing.assert_allclose(list(rew_u.values()), list(rew_s.values()), rtol=1e-12)


def test_progress_feature_and_truncation_at_max_cycles() -> None:
    env = make_env("quadratic", "step_size", max_cycles=5)
    obs, _ = env.reset(seed=0)
    for t in range(1, 6):
        obs, _, term, trunc, infos = env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})
        assert not any(term.values())
        assert all(trunc.values()) == (t == 5), f"step {t}"
        assert obs["task_0"][mtg_env.FEATURES.index("progress")] == pytest.approx(t / 5)
        assert infos["task_0"]["t"] == t
    assert env.agents == []
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step({})


def test_the_trunk_move_feature_is_the_last_moves_norm_for_every_player() -> None:
    """Feature 7 is symlog ‖Ψ_t − Ψ_{t−1}‖, the same in every player's observation (0 at reset): the one observation
    besides the clock that a rule can adapt the trunk step to without moving ``sum``'s fixed point."""
    env = make_env("quadratic", "update", dtype="float64", max_update=None)
    index = mtg_env.FEATURES.index("symlog_trunk_move_norm") - len(mtg_env.FEATURES)  # features end the observation
    obs, _ = env.reset(seed=3)
    assert all(obs[a][index] == 0.0 for a in env.agents)
    for _ in range(3):
        before = env.engine_state.trunk[0].clone()
        actions = {}
        for a in env.agents:
            h, n = env.head_slot(a), env.trunk_size
            actions[a] = np.concatenate([-0.05 * obs[a][:h], -0.05 * obs[a][h : h + n]])
        obs, *_ = env.step(actions)
        expected = math.log1p(float((env.engine_state.trunk[0] - before).norm()))
        assert expected > 0
        for a in env.agents:
            assert obs[a][index] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- bad input
BAD_ACTIONS = [
    ("missing", lambda acts: {k: v for k, v in acts.items() if k != "task_1"}, "task_1"),
    ("unknown", lambda acts: {**acts, "task_9": acts["task_0"]}, "task_9"),
    ("shape", lambda acts: {**acts, "task_2": acts["task_2"][:-1]}, r"'task_2' has shape \(\d+,\), expected \(\d+,\)"),
    (
        "nan",
        lambda acts: {**acts, "task_1": np.where(np.arange(len(acts["task_1"])) == 3, np.nan, acts["task_1"])},
        r"'task_1' is not finite \(value nan at index 3\)",
    ),
    ("inf", lambda acts: {**acts, "task_0": np.full_like(acts["task_0"], np.inf)}, "'task_0' is not finite"),
    ("bounds", lambda acts: {**acts, "task_0": acts["task_0"] + 1e3}, "'task_0' is outside its action space"),
    ("type", lambda acts: {**acts, "task_0": "left"}, "'task_0' is not a numeric array"),
]


@pytest.mark.parametrize(("name", "corrupt", "message"), BAD_ACTIONS, ids=[b[0] for b in BAD_ACTIONS])
@pytest.mark.parametrize("suite", ["digits", "quadratic"])
def test_bad_action_is_refused_and_loses_nothing(suite: str, name: str, corrupt, message: str) -> None:
    env, ref = make_env(suite), make_env(suite)
    obs, _ = env.reset(seed=1)
    ref.reset(seed=1)
    good = gradient_actions(env, obs)
    heads0, trunk0 = env.get_parameters()
    with pytest.raises(ValueError, match=message):
        env.step(corrupt(good))
    heads1, trunk1 = env.get_parameters()
    assert torch.equal(heads0, heads1) and torch.equal(trunk0, trunk1)
    # The refused call changed nothing, not even the batch stream: the next good step matches a twin's.
    assert_same_step(1, env.step(good), ref.step(good))


def test_step_size_actions_outside_the_box_are_refused() -> None:
    env = make_env("quadratic", "step_size")
    env.reset(seed=0)
    assert env.action_space("task_0") == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    with pytest.raises(ValueError, match=r"'task_2' is outside .*\[-1, 1\], mapped onto the log step sizes"):
        env.step({a: np.array([-1.0, 1.5 if a == "task_2" else -1.0], np.float32) for a in env.agents})
    # One float32 ulp above the bound is outside, and the message shows it.
    above = np.nextafter(np.float32(1.0), np.float32(2.0))
    with pytest.raises(ValueError, match=r"values span \[-1, 1.00000012\]"):
        env.step({a: np.array([-1.0, above], np.float32) for a in env.agents})
    log_env = make_env("quadratic", "step_size", step_size_units="log")
    log_env.reset(seed=0)
    with pytest.raises(ValueError, match=r"'task_2' is outside .*log_step_range"):
        log_env.step({a: np.array([-2.0, 3.0 if a == "task_2" else -2.0], np.float32) for a in log_env.agents})


def test_unit_step_size_actions_map_onto_log_step_range() -> None:
    unit = make_env("quadratic", "step_size", dtype="float64", log_step_range=(-6.0, -2.0))
    log = make_env("quadratic", "step_size", dtype="float64", log_step_range=(-6.0, -2.0), step_size_units="log")
    unit.reset(seed=4)
    log.reset(seed=4)
    for a_unit, a_log in ((-1.0, -6.0), (1.0, -2.0), (0.0, -4.0), (0.5, -3.0)):
        out_unit = unit.step({a: np.full(2, a_unit) for a in unit.agents})
        out_log = log.step({a: np.full(2, a_log) for a in log.agents})
        assert out_unit[1] == out_log[1], (a_unit, a_log)


def test_a_consensus_rule_with_a_wrong_output_is_refused_without_side_effects() -> None:
    env = make_env("quadratic", consensus=lambda p: p)  # returns [M, n] instead of [n]
    obs, _ = env.reset(seed=0)
    before = env.get_parameters()
    with pytest.raises(ValueError, match=r"consensus rule .* returned \(3, 2\), expected .*\(2,\)"):
        env.step(gradient_actions(env, obs))
    after = env.get_parameters()
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))


def test_step_before_reset_and_queries_before_reset_raise() -> None:
    env = make_env("quadratic")
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({})
    with pytest.raises(RuntimeError, match="reset"):
        env.nash_gap()


def test_constructor_refuses_bad_arguments_with_the_fix() -> None:
    with pytest.raises(ValueError, match="action_mode must be 'update' or 'step_size'"):
        mtg_env.parallel_env(suite="quadratic", action_mode="grad")
    with pytest.raises(ValueError, match="unknown suite 'mnist'; available"):
        mtg_env.parallel_env(suite="mnist")
    with pytest.raises(ValueError, match=r"unknown consensus rule 'median'; available: \['sum', 'mean', 'mgda',"):
        mtg_env.parallel_env(suite="quadratic", consensus="median")
    with pytest.raises(TypeError, match=r"suite 'quadratic' has no option\(s\) \['batch_size'\]"):
        mtg_env.parallel_env(suite="quadratic", batch_size=3)
    with pytest.raises(ValueError, match="dtype must be"):
        mtg_env.parallel_env(suite="quadratic", dtype="float16")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_cycles": 2.7}, TypeError, r"max_cycles must be an int >= 1 \(steps before truncation\), got float 2.7"),
        ({"max_cycles": float("inf")}, TypeError, "max_cycles must be an int >= 1"),
        ({"max_cycles": 0}, ValueError, "max_cycles must be an int >= 1 .*got 0"),
        ({"max_cycles": True}, TypeError, "max_cycles must be an int"),
        ({"metrics_every": "2"}, TypeError, "metrics_every must be an int >= 0"),
        ({"numeric_infos": "no"}, TypeError, "numeric_infos must be True or False, got str 'no'"),
        ({"max_update": "1"}, ValueError, "max_update must be a finite number > 0 or None"),
        ({"log_step_range": (-3.0,)}, ValueError, r"log_step_range must be a pair \(low, high\)"),
        ({"log_step_range": ("a", 1)}, ValueError, "log_step_range must hold two numbers"),
        ({"divergence_reward": float("nan")}, ValueError, "divergence_reward must be 'remaining', 'clipped_loss' or a"),
        ({"divergence_reward": "zero"}, ValueError, "divergence_reward must be 'remaining', 'clipped_loss' or a"),
        ({"step_size_units": "linear"}, ValueError, "step_size_units must be 'unit'"),
        ({"device": "bogus"}, ValueError, "device must be a torch device such as 'cpu' or 'cuda', got 'bogus'"),
        ({"device": "meta"}, ValueError, "device must be a CPU or CUDA device, got 'meta'"),
    ],
)
def test_constructor_refuses_what_it_would_otherwise_coerce(kwargs: dict, error: type, message: str) -> None:
    # Fuzz report items 10-12: refused with the argument's name, never silently converted or crashing deep inside.
    with pytest.raises(error, match=message):
        mtg_env.parallel_env(suite="quadratic", **kwargs)


# --------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("mode", MODES)
def test_divergence_terminates_every_agent_and_reset_recovers(mode: str) -> None:
    if mode == "step_size":
        env = make_env("quadratic", mode, log_step_range=(-5.0, 60.0))
        act = lambda obs: {a: np.ones(2, np.float32) for a in env.agents}  # noqa: E731  # log step 60
    else:
        env = make_env("digits", mode, max_update=1e38)
        act = lambda obs: {a: np.full(env.action_space(a).shape, 1e38, np.float32) for a in env.agents}  # noqa: E731
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        obs, rewards, term, trunc, infos = env.step(act(obs))
        if any(term.values()):
            break
    assert all(term.values()) and not any(trunc.values())
    assert {info["diverged"] for info in infos.values()} == {1.0}
    assert env.agents == []
    for a, o in obs.items():
        assert env.observation_space(a).contains(o), f"{a}: observation left its Box after divergence"
        assert np.isfinite(rewards[a])
    obs, infos = env.reset(seed=0)
    assert env.agents == env.possible_agents
    assert all(np.isfinite(info["loss"]) for info in infos.values())


def test_named_infos_say_why_a_game_diverged() -> None:
    env = make_env("quadratic", "step_size", log_step_range=(-5.0, 60.0), numeric_infos=False)
    env.reset(seed=0)
    for _ in range(10):
        _, _, term, _, infos = env.step({a: np.ones(2, np.float32) for a in env.agents})
        if any(term.values()):
            break
    assert {info["termination"] for info in infos.values()} == {"diverged"}
    assert "non-finite" in infos["task_0"]["reason"]


# ------------------------------------------------------------------------- start, queries
def test_reset_options_set_the_starting_point() -> None:
    env = make_env("quadratic", dtype="float64")
    start_h, start_t = np.arange(6.0), np.array([10.0, -10.0])
    env.reset(seed=0, options={"heads": start_h, "trunk": start_t})
    h, t = env.get_parameters()
    np.testing.assert_array_equal(h.cpu().numpy(), start_h)
    np.testing.assert_array_equal(t.cpu().numpy(), start_t)
    with pytest.raises(ValueError, match=r"reset option 'trunk' must have shape \(2,\)"):
        env.reset(options={"trunk": np.zeros(3)})


def test_render_modes_return_a_table_and_an_image() -> None:
    env = make_env("quadratic", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(gradient_actions(env, env.reset(seed=0)[0]))
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
    text = env.render("ansi")  # RLlib's wrapper passes the mode explicitly
    assert text.splitlines()[0].startswith("mtg_quadratic_v6  t=1/")
    assert all(a in text for a in env.possible_agents)


def test_repr_names_the_configuration() -> None:
    env = make_env("quadratic", consensus="mean", max_cycles=7)
    assert repr(env) == "MultiTaskGameEnv(suite='quadratic', consensus='mean', action_mode='update', max_cycles=7)"


# ------------------------------------------------------------------------ the paper's agents
@pytest.mark.parametrize("consensus", ["sum", "mean"])
@pytest.mark.parametrize("mode", MODES)
def test_gradient_agents_reach_the_closed_form_equilibrium(consensus: str, mode: str) -> None:
    env = mtg_env.parallel_env(
        suite="quadratic",
        num_tasks=3,
        head_dim=2,
        trunk_dim=3,
        condition=10.0,
        consensus=consensus,
        action_mode=mode,
        dtype="float64",
        max_cycles=2000,
    )
    history = run_episode(env, make_agents("gradient", env, lr=0.05), seed=11)
    heads, trunk = env.get_parameters()
    heads_star, trunk_star = env.suite.equilibrium()
    distance = torch.cat([heads - heads_star, trunk - trunk_star]).norm().item()
    assert distance < 1e-8, f"distance to the closed-form equilibrium {distance:.3g}"
    assert history.nash_gap is not None and history.nash_gap[-1].max() < 1e-16
    assert not history.terminated


@pytest.mark.parametrize("seed", [0])
def test_gradient_agents_learn_digits_to_90_percent_in_500_steps(seed: int) -> None:
    env = mtg_env.parallel_env(suite="digits", consensus="sum", max_cycles=500)
    history = run_episode(env, make_agents("gradient", env), seed=seed)
    accuracies = {f["task"]: f["test_accuracy"] for f in history.final.values() if "test_accuracy" in f}
    assert set(accuracies) == {"digit", "parity", "ge5"}
    assert min(accuracies.values()) >= 0.90, accuracies


@pytest.mark.slow
@pytest.mark.parametrize("consensus", ["sum", "mean"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gradient_agents_learn_digits_across_seeds(consensus: str, seed: int) -> None:
    # max_update=None: the mean rule's trunk step, 0.3, leaves v6's relative action box on some steps (the
    # player would be clipped and warn); this test is about learning, not the box.
    env = mtg_env.parallel_env(suite="digits", consensus=consensus, max_cycles=500, max_update=None)
    lr = 0.1 if consensus == "sum" else 0.3  # mean divides the trunk step by M = 4
    history = run_episode(env, make_agents("gradient", env, lr=lr), seed=seed)
    accuracies = [f["test_accuracy"] for f in history.final.values() if "test_accuracy" in f]
    assert min(accuracies) >= 0.90, accuracies


def test_gradient_agent_default_repr() -> None:
    assert repr(GradientAgent()) == "GradientAgent(lr=0.1, schedule='constant')"


def diverge(env: mtg_env.MultiTaskGameEnv) -> tuple[dict[str, float], int]:
    """Play the largest steps until the game diverges; the rewards of that step and the step."""
    env.reset(seed=0)
    for t in range(1, 11):
        _, rewards, term, _, _ = env.step({a: env.action_space(a).high for a in env.agents})
        if any(term.values()):
            return rewards, t
    raise AssertionError("the game did not diverge")


def test_divergence_reward_options() -> None:
    fixed = make_env("quadratic", "step_size", log_step_range=(-5.0, 60.0), divergence_reward=-10.0)
    rewards, _ = diverge(fixed)
    assert set(rewards.values()) == {-10.0}
    clipped = make_env("quadratic", "step_size", log_step_range=(-5.0, 60.0), divergence_reward="clipped_loss")
    rewards, _ = diverge(clipped)
    assert all(np.isfinite(r) and abs(r) == np.finfo(np.float32).max for r in rewards.values())


def test_default_divergence_reward_never_makes_divergence_pay() -> None:
    # "remaining": −(T − t + 1)·max(1, |ℓ_m at reset|), the return of a task stuck at its start for the rest of
    # the episode: at least as bad as any episode whose loss never exceeds its starting loss.
    env = make_env("quadratic", "step_size", log_step_range=(-5.0, 60.0), max_cycles=50)
    _, start = env.reset(seed=0)
    start_losses = {a: max(1.0, abs(start[a]["loss"])) for a in env.agents}
    rewards, t = diverge(env)
    for agent, reward in rewards.items():
        assert reward == pytest.approx(-(50 - t + 1) * start_losses[agent], rel=1e-6)


def test_a_callable_rule_returning_another_dtype_is_cast_and_the_game_goes_on() -> None:
    # Fuzz report item 1: a float64 (or int) output in a float32 env used to raise after moving the game.
    env = make_env("quadratic", "step_size", consensus=lambda p: p.to(torch.float64).sum(0))
    env.reset(seed=3)
    for _ in range(3):
        _, rewards, *_ = env.step({a: steps_action(env, 0.1, 0.1) for a in env.agents})
    heads, trunk = env.get_parameters()
    assert heads.dtype == trunk.dtype == torch.float32 and all(np.isfinite(list(rewards.values())))


def test_a_rule_output_that_requires_grad_does_not_grow_a_graph() -> None:
    # Fuzz report item 9: a rule whose output requires grad must not chain the trunk into an autograd graph.
    weight = torch.ones(1, requires_grad=True, device=DEVICE)
    env = make_env("quadratic", "step_size", consensus=lambda p: weight * p.sum(0))
    env.reset(seed=0)
    for _ in range(3):
        env.step({a: steps_action(env, 0.1, 0.1) for a in env.agents})
    assert not env.get_parameters()[1].requires_grad and env.engine_state.trunk.grad_fn is None


class _NoisyRule:
    """A randomized callable rule written as docs/guides/add_a_consensus_rule.md documents: it draws from the
    generator it is bound to."""

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None

    def bind(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, proposals: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(proposals.shape[1], generator=self.generator, dtype=torch.float64)  # the bound CPU generator
        return proposals.sum(0) * (1 + noise.to(proposals.device, proposals.dtype))


def test_measuring_never_shifts_a_randomized_rules_draws() -> None:
    # Fuzz report item 4: metrics() and metrics_every drew from the env's generator and changed the episode.
    plain = make_env("quadratic", "step_size", consensus=_NoisyRule(), dtype="float64")
    measured = make_env(
        "quadratic", "step_size", consensus=_NoisyRule(), dtype="float64", metrics_every=1, numeric_infos=False
    )
    plain.reset(seed=5)
    measured.reset(seed=5)
    for t in range(4):
        actions = {a: steps_action(plain, 0.1, 0.1) for a in plain.agents}
        plain.step(actions)
        measured.metrics()
        measured.step(actions)
        assert torch.equal(plain.get_parameters()[1], measured.get_parameters()[1]), f"step {t}"
