"""Per-step cost of each consensus rule on digits, relative to `mean`, measured in one run.

The env's full step (one forward, one batched backward, the rule, the observations) on the digits suite
with its default model and batch 256, `step_size` mode, one thread. Each rule is timed in interleaved
rounds; the figure is the median round. Two more rows price the optimizer after the rule
(``trunk_optimizer="adam"``): `mean+adam` and `famo+adam`. Run: ``python benchmarks/consensus_cost.py [--steps 60]``.

``--two-task B``: instead, one engine step of B toy2d games (update mode) under each two-task closed form of
:mod:`mtg_env.consensus.two_task` (one batched call) and under the named rule it stands for (one call per game), both
relative to the batched `mean`.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script

import mtg_env
from mtg_env.consensus import RULE_TABLE, consensus_rule
from mtg_env.consensus.two_task import TWO_TASK_RULES, TwoTaskRule
from mtg_env.engine import Game, reset, step
from mtg_env.suites.toy2d import Toy2DSuite


def stepper(rule: str, **options: Any) -> Callable[[], None]:
    env = mtg_env.parallel_env(suite="digits", consensus=rule, action_mode="step_size", max_cycles=10**9, **options)
    env.reset(seed=0)
    actions = {a: env.step_size_action(0.1, 0.1) for a in env.agents}

    def step() -> None:
        if not env.agents:  # a rule whose step does not scale with β (fairgrad) or grows it (db_mtl) may diverge
            env.reset(seed=0)
        env.step(actions)

    return step


def engine_stepper(rule: mtg_env.ConsensusRule, games: int) -> Callable[[], None]:
    """One engine step of ``games`` toy2d games under ``rule``, each agent proposing −0.01·∇f_m."""
    game = Game(Toy2DSuite(start=None, dtype="float64"), rule, action_mode="update", horizon=10**9)
    state, _ = reset(game, seeds=list(range(games)))
    no_heads = torch.zeros(games, 0, dtype=torch.float64)

    def run() -> None:
        step(game, state, (no_heads, -0.01 * state.jacobian))  # the same state each time: a steady cost

    return run


def two_task(games: int, steps: int, rounds: int) -> None:
    runners = {"mean": engine_stepper(consensus_rule("mean"), games)}
    for name in TWO_TASK_RULES:
        runners[f"{name} named"] = engine_stepper(consensus_rule(name, num_tasks=2), games)
        runners[f"{name} closed"] = engine_stepper(TwoTaskRule(name), games)
    median = median_seconds_per_step(runners, steps, rounds, warmup=3)
    base = median["mean"]
    print(f"toy2d, {games} games per engine step, 1 thread, median of {rounds} x {steps} steps")
    print(f"{'rule':<18}{'ms/step':>10}{'vs mean':>10}")
    for name, t in median.items():
        print(f"{name:<18}{1e3 * t:>10.2f}{t / base:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--two-task", type=int, default=0, metavar="B", help="time the two-task closed forms")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # Nash-MTL's solver remarks are not what is measured here
    if args.two_task:
        two_task(args.two_task, args.steps, args.rounds)
        return
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
