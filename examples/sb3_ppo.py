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

import supersuit as ss
import torch
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
    # Evaluate: play one episode on a new seed with the deterministic policy.
    env, eval_venv = make_vec_env(args.seed + 1000, **game)
    obs = eval_venv.reset()
    for _ in range(game["max_cycles"]):
        action, _ = model.predict(obs, deterministic=True)
        obs, rewards, _, _ = eval_venv.step(action)
    lo, hi = env.log_step_range
    chosen = [[round(lo + (float(v) + 1) * (hi - lo) / 2, 2) for v in a.clip(-1, 1)] for a in action]
    print(f"PPO's final losses per task on a held-out seed: {[round(float(-r), 4) for r in rewards]}")
    print(f"log step sizes it chose at the end (head, trunk) per task: {chosen}")


if __name__ == "__main__":
    main()
