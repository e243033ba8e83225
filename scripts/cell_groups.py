"""A sealed cell's games split by one drawn option: where an entrant wins and where it loses.

A family draws games of different kinds (regression: a linear or an MLP trunk with even odds; digits: three trunk
widths), whose final gaps can differ by orders of magnitude. A cell's median then sits where the kinds meet, and its
bootstrap CI spans them. This prints, per value of the option, the games' count, the median gap of the best tuned
baseline and of each entrant, and the geometric mean over the games of the entrant's gap over the baseline's (paired,
game by game)::

    KEY=... DRAWS=16 python docs/sealed/general/k7/play.py regression 1 OUT \\
        reg=agents/learned/weights/learned_mlp_regression.pt
    python scripts/cell_groups.py OUT/regression_sum_1.json --by trunk

The cell JSON is one of ``mtg_env.bench.sealed.run_cell`` (a ``report.json``'s cells, or the cell files the sealed
keys' scripts write); its ``draws`` record each draw's options and seeds, in the order of its ``gaps`` (cells written
before the draws were recorded cannot be split). The baseline is the cell's best by the median (``--baseline``
names another). Games where either gap is not finite are counted apart.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _value(options: dict[str, Any], key: str) -> str:
    if key not in options:
        raise SystemExit(f"--by {key!r}: the draws' options are {sorted(options)}; pick one of them")
    return json.dumps(options[key])


def groups(cell: dict[str, Any], by: str, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Per value of the drawn option ``by``: ``games``, ``not_finite`` and, per player, ``median`` (its median gap)
    and, per entrant, ``geo_ratio`` (the geometric mean of its gap over ``baseline``'s, game by game)."""
    if "draws" not in cell:
        raise SystemExit("this cell records no draws (written before run_cell recorded them): play it again")
    baseline = baseline or cell["best_median"]
    if baseline not in cell["gaps"]:
        raise SystemExit(f"--baseline {baseline!r}: the cell's players are {sorted(cell['gaps'])}")
    labels = [_value(d["options"], by) for d in cell["draws"] for _ in d["seeds"]]
    if len(labels) != len(cell["gaps"][baseline]):
        raise SystemExit(f"the cell's draws name {len(labels)} games, its gaps {len(cell['gaps'][baseline])}")
    gaps = {name: np.asarray(values, dtype=np.float64) for name, values in cell["gaps"].items()}
    out: dict[str, dict[str, Any]] = {}
    for label in sorted(set(labels)):
        rows = np.asarray([lab == label for lab in labels])
        finite = rows & np.all([np.isfinite(v) for v in gaps.values()], axis=0)
        group: dict[str, Any] = {"games": int(rows.sum()), "not_finite": int(rows.sum() - finite.sum())}
        group["median"] = {name: float(np.median(v[finite])) if finite.any() else math.nan for name, v in gaps.items()}
        group["geo_ratio"] = {
            name: float(np.exp(np.mean(np.log(v[finite] / gaps[baseline][finite])))) if finite.any() else math.nan
            for name, v in gaps.items()
            if name in cell["entrants"]
        }
        out[label] = group
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="a cell JSON of mtg_env.bench.sealed.run_cell")
    parser.add_argument("--by", required=True, help="the drawn option to split by (regression: trunk)")
    parser.add_argument("--baseline", default=None, help="the tuned baseline to compare with (default: best median)")
    args = parser.parse_args(argv)
    cell = json.loads(args.cell.read_text())
    baseline = args.baseline or cell["best_median"]
    print(f"{cell['family']} {cell['consensus']} {cell['multiple']}x, by {args.by}; ratios to {baseline}")
    for label, group in groups(cell, args.by, args.baseline).items():
        shown = {k: v for k, v in group["median"].items() if k == baseline or k in cell["entrants"]}
        medians = ", ".join(f"{k} {v:.3g}" for k, v in shown.items())
        ratios = ", ".join(f"{k} {v:.3g}" for k, v in group["geo_ratio"].items())
        extra = f", {group['not_finite']} not finite" if group["not_finite"] else ""
        print(f"  {args.by}={label}: {group['games']} games{extra}; median gap: {medians}; geometric mean: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
