"""The vector env in TorchRL (``to_torchrl``) and Stable-Baselines3 (``to_sb3``): specs, episode ends, seeding,
equality with a lone ``parallel_env`` of the same seed, and a few steps of PPO with each library."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
import torch

import mtg_env
from mtg_env import vector_env
from mtg_env.wrappers import to_sb3, to_torchrl

torchrl = pytest.importorskip("torchrl")
sb3 = pytest.importorskip("stable_baselines3")

from torchrl.envs.utils import check_env_specs  # noqa: E402  (after the importorskip guard)

REPO = Path(__file__).resolve().parent.parent
# These tests speak in log step sizes (v1 units), which keeps their numbers readable.
REGRESSION: dict[str, Any] = {
    "suite": "regression",
    "action_mode": "step_size",
    "log_step_range": (-7.0, -1.5),
    "step_size_units": "log",
}
DIGITS_UPDATE: dict[str, Any] = {
    "suite": "digits",
    "hidden": (16, 8),
    "batch_size": 32,
    "action_mode": "update",
    "max_update": 0.01,
}
CONFIGS: dict[str, dict[str, Any]] = {"step_size": REGRESSION, "update": DIGITS_UPDATE}


def unpad(row: torch.Tensor, game: Any, m: int) -> torch.Tensor:
    """Task m's vector in the single env's layout: the same as the venv's (both pad heads to the largest)."""
    f = len(mtg_env.FEATURES)
    assert row.shape[-1] in (2, f, game.max_head + game.trunk_size, game.max_head + game.trunk_size + f)
    return row


def lone_step(env: mtg_env.MultiTaskGameEnv, actions: torch.Tensor, game: Any) -> tuple[Any, ...]:
    """Step the lone env with one game's actions ``[M, k]`` of the venv (unpadded per task)."""
    return env.step({a: unpad(actions[m], game, m).numpy() for m, a in enumerate(env.possible_agents)})


# ---------------------------------------------------------------------------------------------- TorchRL
@pytest.mark.parametrize("mode", ["step_size", "update"])
def test_torchrl_specs_and_a_rollout_across_episode_ends(mode: str) -> None:
    venv = vector_env(3, max_cycles=4, **CONFIGS[mode])
    env = to_torchrl(venv)
    b, m, d, k = 3, venv.num_tasks, venv.observation_size, venv.action_size
    assert env.batch_size == (b,) and env.action_spec.shape == (b, m, k)
    torch.testing.assert_close(env.action_spec.space.low[1, 2], venv.action_low)
    check_env_specs(env, seed=0, break_when_any_done="both")
    env.set_seed(1)
    td = env.rollout(10, break_when_any_done=False)  # max_cycles 4: crosses two episode ends
    assert td.shape == (b, 10)
    assert td["next", "observation"].shape == (b, 10, m, d) and td["next", "reward"].shape == (b, 10, m, 1)
    for key in ("done", "terminated", "truncated"):
        assert td["next", key].shape == (b, 10, 1) and td["next", key].dtype == torch.bool
    ends = [t % 4 == 3 for t in range(10)]
    assert td["next", "done"].squeeze(-1).tolist() == [ends] * b
    assert td["next", "truncated"].squeeze(-1).tolist() == [ends] * b and not td["next", "terminated"].any()
    assert not td["done"].any()  # the root of every step is a live game: finished ones were reset
    spec = env.observation_spec["observation"]
    for t in range(10):
        assert spec.is_in(td["next", "observation"][:, t]) and spec.is_in(td["observation"][:, t])
    # Finished games were reset (no step past an end): each is 2 steps into the third episode of seed 1 + b.
    assert venv.state.seeds.tolist() == [1, 2, 3]
    assert venv.state.t.tolist() == [2] * b and venv.state.episodes.tolist() == [2] * b


