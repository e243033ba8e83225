"""Reproduce the learned deviator's shipped weights (``agents/learned/weights/learned_deviator.pt``) on the CPU.

    python scripts/train_deviator.py                                   # for examples/bench_deviator.toml
    python scripts/train_deviator.py --bench FILE --out PATH --iterations 40

The arenas are the benchmark's workloads under its ``[mixed] rules`` at the step size the bench's own tuning gives
its reference (``gradient``) on each, the step size the bench plays the deviator at (``[mixed] reference_lr``); the
training seeds are checked disjoint from the benchmark's tuning and held-out seeds. A fixed iteration count (not a
wall-time budget), one torch thread; the file's ``meta`` holds the settings, step sizes, fitness curve and wall time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agents.learned.deviator import DEVIATOR_WEIGHTS, DeviatorConfig, load_deviator, save_deviator
from agents.learned.deviator_es import Arena, ESConfig, train
from mtg_env.bench import BenchConfig, load_config
from mtg_env.tuning import tune

ROOT = Path(__file__).resolve().parents[1]


def arenas(bench: BenchConfig) -> list[Arena]:
    """The benchmark's workloads (under ``[mixed] rules``, default all) at its reference's tuned step size."""
    if bench.mixed is None:
        raise SystemExit("the benchmark has no [mixed] section: its reference is what the other tasks play")
    ref = bench.policy(bench.mixed.reference)
    if ref.baseline != "gradient" or ref.kwargs:
        raise SystemExit(f"[mixed] reference must be the plain 'gradient' baseline (the deviator rescales its moves), "
                         f"got {ref}")  # fmt: skip
    rules = bench.mixed.rules or bench.rules
    out = []
    for w in bench.workloads():
        if w.consensus in rules:
            lr = tune(ref.build(), w, bench.protocol).best_lr
            out.append(Arena(w.name, w.make_env().game, float(lr)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=ROOT / "examples" / "bench_deviator.toml")
    parser.add_argument("--out", type=Path, default=DEVIATOR_WEIGHTS)
    parser.add_argument("--iterations", type=int, default=ESConfig.iterations)
    parser.add_argument("--pairs", type=int, default=ESConfig.pairs)
    parser.add_argument("--seed", type=int, default=ESConfig.seed)
    parser.add_argument("--head", action="store_true", help="also scale the deviator's head step")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bench = load_config(args.bench)
    es = ESConfig(iterations=args.iterations, pairs=args.pairs, seed=args.seed)
    config = DeviatorConfig(head=args.head)
    reserved = [*bench.protocol.tuning_seeds, *bench.protocol.eval_seeds]
    theta, meta = train(arenas(bench), es, config, reserved, log=print)
    meta.update(bench=str(args.bench.name), bench_digest=bench.digest())
    save_deviator(args.out, theta, config, meta)
    load_deviator(args.out)  # the written file loads
    print(f"wrote {args.out}: {es.iterations} steps in {meta['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
