"""How long an untrained learner's episodes last on the default env, per consensus rule (docs/engine.md).

    python scripts/episode_lengths.py                       # a random policy, 8 seeds, sum mean mgda upgrad
    python scripts/episode_lengths.py --policy gradient --lr 0.1 --consensus mgda

``random``: each agent's action uniform in its Box, the space seeded with 100·seed + m (what every library's
untrained policy sends, as ``tests/test_plain_recipes.py`` plays it). ``gradient``: the paper's ``GradientAgent(lr)``
(Eq. 23–24). For each rule it prints the steps each seed played (``max_cycles`` when the episode ran out, fewer when
it ended by divergence) and, for the episodes that ended early, why (the env's ``reason`` info).
"""

from __future__ import annotations

import argparse

import torch

import mtg_env
from agents import make_agents


def play(
    consensus: str,
    seed: int,
    policy: str,
    lr: float,
    max_cycles: int,
    max_update: float = 1.0,
    trunk_lr: float | None = None,
) -> tuple[int, str]:
    """(steps played, why it ended early or "") of one episode of ``parallel_env(consensus=...)``."""
    env = mtg_env.parallel_env(consensus=consensus, max_cycles=max_cycles, max_update=max_update, numeric_infos=False)
    obs, infos = env.reset(seed=seed)
    players = make_agents("gradient", env, lr=lr, trunk_lr=trunk_lr) if policy == "gradient" else {}
    for m, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(100 * seed + m)
        if players:
            players[agent].reset(obs[agent], infos[agent], env.action_space(agent))
    steps, why = 0, ""
    while env.agents:
        if players:
            actions = {a: players[a].act(obs[a], infos[a]) for a in env.agents}
        else:
            actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, _, terminated, _, infos = env.step(actions)
        steps += 1
        if any(terminated.values()):
            why = str(next(iter(infos.values())).get("reason", "ended"))
    return steps, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", choices=("random", "gradient"), default="random")
    parser.add_argument("--lr", type=float, default=0.1, help="GradientAgent's step size (--policy gradient)")
    parser.add_argument("--trunk-lr", type=float, default=None, help="its trunk step size (default: --lr)")
    parser.add_argument("--consensus", nargs="+", default=["sum", "mean", "mgda", "upgrad"])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--max-cycles", type=int, default=500)
    parser.add_argument("--max-update", type=float, default=1.0, help="the env's max_update (default 1, the env's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = f" (lr {args.lr:g}, trunk_lr {args.trunk_lr})" if args.policy == "gradient" else ""
    print(f"policy {args.policy}{steps}, max_update {args.max_update:g}", flush=True)
    for rule in args.consensus:
        runs = [
            play(rule, seed, args.policy, args.lr, args.max_cycles, args.max_update, args.trunk_lr)
            for seed in range(args.seeds)
        ]
        whole = sum(steps == args.max_cycles for steps, _ in runs)
        print(f"{rule:>8}: {whole}/{args.seeds} whole; steps {[steps for steps, _ in runs]}", flush=True)
        for seed, (steps, why) in enumerate(runs):
            if why:
                print(f"{'':>10}seed {seed}: ended at step {steps}: {why}", flush=True)


if __name__ == "__main__":
    main()
