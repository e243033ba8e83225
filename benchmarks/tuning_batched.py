"""The tuning protocol's batched path against the env path, measured in one run (CPU time, one thread).

One policy's whole tuning budget on one workload (a 10-point log grid × 2 tuning seeds, 100 steps): the
batched engine path (every trial as one batch of games, :mod:`agents.batched`) against the plain path (each
trial a PettingZoo episode with numpy players, as any user policy plays). Both give the same numbers (tests/
test_tuning.py); this prints how much faster the batched one is. Run: ``python benchmarks/tuning_batched.py``.
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds_per_step  # benchmarks/ is on sys.path when run as a script

from mtg_env.tuning import Baseline, TuningProtocol, Workload, tune

CASES = [("quadratic", "sum"), ("regression", "mean"), ("digits", "mean"), ("regression", "upgrad")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    protocol = TuningProtocol(low=1e-3, high=1.0, tuning_seeds=(100, 101), eval_seeds=(0,))
    print(f"{'BATCHED':<8}{'suite':<12}{'rule':<8}{'env path s':>12}{'batched s':>12}{'speed-up':>10}")
    for suite, rule in CASES:
        options = (("hidden", (32, 16)), ("batch_size", 64)) if suite == "digits" else ()
        workload = Workload(suite, rule, horizon=args.horizon, suite_options=options)
        factory = Baseline("adam")
        runners = {
            "env": lambda w=workload, f=factory: tune(f, w, protocol, batched=False),
            "batched": lambda w=workload, f=factory: tune(f, w, protocol, batched=True),
        }
        sec = median_seconds_per_step(runners, steps=1, rounds=args.rounds, warmup=1)
        print(f"{'BATCHED':<8}{suite:<12}{rule:<8}{sec['env']:>12.2f}{sec['batched']:>12.2f}"
              f"{sec['env'] / sec['batched']:>10.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
