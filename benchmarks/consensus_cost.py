"""Per-step cost of each consensus rule on digits, relative to `mean`, measured in one run.

The env's full step (one forward, one batched backward, the rule, the observations) on the digits suite
with its default model and batch 256, `step_size` mode, one thread. Each rule is timed in interleaved
rounds; the figure is the median round. Two more rows price the optimizer after the rule
(``trunk_optimizer="adam"``): `mean+adam` and `famo+adam`. Run: ``python benchmarks/consensus_cost.py [--steps 60]``.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script

import mtg_env
from mtg_env.consensus import RULE_TABLE


def stepper(rule: str, **options: Any) -> Callable[[], None]:
    env = mtg_env.parallel_env(suite="digits", consensus=rule, action_mode="step_size", max_cycles=10**9, **options)
    env.reset(seed=0)
    actions = {a: env.step_size_action(0.1, 0.1) for a in env.agents}

    def step() -> None:
        if not env.agents:  # a rule whose step does not scale with β (fairgrad) or grows it (db_mtl) may diverge
            env.reset(seed=0)
        env.step(actions)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # Nash-MTL's solver remarks are not what is measured here
    steppers = {name: stepper(name) for name in RULE_TABLE}
    for rule in ("mean", "famo"):  # the optimizer after the rule
        steppers[f"{rule}+adam"] = stepper(rule, trunk_optimizer="adam", trunk_optimizer_kwargs={"lr": 1e-3})
    median = median_seconds_per_step(steppers, args.steps, args.rounds, warmup=5)
    base = median["mean"]
    print(f"digits (default model, batch 256), step_size mode, 1 thread, median of {args.rounds} x {args.steps} steps")
    print(f"{'rule':<14}{'ms/step':>10}{'vs mean':>10}")
    for name, t in median.items():
        print(f"{name:<14}{1e3 * t:>10.2f}{t / base:>10.2f}")


if __name__ == "__main__":
    main()