@pytest.mark.parametrize("mode", ["step_size", "update"])
def test_torchrl_game_b_plays_the_lone_env_episode_of_seed_plus_b(mode: str) -> None:
    kwargs = {**CONFIGS[mode], "max_cycles": 3}
    b, steps, seed = (3, 7, 11) if mode == "step_size" else (2, 5, 11)
    venv = vector_env(b, **kwargs)
    env = to_torchrl(venv)
    env.set_seed(seed)
    gen = torch.Generator().manual_seed(0)
    low, high = venv.action_low, venv.action_high
    actions = [
        low + (high - low) * torch.rand(b, venv.num_tasks, venv.action_size, generator=gen) for _ in range(steps)
    ]
    td = env.rollout(steps, actions=actions, break_when_any_done=False)
    game = venv.game
    for g in range(b):
        lone = mtg_env.parallel_env(**kwargs)
        obs, _ = lone.reset(seed=seed + g)
        for t in range(steps):
            for m, agent in enumerate(lone.possible_agents):  # the step's first observation (after any reset)
                torch.testing.assert_close(unpad(td["observation"][g, t, m], game, m), torch.from_numpy(obs[agent]))
            obs, rewards, terms, truncs, infos = lone_step(lone, actions[t][g], game)
            for m, agent in enumerate(lone.possible_agents):
                torch.testing.assert_close(
                    unpad(td["next", "observation"][g, t, m], game, m), torch.from_numpy(obs[agent])
                )
                reward = float(td["next", "reward"][g, t, m, 0])
                assert reward == pytest.approx(rewards[agent], rel=1e-6)
                assert reward == pytest.approx(-infos[agent]["loss"], rel=1e-6)  # reward = −loss
            assert bool(td["next", "done"][g, t]) == (terms["task_0"] or truncs["task_0"])
            if truncs["task_0"]:
                obs, _ = lone.reset()  # no seed: the seed's next episode, as the reset game plays


def test_torchrl_partial_resets_partial_steps_and_seeding() -> None:
    venv = vector_env(3, max_cycles=4, **REGRESSION)
    env = to_torchrl(venv)
    env.set_seed(5)
    td = env.reset()
    assert venv.state.seeds.tolist() == [5, 6, 7] and venv.state.episodes.tolist() == [0, 0, 0]
    first = td["observation"].clone()
    for _ in range(2):
        td = env.step_mdp(env.step(env.rand_action(td)))
    before = td["observation"].clone()
    # A partial reset: game 0 starts its seed's next episode, the others keep playing.
    td.set("_reset", torch.tensor([[True], [False], [False]]))
    td = env.reset(td)
    assert venv.state.t.tolist() == [0, 2, 2] and venv.state.episodes.tolist() == [1, 0, 0]
    torch.testing.assert_close(td["observation"][1:], before[1:])
    assert not torch.equal(td["observation"][0], first[0])  # episode 1 of seed 5 starts elsewhere
    # Partial steps: games 1 and 2 end after 2 steps and stay put while game 0 plays on to its own end.
    out = env.rollout(10, auto_reset=False, tensordict=td, break_when_all_done=True)
    assert out.shape == (3, 4) and venv.state.t.tolist() == [4, 4, 4]
    assert out["next", "done"][0].squeeze(-1).tolist() == [False, False, False, True]
    assert out["next", "done"][1:, 1].all()
    # Same seed, same first observations; a reset without a new seed plays the next episode.
    env.set_seed(5)
    torch.testing.assert_close(env.reset()["observation"], first)
    assert not torch.equal(env.reset()["observation"], first) and venv.state.episodes.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="seed"):
        env.set_seed(2**63 - 2)  # game 2 would need a seed of 2**63


def test_torchrl_mappo_optimisation_steps_with_a_collector() -> None:
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    with warnings.catch_warnings():
        # TorchRL 0.14 deprecates its own weight-updater classes when torchrl.collectors defines them.
        warnings.filterwarnings("ignore", "Creating .*WeightUpdater which inherits", DeprecationWarning)
        from torchrl.collectors import Collector  # 0.14's name of SyncDataCollector

    venv = vector_env(4, max_cycles=4, **REGRESSION)
    env = to_torchrl(venv)
    env.set_seed(0)
    torch.manual_seed(0)
    m, d, k = venv.num_tasks, venv.observation_size, venv.action_size
    bounds = env.action_spec_unbatched.space
    actor = ProbabilisticActor(
        TensorDictModule(
            torch.nn.Sequential(
                MultiAgentMLP(d, 2 * k, m, centralised=False, share_params=True, depth=1, num_cells=16),
                NormalParamExtractor(),
            ),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": bounds.low, "high": bounds.high},
        return_log_prob=True,
    )
    # MAPPO: one shared actor, a centralised critic that sees every task's observation.
    critic = TensorDictModule(
        MultiAgentMLP(d, 1, m, centralised=True, share_params=True, depth=1, num_cells=16),
        in_keys=["observation"],
        out_keys=["state_value"],
    )
    loss = ClipPPOLoss(actor, critic, normalize_advantage=False)
    loss.set_keys(done="task_done", terminated="task_terminated")  # per-task copies of the game's flags
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in loss.parameters()]
    # The policy needs no "is_init" flag: opt out of 0.14's InitTracker auto-registration explicitly.
    collector = Collector(env, actor, frames_per_batch=32, total_frames=64, auto_register_policy_transforms=False)
    batches = 0
    for data in collector:
        assert data.shape == (4, 8) and data["next", "done"].sum() == 8  # two episode ends per game
        for key in ("done", "terminated"):
            data["next", f"task_{key}"] = data["next", key].unsqueeze(-2).expand(*data.shape, m, 1)
        with torch.no_grad():
            loss.value_estimator(
                data, params=loss.critic_network_params, target_params=loss.target_critic_network_params
            )
        losses = loss(data)
        total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
        assert torch.isfinite(total)
        optim.zero_grad()
        total.backward()
        optim.step()
        batches += 1
    collector.shutdown()
    assert batches == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.parameters(), strict=True))


