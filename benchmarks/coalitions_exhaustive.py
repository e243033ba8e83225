"""Wall time of the exhaustive coalition analysis at M = 8 tasks: all 255 coalitions in one engine batch.

For each workload: the batched play of every coalition (one ``engine.step`` per step for all 255·R games), the
whole :func:`mtg_env.coalitions.analyse` (the play, TAG's affinities along the grand coalition's training,
Shapley values, both cores by LP, the exhaustive partition search over Bell(8) = 4140 partitions and Standley's
network selection), and, for scale, the same coalitions played one game at a time (255 separate runs). The
target is the whole analysis in under 2 minutes on a 2-core CPU. One torch thread, the median of ``--rounds``.

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


def median_wall(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    header = f"{'workload':<46}{'batched play':>14}{'whole analyse':>15}{'one by one':>12}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, (suite, options) in workloads().items():
        lr = options.get("lr", default_lr(suite))
        config = CoalitionConfig(horizon=args.steps, lr=lr, seeds=seeds)
        play = median_wall(lambda s=suite, c=config: play_coalitions(s, masks, c), args.rounds)
        whole = median_wall(lambda s=suite, o=options: analyse(s, horizon=args.steps, seeds=seeds, **o), args.rounds)
        worst = max(worst, whole)
        if args.skip_one_by_one:
            single, ratio = "-", "-"
        else:
            alone = median_wall(lambda s=suite, c=config: [play_coalitions(s, (k,), c) for k in masks], 1)
            single, ratio = f"{alone:.2f} s", f"{alone / play:.0f}x"
        print(f"{name:<46}{play:>12.2f} s{whole:>13.2f} s{single:>12}{ratio:>8}")
    verdict = "under" if worst < LIMIT_S else "OVER"
    print(f"\nslowest whole analysis: {worst:.2f} s, {verdict} the {LIMIT_S:.0f} s target")


if __name__ == "__main__":
    main()
