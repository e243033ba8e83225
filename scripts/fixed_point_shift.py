"""Per-player trunk step sizes move the fixed point of ``sum`` consensus (docs/results/learned.md).

    python scripts/fixed_point_shift.py

Under ``sum`` consensus the trunk stops where Σ_m η_m ∇_Ψ ℓ_m = 0: the minimiser of L = Σ_m ℓ_m only when every
player's trunk step η_m is the same. This script plays gradient descent on the held-out quadratic game draws of
``scripts/learned_results.py`` (4 draws × 5 seeds, float64, 500 steps), each draw at its tuned step size α (the
gradient baseline's, tuned on that draw), with task m's trunk step α·(1 + ε·(m − (M − 1)/2)) — players whose
steps differ by ε — and prints the final (L_T − L*) / (L_0 − L*): any per-player adaptive trunk step (Adam's RMS, a
player's own curvature estimate, a network reading the player's own gradient) is such an ε, and leaves L_T at a
plateau instead of converging.
"""

from __future__ import annotations

import numpy as np
import torch
from learned_results import EVAL_STREAM  # docs/ is on sys.path when this script runs

from agents.learned.family import loss_floor, sample_config
from mtg_env import engine
from mtg_env.tuning import Baseline, TuningProtocol, Workload, tune

HORIZON = 500


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng([*EVAL_STREAM, 0])
    configs = [sample_config("quadratic", rng) for _ in range(4)]
    protocol = TuningProtocol(low=1e-4, high=1.0, points_per_decade=3, eval_seeds=tuple(range(5)))
    workloads = [Workload("quadratic", "sum", HORIZON, tuple(sorted(c.items())), dtype="float64") for c in configs]
    lrs = [tune(Baseline("gradient"), w, protocol).best_lr for w in workloads]
    print(f"gradient descent, {HORIZON} steps, 4 held-out quadratic draws × 5 seeds, tuned α per draw: "
          f"{', '.join(f'{lr:.3g}' for lr in lrs)}")  # fmt: skip
    print("| trunk steps α·(1 + ε·(m − (M−1)/2)), ε | mean (L_T − L*)/(L_0 − L*) | median |")
    print("|---|---|---|")
    for eps in (0.0, 0.01, 0.1, 0.5):
        scores: list[float] = []
        for workload, lr in zip(workloads, lrs, strict=True):
            env = workload.make_env()
            game, suite = env.game, env.suite
            floor = loss_floor(suite)
            m = game.num_tasks
            factors = torch.tensor([1 + eps * (k - (m - 1) / 2) for k in range(m)], dtype=torch.float64)
            seeds = list(protocol.eval_seeds)
            with torch.no_grad():
                state, out = engine.reset(game, seeds)
                start = [float(suite.losses(state.heads[b], state.trunk[b]).sum()) for b in range(len(seeds))]
                for _ in range(HORIZON):
                    actions = (-lr * out.head_grads, -lr * factors.view(1, m, 1) * out.jacobian)
                    state, out = engine.step(game, state, actions)
                final = [float(suite.losses(state.heads[b], state.trunk[b]).sum()) for b in range(len(seeds))]
            scores += [(f - floor) / (s - floor) for f, s in zip(final, start, strict=True)]
        print(f"| {eps} | {np.mean(scores):.2g} | {np.median(scores):.2g} |")


if __name__ == "__main__":
    main()