# ---------------------------------------------------------------------------------------------- SB3
def test_sb3_spaces_shapes_dones_and_terminal_observation() -> None:
    venv = vector_env(2, max_cycles=3, **REGRESSION)
    vec = to_sb3(venv)
    m = venv.num_tasks
    assert vec.num_envs == 2 * m
    assert vec.observation_space == venv.single.observation_space("task_0")
    assert vec.action_space.dtype == np.float32 and vec.action_space.shape == (2,)
    np.testing.assert_array_equal(vec.action_space.low, [-7.0, -7.0])
    vec.seed(4)
    obs = vec.reset()
    assert obs.shape == (2 * m, len(mtg_env.FEATURES)) and obs.dtype == np.float32
    assert vec.observation_space.contains(obs[0])
    lones = [mtg_env.parallel_env(**REGRESSION, max_cycles=3) for _ in range(2)]
    expected = [lone.reset(seed=4 + g)[0] for g, lone in enumerate(lones)]
    for g, lone in enumerate(lones):
        for i, agent in enumerate(lone.possible_agents):
            np.testing.assert_allclose(obs[g * m + i], expected[g][agent], rtol=1e-6, atol=1e-6)
    gen = np.random.default_rng(0)
    for t in range(3):
        # Outside the Box on purpose: the adapter clips, as the lone env is given the clipped action.
        actions = gen.uniform(-8.0, 0.0, size=(2 * m, 2)).astype(np.float32)
        obs, rewards, dones, infos = vec.step(actions)
        assert obs.shape == (2 * m, len(mtg_env.FEATURES)) and rewards.shape == (2 * m,) and rewards.dtype == np.float32
        assert dones.shape == (2 * m,) and dones.dtype == bool and len(infos) == 2 * m
        clipped = np.clip(actions, -7.0, -1.5)
        for g, lone in enumerate(lones):
            step = {a: clipped[g * m + i] for i, a in enumerate(lone.possible_agents)}
            lone_obs, lone_rewards, _, truncs, lone_infos = lone.step(step)
            for i, agent in enumerate(lone.possible_agents):
                env_i = g * m + i
                assert rewards[env_i] == pytest.approx(lone_rewards[agent], rel=1e-6)
                assert rewards[env_i] == pytest.approx(-lone_infos[agent]["loss"], rel=1e-6)
                if t < 2:
                    assert not dones[env_i] and "terminal_observation" not in infos[env_i]
                    np.testing.assert_allclose(obs[env_i], lone_obs[agent], rtol=1e-6, atol=1e-6)
                else:  # the end: the last observation in the info, the next episode's first returned
                    assert truncs[agent] and dones[env_i] and infos[env_i]["TimeLimit.truncated"] is True
                    np.testing.assert_allclose(
                        infos[env_i]["terminal_observation"], lone_obs[agent], rtol=1e-6, atol=1e-6
                    )
            if t == 2:
                next_obs, _ = lone.reset()
                for i, agent in enumerate(lone.possible_agents):
                    np.testing.assert_allclose(obs[g * m + i], next_obs[agent], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="actions must have shape"):
        vec.step(np.zeros((m, 2), np.float32))
    bad = np.full((2 * m, 2), -3.0, np.float32)
    bad[m, 1] = np.nan  # clipping keeps NaN: the venv refuses it and names the game and task
    with pytest.raises(ValueError, match="game 1, task_0 at index 1"):
        vec.step(bad)


def test_sb3_update_mode_space_is_the_padded_layout() -> None:
    venv = vector_env(1, **DIGITS_UPDATE)
    vec = to_sb3(venv)
    big = np.finfo(np.float32).max
    grads = venv.game.max_head + venv.game.trunk_size
    assert vec.observation_space.shape == (grads + len(mtg_env.FEATURES),) and vec.action_space.shape == (grads,)
    assert (vec.observation_space.low[:grads] == -big).all() and (vec.observation_space.high[:grads] == big).all()
    feature_space = venv.single.observation_space("task_3")
    np.testing.assert_array_equal(vec.observation_space.low[grads:], feature_space.low[-len(mtg_env.FEATURES) :])
    np.testing.assert_array_equal(vec.action_space.high, np.full(grads, 0.01, np.float32))
    obs = vec.reset()
    assert all(vec.observation_space.contains(o) for o in obs)


