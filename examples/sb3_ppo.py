"""SuperSuit + Stable-Baselines3: one PPO policy shared by every task, in `step_size` mode.

SuperSuit turns the parallel env into a vector env with one slot per task, so a single SB3 policy acts
for all of them. The env's defaults are what SB3 is built for, so no option is needed: actions in [−1, 1]
(mapped onto log step sizes in ``log_step_range``, default (−5, −1)), a bounded reward when a game diverges,
numeric infos. Seed the env itself (``env.reset(seed=...)``): SB3's ``PPO(seed=...)`` calls ``venv.seed``,
which SuperSuit's ConcatVecEnv does not have.

    python examples/sb3_ppo.py [--timesteps 20000] [--threads 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import supersuit as ss
import torch
from _compare import episode, print_table, references
from stable_baselines3 import PPO

import mtg_env


def make_vec_env(seed: int, **kwargs):  # type: ignore[no-untyped-def]
    env = mtg_env.parallel_env(**kwargs)
    env.reset(seed=seed)
    vec = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), 1, num_cpus=0, base_class="stable_baselines3")
    return env, vec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small networks: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    game = {"suite": "regression", "action_mode": "step_size", "max_cycles": 100}
    _, venv = make_vec_env(args.seed, **game)
    torch.manual_seed(args.seed)  # SB3's network init draws from torch's global RNG (this script's)
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, learning_rate=3e-4, verbose=0, device="cpu")
    model.learn(total_timesteps=args.timesteps)
    # Evaluate on held-out seeds, beside a random policy and the paper's agent on the same episodes.
    held_out = [args.seed + 1000 + i for i in range(3)]
    rows = {
        "PPO (deterministic)": tuple(
            np.mean([episode(game, s, lambda a, o: model.predict(o, deterministic=True)[0]) for s in held_out], axis=0)
        ),
        **references(game, held_out),
    }
    print_table(rows, f"{game['suite']}, {game['action_mode']} mode, {len(held_out)} held-out seeds:")


if __name__ == "__main__":
    main()
