"""How far each named consensus rule is from positive homogeneity, C(s·P) = s·C(P), on random matrices.

For every rule and scale s, the largest relative error ‖C(s·P) − s·C(P)‖ / ‖s·C(P)‖ over random 3×40
proposal matrices (seeded; a randomized rule gets the same seed for both calls). Proposals carry the agents'
step sizes, so a rule that breaks at small s ignores them (e.g. returns 0, or falls back to the mean).

    python examples/consensus_scale.py [--matrices 20] [--scales 1e-8,1e-5,1e-3,1e-2,1e2,1e8]
"""

from __future__ import annotations

import argparse
import warnings

import torch

from mtg_env.consensus import RULE_TABLE, consensus_rule


def relative_error(name: str, p: torch.Tensor, s: float, seed: int) -> float:
    """‖C(s·P) − s·C(P)‖ / ‖s·C(P)‖ for fresh instances of rule ``name`` (0 when both are exactly 0)."""
    m = p.shape[0]
    kwargs = {"seed": seed} if RULE_TABLE[name].randomized else {}
    base = consensus_rule(name, num_tasks=m, **kwargs)(p) * s
    scaled = consensus_rule(name, num_tasks=m, **kwargs)(p * s)
    denom = float(base.norm())
    diff = float((scaled - base).norm())
    return 0.0 if diff == 0.0 else (diff / denom if denom > 0 else float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrices", type=int, default=20)
    parser.add_argument("--scales", default="1e-8,1e-5,1e-3,1e-2,1e2,1e8")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # solver remarks (ECOS, cvxpy) are not what is measured
    scales = [float(v) for v in args.scales.split(",")]
    gen = torch.Generator().manual_seed(0)
    mats = [torch.randn(3, 40, generator=gen, dtype=torch.float64) for _ in range(args.matrices)]
    print(f"max relative error of C(s·P) vs s·C(P) over {args.matrices} random 3x40 matrices (float64)")
    print(f"{'rule':<14}" + "".join(f"{f's={s:g}':>11}" for s in scales))
    for name in RULE_TABLE:
        errs = [max(relative_error(name, p, s, seed=i) for i, p in enumerate(mats)) for s in scales]
        print(f"{name:<14}" + "".join(f"{e:>11.1e}" for e in errs), flush=True)


if __name__ == "__main__":
    main()
