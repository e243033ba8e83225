"""Stable-Baselines3: one PPO policy for every task of many games, through ``mtg_env.vector.to_sb3``.

The adapter is an SB3 ``VecEnv`` with one env per (game, task), ``games × tasks`` in all, stepped together
by the engine. A small ``VecEnvWrapper`` gives the policy [−1, 1] actions, mapped onto the log-step Box:
SB3's Gaussian starts at mean 0, outside [−7, −1.5], where every action would be clipped to one end.

    python examples/vector_sb3_ppo.py [--games 16] [--timesteps 40000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from mtg_env.vector import to_sb3, vector_env

# The regression game's stable range of log step sizes: no episode is wasted diverging.
GAME = {"suite": "regression", "action_mode": "step_size", "log_step_range": (-7.0, -1.5), "divergence_reward": -10.0}


class UnitActions(VecEnvWrapper):
    """Actions in [−1, 1] (clipped), mapped affinely onto the wrapped env's action Box."""

    def __init__(self, venv: VecEnv):
        box = venv.action_space
        assert isinstance(box, spaces.Box)
        self.low, self.high = box.low.astype(np.float64), box.high.astype(np.float64)
        super().__init__(venv, action_space=spaces.Box(-1.0, 1.0, box.shape, np.float32))

    def step_async(self, actions: np.ndarray) -> None:
        unit = np.clip(actions, -1.0, 1.0)
        self.venv.step_async((self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32))

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        return self.venv.step_wait()


def make_vec_env(games: int, max_cycles: int) -> UnitActions:
    return UnitActions(to_sb3(vector_env(games, max_cycles=max_cycles, **GAME)))


def mean_reward(model: PPO, vec: UnitActions, seed: int, max_cycles: int) -> float:
    """Mean reward (−loss) per task and step over one episode of every game, deterministic policy."""
    vec.seed(seed)  # game b plays seed + b
    obs = np.asarray(vec.reset())
    total = 0.0
    for _ in range(max_cycles):  # every game ends at max_cycles: exactly one episode
        action, _ = model.predict(obs, deterministic=True)
        next_obs, rewards, _, _ = vec.step(action)
        obs = np.asarray(next_obs)
        total += float(rewards.mean())
    return total / max_cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=16, help="games played at once (3 tasks each)")
    parser.add_argument("--timesteps", type=int, default=40_000, help="env steps of all envs together")
    parser.add_argument("--max-cycles", type=int, default=50, help="steps per episode")
    parser.add_argument("--n-steps", type=int, default=64, help="PPO rollout length per env (a multiple of 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.n_steps < 4 or args.n_steps % 4:
        parser.error(f"--n-steps must be a positive multiple of 4, got {args.n_steps}")
    torch.set_num_threads(1)  # small networks: extra threads only add overhead
    vec = make_vec_env(args.games, args.max_cycles)
    eval_vec = make_vec_env(args.games, args.max_cycles)
    # PPO(seed=...) seeds the networks and calls vec.seed(seed): game b of the training env plays seed + b.
    # Four mini-batches per epoch: batch_size divides the rollout (n_steps × envs) exactly.
    batch_size = max(1, args.n_steps * vec.num_envs // 4)
    model = PPO("MlpPolicy", vec, n_steps=args.n_steps, batch_size=batch_size, seed=args.seed, verbose=0, device="cpu")
    held_out = args.seed + 10_000
    print(f"mean reward before training: {mean_reward(model, eval_vec, held_out, args.max_cycles):.4f}")
    model.learn(total_timesteps=args.timesteps)
    print(f"mean reward after training:  {mean_reward(model, eval_vec, held_out, args.max_cycles):.4f}")


if __name__ == "__main__":
    main()
