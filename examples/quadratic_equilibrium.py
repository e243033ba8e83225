"""Theorem 3 in miniature: the paper's agents reach the closed-form equilibrium of a convex quadratic game.

For each step-size schedule and consensus rule, play gradient agents on a random convex quadratic game
(float64) and print the final distance to the closed-form fixed point and the final head Nash gap.

    python examples/quadratic_equilibrium.py [--steps 2000] [--lr 0.05]
"""

from __future__ import annotations

import argparse

import torch

import mtg_env
from agents import make_agents, run_episode


def distance_to_equilibrium(env: mtg_env.MultiTaskGameEnv) -> float:
    heads, trunk = env.get_parameters()
    heads_star, trunk_star = env.suite.equilibrium()
    return torch.cat([heads - heads_star, trunk - trunk_star]).norm().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small tensors: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # on a busy machine more threads cost many times the run time
    game = {"num_tasks": 3, "head_dim": 2, "trunk_dim": 3, "condition": 10.0}
    print(f"random convex quadratic game {game}, lr={args.lr}, {args.steps} steps, seed {args.seed}")
    print(f"{'schedule':<15}{'consensus':<11}{'distance to equilibrium':>25}{'max head Nash gap':>20}")
    for schedule in ("constant", "robbins_monro", "summable"):
        for consensus in ("sum", "mean"):
            env = mtg_env.parallel_env(  # max_update=None: the paper's rule, never clipped
                suite="quadratic", consensus=consensus, dtype="float64", max_cycles=args.steps, max_update=None, **game
            )
            history = run_episode(env, make_agents("gradient", env, lr=args.lr, schedule=schedule), seed=args.seed)
            gap = max(history.final[a]["nash_gap"] for a in env.possible_agents)
            print(f"{schedule:<15}{consensus:<11}{distance_to_equilibrium(env):>25.3e}{gap:>20.3e}")


if __name__ == "__main__":
    main()
