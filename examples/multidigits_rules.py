"""MultiDigits (MultiMNIST on the bundled 8×8 digits): the MTL literature's rules against the plain sum.

Every task reports its gradient (a gradient player at step 1: proposal −∇_Ψ ℓ_m), the consensus rule aggregates
the proposals, and Adam after the rule trains the trunk (``trunk_optimizer="adam"``; the heads get their own Adam)
as LibMTL and the papers train. Each rule plays the same seeds (the seed draws the initial parameters and the
batches), all seeds of a rule as one engine batch; we report the held-out accuracy of each digit at the end, the
mean over seeds and its 95 % percentile-bootstrap CI.

    python examples/multidigits_rules.py [--seeds 5] [--steps 1000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from mtg_env import ConsensusWarning, Game, consensus_rule, engine
from mtg_env.bench.stats import bootstrap_ci, mean
from mtg_env.engine.optim import optimizer_spec
from mtg_env.suites import MultiDigits

RULES = ("sum", "mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "upgrad")


def play(suite: MultiDigits, rule: str, seeds: list[int], steps: int, lr: float) -> np.ndarray:
    """``[seeds, 2]`` held-out accuracies (left, right) after ``steps`` steps of ``rule`` + Adam."""
    game = Game(
        suite,
        consensus_rule(rule, num_tasks=suite.num_tasks),
        action_mode="update",
        horizon=steps,
        trunk_optimizer=optimizer_spec("adam", {"lr": lr}),
        head_optimizer=optimizer_spec("adam", {"lr": lr}, "head_optimizer"),
    )
    state, _ = engine.reset(game, seeds)
    with warnings.catch_warnings():
        # Nash-MTL keeps its previous weights when the bargaining problem has no solution, and says so.
        warnings.filterwarnings("ignore", "nash_mtl: ", ConsensusWarning)
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        for _ in range(steps):
            state, _ = engine.step(game, state, (-state.head_grads, -state.jacobian))  # unit-step gradient players
    accuracy = np.zeros((len(seeds), suite.num_tasks))
    for b in range(len(seeds)):
        result = suite.evaluate(state.heads[b], state.trunk[b])
        accuracy[b] = [result[task]["test_accuracy"] for task in suite.task_names]
    return accuracy


def cell(values: np.ndarray) -> str:
    point, low, high = bootstrap_ci(values.reshape(-1, 1), statistic=mean, reps=2000, seed=0)
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per rule (default 5)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per game (default 1000)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default 3e-3)")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules (default: all seven)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite = MultiDigits()
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    print(
        f"MultiDigits ({suite.describe()['n_train']} training pairs, batches of {suite.batch_size}), {args.steps} "
        f"steps, Adam lr {args.lr:g} after the rule, seeds {seeds[0]}–{seeds[-1]}: held-out accuracy, mean over "
        "seeds [95 % bootstrap CI]\n"
    )
    print("| rule | left digit | right digit | mean of both |")
    print("|---|---|---|---|")
    for rule in args.rules.split(","):
        accuracy = play(suite, rule, seeds, args.steps, args.lr)
        print(f"| `{rule}` | {cell(accuracy[:, 0])} | {cell(accuracy[:, 1])} | {cell(accuracy.mean(1))} |", flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
