"""A learned step-size policy (shared PPO) against the paper's gradient agents, on held-out seeds.

1. Train one PPO policy (Stable-Baselines3 through SuperSuit) shared by all tasks of `regression` in
   `step_size` mode: from its 8 features each task picks its log step sizes (head, trunk) every step.
2. Tune the paper's GradientAgent: the constant step with the best final L_MT on the training seeds,
   and Robbins–Monro α_0/(1+t)^0.75 with the best α_0 on the same grid.
3. On held-out seeds, play every player to the end of the episode and compare the final per-task
   losses on the whole training objective and the head Nash gap (Definition 1, exact least squares).

The trained policy is saved to ``OUT/ppo_policy.zip`` and loaded back for the evaluation.

    python examples/ppo_vs_paper.py [--timesteps 60000] [--eval-seeds 10] [--out runs/ppo_vs_paper]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import supersuit as ss
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed

import mtg_env
from agents import GradientAgent
from mtg_env.wrappers import UnitActions

GAME: dict[str, Any] = {
    "suite": "regression",
    "action_mode": "step_size",
    "max_cycles": 100,
    "log_step_range": (-7.0, -1.5),  # the stable range of this game's steps
    "divergence_reward": -10.0,
}
LR_GRID = (0.01, 0.03, 0.1, 0.2)
TRAIN_SEEDS = range(5)


def train_ppo(timesteps: int, seed: int, out: Path) -> Path:
    # SB3 draws from the global RNGs (this script's, not the package's): torch's for the network's init and its
    # actions, numpy's for the minibatches' shuffle (unseeded, the figure moved from run to run on one machine).
    # set_random_seed seeds random, numpy and torch, as PPO(seed=...) would.
    set_random_seed(seed)
    env = mtg_env.parallel_env(**GAME)
    env.reset(seed=seed)  # seed the env itself: PPO(seed=...) crashes on SuperSuit's ConcatVecEnv
    venv = ss.concat_vec_envs_v1(
        # The policy acts in [−1, 1], mapped onto the log-step Box: SB3's Gaussian starts at mean 0, which
        # lies outside [−7, −1.5]; unmapped, every action is clipped to the top and PPO learns nothing.
        ss.pettingzoo_env_to_vec_env_v1(UnitActions(env)),
        1,
        num_cpus=0,
        base_class="stable_baselines3",
    )
    model = PPO("MlpPolicy", venv, n_steps=300, batch_size=300, learning_rate=3e-4, gamma=0.99, verbose=0, device="cpu")
    model.learn(total_timesteps=timesteps)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ppo_policy.zip"
    model.save(path)
    return path


Player = Callable[[mtg_env.MultiTaskGameEnv, int], dict[str, Any]]


def play(
    env: mtg_env.MultiTaskGameEnv, seed: int, act: Callable[[dict[str, np.ndarray], dict], dict]
) -> dict[str, Any]:
    observations, infos = env.reset(seed=seed)
    state: dict[str, Any] = {"infos": infos, "first": True}
    while env.agents:
        observations, _, _, _, infos = env.step(act(observations, state))
        state["infos"] = infos
    final = env.evaluate()
    gaps = env.nash_gap()
    return {
        "losses": [final[a]["train_loss"] for a in env.possible_agents],
        "nash_gap": [gaps[a] for a in env.possible_agents],
    }


def ppo_player(model: PPO) -> Player:
    def run(env: mtg_env.MultiTaskGameEnv, seed: int) -> dict[str, Any]:
        unit = UnitActions(env)

        def act(obs: dict[str, np.ndarray], state: dict) -> dict:
            batch = np.stack([obs[a] for a in env.agents])
            actions, _ = model.predict(batch, deterministic=True)
            return {a: unit.to_env_action(a, x) for a, x in zip(env.agents, actions, strict=True)}

        return play(env, seed, act)

    return run


def gradient_player(lr: float, schedule: str) -> Player:
    def run(env: mtg_env.MultiTaskGameEnv, seed: int) -> dict[str, Any]:
        agents = {a: GradientAgent(lr=lr, schedule=schedule) for a in env.possible_agents}  # type: ignore[arg-type]

        def act(obs: dict[str, np.ndarray], state: dict) -> dict:
            if state.pop("first", False):
                for a, agent in agents.items():
                    agent.reset(obs[a], state["infos"][a], env.action_space(a))
            return {a: agents[a].act(obs[a], state["infos"][a]) for a in env.agents}

        return play(env, seed, act)

    return run


def evaluate(player: Player, seeds: range) -> dict[str, Any]:
    runs = [player(mtg_env.parallel_env(**GAME), seed) for seed in seeds]
    losses = np.array([r["losses"] for r in runs])
    gaps = np.array([r["nash_gap"] for r in runs])
    return {
        "loss_mean": losses.mean(0).tolist(),
        "loss_std": losses.std(0).tolist(),
        "l_mt_mean": float(losses.sum(1).mean()),
        "l_mt_std": float(losses.sum(1).std()),
        "nash_gap_mean": float(gaps.sum(1).mean()),
        "nash_gap_std": float(gaps.sum(1).std()),
    }


def tune(schedule: str) -> float:
    scores = {lr: evaluate(gradient_player(lr, schedule), TRAIN_SEEDS)["l_mt_mean"] for lr in LR_GRID}
    return min(scores, key=scores.__getitem__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=60000, help="PPO training budget (agent-steps)")
    parser.add_argument("--eval-seeds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/ppo_vs_paper"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.perf_counter()
    path = train_ppo(args.timesteps, args.seed, args.out)
    model = PPO.load(path, device="cpu")
    train_seconds = time.perf_counter() - clock
    lr_constant, lr_rm = tune("constant"), tune("robbins_monro")
    held_out = range(1000, 1000 + args.eval_seeds)
    players = {
        "PPO (shared, learned step sizes)": ppo_player(model),
        f"GradientAgent constant lr={lr_constant}": gradient_player(lr_constant, "constant"),
        f"GradientAgent robbins_monro lr0={lr_rm}": gradient_player(lr_rm, "robbins_monro"),
    }
    results = {name: evaluate(player, held_out) for name, player in players.items()}
    print(
        f"regression, step_size mode, {GAME['max_cycles']} steps; PPO trained {args.timesteps} agent-steps "
        f"({train_seconds:.0f} s); {args.eval_seeds} held-out seeds; lr grid {LR_GRID} tuned on seeds 0-4"
    )
    print(f"{'player':<40}{'final L_MT':>18}{'head Nash gap':>20}   per-task loss")
    for name, r in results.items():
        per_task = ", ".join(f"{m:.4f}" for m in r["loss_mean"])
        print(
            f"{name:<40}{r['l_mt_mean']:>10.4f} ± {r['l_mt_std']:<6.4f}{r['nash_gap_mean']:>12.2e} ± "
            f"{r['nash_gap_std']:<8.1e} {per_task}"
        )
    (args.out / "results.json").write_text(
        json.dumps({"game": GAME, "timesteps": args.timesteps, "results": results}, indent=1, default=str)
    )
    print(f"wrote {path} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
