"""Stable-Baselines3: one PPO policy for every task of many games, through ``mtg_env.wrappers.to_sb3``.

The adapter is an SB3 ``VecEnv`` with one env per (game, task), ``games × tasks`` in all, stepped together
by the engine. The env's defaults (v2) suit SB3's plain recipe: step-size actions in [−1, 1] (where SB3's
Gaussian starts) over log step sizes in [−5, −1], and a finite divergence reward.

    python examples/vector_sb3_ppo.py [--games 16] [--timesteps 40000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from mtg_env import vector_env
from mtg_env.wrappers import to_sb3

GAME = {"suite": "regression", "action_mode": "step_size"}


def make_vec_env(games: int, max_cycles: int) -> VecEnv:
    return to_sb3(vector_env(games, max_cycles=max_cycles, **GAME))


def mean_reward(model: PPO, vec: VecEnv, seed: int, max_cycles: int) -> float:
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
