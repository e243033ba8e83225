"""SuperSuit + Stable-Baselines3: one PPO policy shared by every task, in `step_size` mode.

SuperSuit turns the parallel env into a vector env with one slot per task, so a single SB3 policy acts
for all of them. Seed the env itself (``env.reset(seed=...)``): SB3's ``PPO(seed=...)`` calls
``venv.seed``, which SuperSuit's ConcatVecEnv does not have.

    python examples/sb3_ppo.py [--timesteps 20000]
"""

from __future__ import annotations

import argparse

import numpy as np
import supersuit as ss
from stable_baselines3 import PPO

import mtg_env


def make_vec_env(seed: int, **kwargs):  # type: ignore[no-untyped-def]
    env = mtg_env.parallel_env(**kwargs)
    env.reset(seed=seed)
    return env, ss.concat_vec_envs_v1(
        ss.pettingzoo_env_to_vec_env_v1(env), 1, num_cpus=0, base_class="stable_baselines3"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    game = {
        "suite": "regression",
        "action_mode": "step_size",
        "max_cycles": 100,
        "log_step_range": (-7.0, -1.5),  # the regression game's stable range: no wasted diverging episodes
        "divergence_reward": -10.0,
    }
    _, venv = make_vec_env(args.seed, **game)
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, learning_rate=3e-4, verbose=0, device="cpu")
    model.learn(total_timesteps=args.timesteps)
    # Evaluate: play one episode on a new seed with the deterministic policy.
    _, eval_venv = make_vec_env(args.seed + 1000, **game)
    obs = eval_venv.reset()
    for _ in range(game["max_cycles"]):
        action, _ = model.predict(obs, deterministic=True)
        obs, rewards, _, _ = eval_venv.step(action)
    print(f"PPO's final losses per task on a held-out seed: {np.round(-rewards, 4).tolist()}")
    print(f"log step sizes it chose at the end (head, trunk) per task: {np.round(action, 2).tolist()}")


if __name__ == "__main__":
    main()
