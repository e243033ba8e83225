"""Each MARL library's plain recipe on the env's defaults, with no env option: ``parallel_env()`` and
``parallel_env(action_mode="step_size")`` (RLlib's, in its own venv: ``tests/test_rllib.py``).

The libraries' hyper-parameters are their defaults except the rollout sizes, cut to fit a test's time budget;
nothing about the env is tuned.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import mtg_env

ss = pytest.importorskip("supersuit")
sb3 = pytest.importorskip("stable_baselines3")
torchrl = pytest.importorskip("torchrl")

PLAIN: dict[str, dict[str, Any]] = {"update": {}, "step_size": {"action_mode": "step_size"}}


def sb3_vec_env(env: mtg_env.MultiTaskGameEnv, seed: int) -> Any:
    """SuperSuit's documented PettingZoo → SB3 conversion (one vector slot per agent, one shared policy)."""
    env.reset(seed=seed)  # SB3's PPO(seed=...) would call venv.seed, which SuperSuit's ConcatVecEnv lacks
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    return ss.concat_vec_envs_v1(vec, 1, num_cpus=0, base_class="stable_baselines3")


def episode_return(env: mtg_env.MultiTaskGameEnv, act: Any, seed: int) -> float:
    """Mean over agents of the summed rewards of one episode."""
    obs, _ = env.reset(seed=seed)
    total = 0.0
    while env.agents:
        obs, rewards, *_ = env.step({a: act(obs[a]) for a in env.agents})
        total += float(np.mean(list(rewards.values())))
    return total


@pytest.mark.parametrize("mode", list(PLAIN))
def test_supersuit_sb3_ppo_runs_on_the_defaults_without_nan(mode: str) -> None:
    env = mtg_env.parallel_env(**PLAIN[mode])
    vec = sb3_vec_env(env, seed=0)
    assert vec.num_envs == 4  # SuperSuit accepts the env as is: every agent has the same spaces
    torch.manual_seed(0)  # PPO(seed=...) would call venv.seed, which SuperSuit lacks
    model = sb3.PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=2, device="cpu")
    model.learn(total_timesteps=512)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    obs = vec.reset()
    assert np.isfinite(obs).all() and np.abs(obs).max() <= np.finfo(np.float32).max
    action, _ = model.predict(obs, deterministic=True)
    assert np.isfinite(action).all()


@pytest.mark.parametrize("mode", list(PLAIN))
def test_torchrl_pettingzoo_wrapper_takes_the_defaults(mode: str) -> None:
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.envs.utils import check_env_specs

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PettingZoo in TorchRL is tested")  # TorchRL's version note
        env = PettingZooWrapper(mtg_env.parallel_env(max_cycles=4, **PLAIN[mode]))
    check_env_specs(env)
    assert list(env.group_map) == ["task"]  # one group: every agent has the same spaces
    td = env.rollout(6, break_when_any_done=False)  # crosses an episode end (or a divergence: random updates)
    reward = td["next", "task", "reward"].squeeze(-1)
    info = td["next", "task", "info"]
    assert torch.isfinite(reward).all()
    playing = info["diverged"] == 0  # reward = −loss, per agent, while the game has not diverged
    torch.testing.assert_close(reward[playing], -info["loss"][playing])


@pytest.mark.slow
def test_sb3_ppo_learns_step_sizes_that_beat_a_random_policy_on_held_out_seeds() -> None:
    env = mtg_env.parallel_env(action_mode="step_size", max_cycles=100)
    torch.manual_seed(0)
    model = sb3.PPO("MlpPolicy", sb3_vec_env(env, seed=0), n_steps=256, batch_size=256, device="cpu")
    model.learn(total_timesteps=20_000)
    rng = np.random.default_rng(0)
    held_out = range(1000, 1004)
    learned = [episode_return(env, lambda o: model.predict(o, deterministic=True)[0], s) for s in held_out]
    random = [episode_return(env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), s) for s in held_out]
    assert np.mean(learned) > np.mean(random), (learned, random)


def random_episode_lengths(env: mtg_env.MultiTaskGameEnv, seeds: range) -> list[int]:
    """Steps each episode of a random policy (uniform in the Box; space m of seed s seeded 100 s + m) lasted."""
    lengths = []
    for seed in seeds:
        env.reset(seed=seed)
        for m, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(100 * seed + m)
        steps = 0
        while env.agents:
            env.step({a: env.action_space(a).sample() for a in env.agents})
            steps += 1
        lengths.append(steps)
    return lengths


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(PLAIN))
def test_a_random_policy_plays_at_least_half_of_max_cycles_on_the_defaults(mode: str) -> None:
    """What every library's untrained policy sends (uniform in the Box) must not end the game at once: the median
    episode over 6 seeds lasts at least half of ``max_cycles`` (v5's update Box, ±1 per coordinate on digits'
    17 000 parameters, ended 6 of 6 at step 1)."""
    env = mtg_env.parallel_env(**PLAIN[mode])
    lengths = random_episode_lengths(env, range(6))
    assert np.median(lengths) >= env.max_cycles / 2, lengths


@pytest.mark.slow
@pytest.mark.parametrize("consensus", ["mean", "upgrad"])
def test_a_random_policy_plays_whole_episodes_under_mean_and_upgrad(consensus: str) -> None:
    """docs/engine.md's table: under ``mean`` and ``upgrad`` a random policy plays every seed's 500 steps (under
    ``sum`` 6 of 8, under ``mgda`` none: ``scripts/episode_lengths.py``)."""
    env = mtg_env.parallel_env(consensus=consensus)
    assert random_episode_lengths(env, range(3)) == [env.max_cycles] * 3


@pytest.mark.slow
def test_sb3_ppo_learns_updates_that_beat_a_random_policy_on_held_out_seeds() -> None:
    """The plain recipe in ``update`` mode (one shared policy over 17 000-coordinate actions) learns something a
    random policy does not: in relative units a constant action is a descent step, an easy thing to learn."""
    env = mtg_env.parallel_env(max_cycles=100)
    torch.manual_seed(0)
    model = sb3.PPO("MlpPolicy", sb3_vec_env(env, seed=0), n_steps=256, batch_size=256, device="cpu")
    model.learn(total_timesteps=4096)
    rng = np.random.default_rng(0)
    space = env.action_space("task_0")
    held_out = range(1000, 1004)
    learned = [episode_return(env, lambda o: model.predict(o, deterministic=True)[0], s) for s in held_out]
    random = [episode_return(env, lambda o: rng.uniform(space.low, space.high).astype(np.float32), s) for s in held_out]
    assert np.mean(learned) > np.mean(random), (learned, random)
