"""Wall time of the exhaustive coalition analysis at M = 8 tasks: all 255 coalitions in one engine batch.

For each workload: the batched play of every coalition (one ``engine.step`` per step for all 255·R games), the
whole :func:`mtg_env.coalitions.analyse` (the play, TAG's affinities along the grand coalition's training,
Shapley values, both cores by LP, the exhaustive partition search over Bell(8) = 4140 partitions and Standley's
network selection), and, for scale, the same coalitions played one game at a time (255 separate runs). The
target is the whole analysis in under 2 minutes of wall time on a 2-core CPU. One torch thread, the median of
``--rounds``; wall times, and the whole analysis's CPU time (steadier when other processes share the cores).

    python benchmarks/coalitions_exhaustive.py [--rounds 3] [--steps 100] [--seeds 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from mtg_env.coalitions import CoalitionConfig, analyse, block_quadratic, default_lr, play_coalitions
from mtg_env.suites import TaskSuite, make_suite

TASKS = 8
LIMIT_S = 120.0


def workloads() -> dict[str, tuple[TaskSuite, dict[str, Any]]]:
    return {
        "quadratic blocks 4,4 (closed form)": (block_quadratic((4, 4)), {}),
        "regression, 8 tasks, linear trunk (autograd)": (
            make_suite("regression", num_tasks=TASKS, dtype="float64"),
            {"lr": 0.05},
        ),
        "regression, 8 tasks, mlp trunk (autograd)": (
            make_suite("regression", num_tasks=TASKS, trunk="mlp", hidden=16, dtype="float64"),
            {"lr": 0.05},
        ),
    }


def median_times(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` (the CPU time of our one thread is steadier on a shared machine)."""
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--skip-one-by-one", action="store_true", help="skip the 255 separate runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    masks = tuple(range(1, 1 << TASKS))
    print(f"M = {TASKS}: {len(masks)} coalitions x {len(seeds)} seed(s), T = {args.steps} steps, one torch thread, "
          f"median of {args.rounds} round(s)\n")  # fmt: skip
    header = f"{'workload':<46}{'batched play':>14}{'whole analyse':>15}{'(CPU)':>9}{'one by one':>12}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, (suite, options) in workloads().items():
        lr = options.get("lr", default_lr(suite))
        config = CoalitionConfig(horizon=args.steps, lr=lr, seeds=seeds)
        play, _ = median_times(lambda s=suite, c=config: play_coalitions(s, masks, c), args.rounds)
        whole, whole_cpu = median_times(
            lambda s=suite, o=options: analyse(s, horizon=args.steps, seeds=seeds, **o), args.rounds
        )
        worst = max(worst, whole)
        if args.skip_one_by_one:
            single, ratio = "-", "-"
        else:
            alone, _ = median_times(lambda s=suite, c=config: [play_coalitions(s, (k,), c) for k in masks], 1)
            single, ratio = f"{alone:.2f} s", f"{alone / play:.0f}x"
        print(f"{name:<46}{play:>12.2f} s{whole:>13.2f} s{whole_cpu:>7.2f} s{single:>12}{ratio:>8}")
    verdict = "under" if worst < LIMIT_S else "OVER"
    print(f"\nslowest whole analysis: {worst:.2f} s, {verdict} the {LIMIT_S:.0f} s target")


if __name__ == "__main__":
    main()