def test_sb3_seeding_and_attributes() -> None:
    vec = to_sb3(vector_env(2, max_cycles=3, **REGRESSION))
    other = to_sb3(vector_env(2, max_cycles=3, **REGRESSION))
    assert vec.seed(9) == [9, 9, 9, 10, 10, 10]
    other.seed(9)
    first = vec.reset()
    np.testing.assert_array_equal(first, other.reset())
    assert vec.venv.state.seeds.tolist() == [9, 10]
    again = vec.reset()  # no new seed: every game's next episode
    assert vec.venv.state.episodes.tolist() == [1, 1] and not np.array_equal(first, again)
    vec._seeds = [3, 3, 3, None, None, None]  # a seed for game 0 only: game 1 plays its next episode
    vec.reset()
    assert vec.venv.state.seeds.tolist() == [3, 10] and vec.venv.state.episodes.tolist() == [0, 2]
    assert vec.get_attr("max_cycles") == [3] * 6 and vec.get_attr("render_mode", indices=[0]) == [None]
    assert vec.env_method("head_size", "task_1", indices=[1, 4]) == [vec.venv.single.head_size("task_1")] * 2
    assert vec.env_is_wrapped(gymnasium.Wrapper) == [False] * 6
    with pytest.raises(ValueError, match="share one configuration"):
        vec.set_attr("max_cycles", 5, indices=[0])


def test_sb3_ppo_learns_without_nan_and_changes_its_parameters() -> None:
    vec = to_sb3(vector_env(2, max_cycles=8, **REGRESSION))
    model = sb3.PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=384)  # two rollouts of 32 steps x 6 envs, four episode ends each
    assert model.num_timesteps >= 384 and vec.venv.state.seeds.tolist() == [0, 1]
    params = list(model.policy.parameters())
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))
    action, _ = model.predict(vec.reset(), deterministic=True)
    assert action.shape == (6, 2) and np.isfinite(action).all()


def test_a_diverged_game_terminates_in_both_adapters_and_restarts() -> None:
    # Log step 6 on game 0 diverges within two steps; game 1 (log step -3) plays on.
    kwargs = {**REGRESSION, "log_step_range": (-7.0, 6.0), "max_cycles": 20, "divergence_reward": -10.0}
    step = torch.tensor([[[6.0, 6.0]] * 3, [[-3.0, -3.0]] * 3])
    env = to_torchrl(vector_env(2, **kwargs))
    env.set_seed(0)
    td = env.rollout(6, actions=[step] * 6, break_when_any_done=False)
    terminated = td["next", "terminated"].squeeze(-1)
    assert terminated[0].any() and not terminated[1].any() and not td["next", "truncated"].any()
    assert (td["next", "done"] == td["next", "terminated"]).all()
    assert (td["next", "reward"][0][terminated[0]] == -10.0).all()  # the divergence reward, every task
    assert torch.isfinite(td["observation"]).all() and env.venv.state.t.tolist()[1] == 6

    vec = to_sb3(vector_env(2, **kwargs))
    vec.seed(0)
    vec.reset()
    for _ in range(6):
        _, rewards, dones, infos = vec.step(step.reshape(6, 2).numpy())
        if dones.any():
            break
    assert dones.tolist() == [True] * 3 + [False] * 3 and (rewards[:3] == -10.0).all()
    for i in range(3):  # diverged, not cut by the time limit: SB3 must not bootstrap from it
        assert infos[i]["TimeLimit.truncated"] is False
        assert vec.observation_space.contains(infos[i]["terminal_observation"])
    assert vec.venv.state.t.tolist()[0] == 0 and vec.venv.state.episodes.tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------- examples
@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("vector_torchrl_ppo", ["--games", "4", "--iterations", "2", "--max-cycles", "8"]),
        ("vector_sb3_ppo", ["--games", "2", "--timesteps", "192", "--max-cycles", "8"]),
    ],
)
def test_vector_examples_run(script: str, args: list[str]) -> None:
    path = REPO / "examples" / f"{script}.py"
    proc = subprocess.run(
        # -W error: the examples are held to the suite's rule, warnings are errors.
        [sys.executable, "-W", "error", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"mean reward (before|after) training: +(\S+)", proc.stdout)
    assert [when for when, _ in found] == ["before", "after"], proc.stdout
    assert all(np.isfinite(float(value)) and float(value) < 0 for _, value in found)  # −loss: finite, negative
