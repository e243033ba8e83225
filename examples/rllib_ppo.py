"""RLlib: PPO with one module shared by every task, in `step_size` mode.

RLlib pins gymnasium 1.2, so run this in its own environment:

    python3 -m venv .venv-rllib && . .venv-rllib/bin/activate
    pip install torch==2.13.0 && pip install -e ".[rllib,dev]"
    python examples/rllib_ppo.py [--iterations 5]
    python -m pytest -m rllib          # the RLlib test
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import mtg_env

# The env's defaults suit RLlib's plain PPO: [−1, 1] actions, a bounded divergence reward, numeric infos.
GAME: dict[str, Any] = {"suite": "regression", "action_mode": "step_size", "max_cycles": 50}


def env_creator(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    return ParallelPettingZooEnv(mtg_env.parallel_env(**config))


def train(iterations: int = 5, seed: int = 0, game: dict[str, Any] | None = None) -> dict[str, float]:
    """Train for ``iterations`` PPO iterations on ``parallel_env(**game)`` (default :data:`GAME`); return the last
    iteration's episode-return mean (NaN before an episode ends) and the shared module's PPO losses."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_env("mtg_regression", env_creator)
    config = (
        PPOConfig()
        .environment("mtg_regression", env_config=dict(GAME if game is None else game))
        .multi_agent(policies={"shared"}, policy_mapping_fn=lambda agent_id, episode, **kwargs: "shared")
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={"shared": RLModuleSpec()}))
        .env_runners(num_env_runners=0)
        .training(train_batch_size_per_learner=300, minibatch_size=100, num_epochs=2, lr=3e-4)
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    try:
        for _ in range(iterations):
            result = algo.train()
    finally:
        algo.stop()
    runners = result["env_runners"]
    learner = result["learners"]["shared"]
    return {
        "episode_return_mean": float(runners.get("episode_return_mean", float("nan"))),
        "policy_loss": float(learner["policy_loss"]),
        "vf_loss": float(learner["vf_loss"]),
        "iterations": iterations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small tensors: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # on a busy machine more threads cost many times the run time
    result = train(args.iterations, args.seed)
    from _compare import print_table, references

    rows = {"RLlib PPO (training episodes)": (result["episode_return_mean"], float("nan"))}
    rows.update(references(GAME, [args.seed + 1000 + i for i in range(3)]))
    print_table(rows, f"RLlib PPO, shared module, {result['iterations']} iterations, {GAME['suite']} suite:")


if __name__ == "__main__":
    main()
