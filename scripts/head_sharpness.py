"""The sharpness of the digits suite's regression head while the paper's player plays, per consensus rule
(docs/engine.md).

    python scripts/head_sharpness.py --consensus mgda sum --lr 0.1

``GradientAgent(lr)`` (Eq. 23–24) plays the default env (digits: digit, parity, ≥5 and ``ink``, a regression). Every
``--every`` steps the script prints λ_max of the ``ink`` head's Hessian on the train split: the head is linear on
the trunk's features φ(x) (plus a bias), and its loss is the mean squared error, so the Hessian is 2 DᵀD / N with
D = [φ(x), 1]. Gradient descent on that head is stable while λ_max < 2 / lr; the trunk's moves change φ, and so
λ_max. The last line gives the step the episode ended at. With ``--weights`` each sample also gives ``ink``'s weight
in the min-norm point of the four trunk gradients (MGDA's weights, ``mtg_env.consensus.minnorm.min_norm_weights``)
and its trunk gradient's length over the others' shortest and longest.
"""

from __future__ import annotations

import argparse

import torch

import mtg_env
from agents import make_agents
from mtg_env.consensus.minnorm import min_norm_weights


def ink_sharpness(suite: mtg_env.DigitsSuite, trunk: torch.Tensor) -> float:
    """λ_max of the ``ink`` head's Hessian at ``trunk`` on the whole train split (float64)."""
    x, _, _ = suite.train_batch()
    features = suite.features(trunk, x).to(torch.float64)
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    return float(torch.linalg.eigvalsh(2.0 * design.T @ design / len(design))[-1])


def ink_say(jacobian: torch.Tensor) -> str:
    """``ink``'s (the last task's) MGDA weight, its gradient's length over the others' (``jacobian [M, n]``)."""
    rows = jacobian.to(torch.float64)
    weights = min_norm_weights(rows @ rows.T)
    lengths = torch.linalg.vector_norm(rows, dim=1)
    ratio = lengths[-1] / lengths[:-1]
    return f"weight {float(weights[-1]):.3g}, length ×{float(ratio.min()):.2g}–{float(ratio.max()):.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consensus", nargs="+", default=["mgda", "sum"])
    parser.add_argument("--lr", type=float, default=0.1, help="GradientAgent's step size (head and trunk)")
    parser.add_argument("--trunk-lr", type=float, default=None, help="its trunk step size (default: --lr)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=50, help="sample every N steps (the peaks are of these)")
    parser.add_argument("--weights", action="store_true", help="also ink's MGDA weight and its gradient's length")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"GradientAgent(lr={args.lr:g}, trunk_lr={args.trunk_lr}); stable while λ_max < 2 / lr = {2 / args.lr:g}")
    for rule in args.consensus:
        env = mtg_env.parallel_env(consensus=rule)
        players = make_agents("gradient", env, lr=args.lr, trunk_lr=args.trunk_lr)
        obs, infos = env.reset(seed=args.seed)
        for agent, player in players.items():
            player.reset(obs[agent], infos[agent], env.action_space(agent))
        steps, line = 0, []
        while env.agents:
            if steps % args.every == 0:
                sample = f"{steps}: {ink_sharpness(env.suite, env.engine_state.trunk[0]):.3g}"
                if args.weights:
                    sample += f" ({ink_say(env.engine_state.jacobian[0])})"
                line.append(sample)
            obs, _, _, _, infos = env.step({a: players[a].act(obs[a], infos[a]) for a in env.agents})
            steps += 1
        print(f"{rule:>8}: λ_max at step " + ", ".join(line), flush=True)
        print(f"{'':>10}ended at step {steps} (λ_max {ink_sharpness(env.suite, env.engine_state.trunk[0]):.3g})")


if __name__ == "__main__":
    main()
