"""Bring your own consensus rule: any f(P: Tensor[M, n]) -> Tensor[n] resolves the trunk proposals.

Here a "dictator" trunk follows task 0 alone, against the paper's `sum` rule, on digits.

    python examples/custom_consensus.py
"""

from __future__ import annotations

import torch
from torch import Tensor

import mtg_env
from agents import make_agents, run_episode


def dictator(proposals: Tensor) -> Tensor:
    """The trunk moves by the first task's proposal only."""
    return proposals[0]


def main() -> None:
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and results are bit-identical at a fixed count
    for name, rule in (("sum", "sum"), ("dictator(task_0)", dictator)):
        env = mtg_env.parallel_env(suite="digits", consensus=rule, max_cycles=300)
        history = run_episode(env, make_agents("gradient", env, lr=0.1), seed=0)
        metrics = {
            f["task"]: round(f.get("test_accuracy", f.get("test_mse", float("nan"))), 3) for f in history.final.values()
        }
        if history.terminated:  # a loss left its range: the dictator's trunk ignores the other tasks
            worst = max(range(len(history.tasks)), key=lambda m: history.losses[-1][m])
            print(
                f"{name:<18} diverged at step {history.steps}: task {history.tasks[worst]!r}'s loss reached "
                f"{history.losses[-1][worst]:.4g} (from {history.losses[0][worst]:.4g})"
            )
        else:
            print(f"{name:<18} held-out metrics after {history.steps} steps: {metrics}")


if __name__ == "__main__":
    main()
