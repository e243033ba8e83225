"""A sealed cell's games split by one drawn option: where an entrant wins and where it loses.

A family draws games of different kinds (regression: a linear or an MLP trunk with even odds; digits: three trunk
widths), whose final gaps can differ by orders of magnitude. A cell's median then sits where the kinds meet, and its
bootstrap CI spans them. This prints, per value of the option, the games' count, the median gap of the best tuned
baseline and of each entrant (a diverged game counts as an infinite gap, as in the cell's own median), and the
geometric mean over the games of the entrant's gap over the baseline's (paired, game by game, over the games where
both are finite; the others are counted)::

    KEY=... DRAWS=16 python docs/sealed/general/k7/play.py regression 1 OUT \\
        reg=agents/learned/weights/learned_mlp_regression.pt
    python scripts/cell_groups.py OUT/regression_sum_1.json --by trunk

The cell JSON is one of ``mtg_env.bench.sealed.run_cell`` (a ``report.json``'s cells, or the cell files the sealed
keys' scripts write); its ``draws`` record each draw's options and seeds, in the order of its ``gaps``. A cell written
before the draws were recorded is split by drawing them again (they depend on the stream and the key only):
``--key KEY`` for a test-stream cell, ``--key validation`` for a development one, with ``--seeds`` (3 in the sealed
keys' scripts)::

    python scripts/cell_groups.py docs/sealed/general/k14/regression_mgda_1.json --by trunk \\
        --key a05d0b11fc0747d603ea4d166a459c3e

The baseline is the cell's best by the median (``--baseline`` names another). ``--bar`` prints instead the bar's
statistics within each group, against that group's own best tuned baselines, with CIs resampled as the cell's were
(information for weighing a bar per kind of game; not the bar)::

    python scripts/cell_groups.py docs/sealed/general/k17/regression_sum_1.json --by trunk --bar
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _value(options: dict[str, Any], key: str) -> str:
    if key not in options:
        raise SystemExit(f"--by {key!r}: the draws' options are {sorted(options)}; pick one of them")
    return json.dumps(options[key])


def redraw(cell: dict[str, Any], key: str, seeds: int) -> list[dict[str, Any]]:
    """The draws of ``cell`` drawn again: ``key`` the test key, or ``"validation"`` (the development stream)."""
    from agents.learned.family import draw_games

    games = len(next(iter(cell["gaps"].values())))
    if games % seeds:
        raise SystemExit(f"--seeds {seeds}: the cell's {games} games are not whole draws of {seeds} seeds each")
    stream = "validation" if key == "validation" else "test"
    drawn = draw_games(cell["family"], stream, games // seeds, seeds, key=None if stream == "validation" else key)
    return [{"options": options, "seeds": list(s)} for options, s in drawn]


def _labelled(cell: dict[str, Any], by: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each game's value of the drawn option ``by``, in the order of the cell's gaps, and every player's gaps."""
    if "draws" not in cell:
        raise SystemExit("this cell records no draws (written before run_cell recorded them): pass --key to redraw")
    labels = np.asarray([_value(d["options"], by) for d in cell["draws"] for _ in d["seeds"]])
    # a report.json writes a non-finite gap as a string ("inf"); float() reads both forms
    gaps = {name: np.asarray([float(v) for v in values]) for name, values in cell["gaps"].items()}
    if any(len(labels) != len(v) for v in gaps.values()):
        raise SystemExit(f"the cell's draws name {len(labels)} games, its gaps {len(next(iter(gaps.values())))}")
    return labels, gaps


def groups(cell: dict[str, Any], by: str, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Per value of the drawn option ``by``: ``games``; per player ``median`` (its median gap, a diverged game
    infinite); per entrant ``geo_ratio`` (the geometric mean of its gap over ``baseline``'s, over the games where both
    are finite) and ``not_finite`` (the games left out of it)."""
    baseline = baseline or cell["best_median"]
    if baseline not in cell["gaps"]:
        raise SystemExit(f"--baseline {baseline!r}: the cell's players are {sorted(cell['gaps'])}")
    labels, gaps = _labelled(cell, by)
    out: dict[str, dict[str, Any]] = {}
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        group: dict[str, Any] = {"games": int(rows.sum()), "geo_ratio": {}, "not_finite": {}}
        group["median"] = {name: float(np.median(np.where(np.isnan(v), np.inf, v)[rows])) for name, v in gaps.items()}
        for name in cell["entrants"]:
            both = rows & np.isfinite(gaps[name]) & np.isfinite(gaps[baseline])
            ratio = np.log(gaps[name][both] / gaps[baseline][both])
            group["geo_ratio"][name] = float(np.exp(ratio.mean())) if both.any() else float("nan")
            group["not_finite"][name] = int(rows.sum() - both.sum())
        out[label] = group
    return out


def group_bars(cell: dict[str, Any], by: str, reps: int = 2000) -> dict[str, dict[str, Any]]:
    """Per value of the drawn option ``by``, the bar's statistics within those games alone (information for an owner
    weighing a bar per kind of game, not the bar): ``games``, the best tuned baseline by mean and by median among
    them, and per entrant its mean-gap and median-gap ratios to those with paired bootstrap 95 % CIs, resampled as the
    cell's were (its ``bootstrap_unit``: whole draws, or games), and ``tie`` where its median and the best baseline's
    are both at the floor (the report's tie)."""
    from mtg_env.bench.sealed import AT_FLOOR, _mean, _median, draw_groups, paired_ratio_ci

    labels, gaps = _labelled(cell, by)
    units = draw_groups([(d["options"], d["seeds"]) for d in cell["draws"]])
    by_draw = cell.get("bootstrap_unit", "game") == "draw"
    out: dict[str, dict[str, Any]] = {}
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        a = {k: v[rows] for k, v in gaps.items()}
        best_mean = min(cell["tuned"], key=lambda k: float(_mean(a[k])))
        best_median = min(cell["tuned"], key=lambda k: float(_median(a[k])))
        group: dict[str, Any] = {"games": int(rows.sum()), "best_mean": best_mean, "best_median": best_median}
        for name in cell["entrants"]:
            unit = units[rows] if by_draw else None
            group[name] = {
                "ratio_mean": paired_ratio_ci(a[name], a[best_mean], _mean, reps, groups=unit),
                "ratio_median": paired_ratio_ci(a[name], a[best_median], _median, reps, groups=unit),
                "tie": max(float(_median(a[name])), float(_median(a[best_median]))) <= AT_FLOOR,
            }
        out[label] = group
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", type=Path, help="a cell JSON of mtg_env.bench.sealed.run_cell")
    parser.add_argument("--by", required=True, help="the drawn option to split by (regression: trunk)")
    parser.add_argument("--baseline", default=None, help="the tuned baseline to compare with (default: best median)")
    parser.add_argument("--key", default=None, help="redraw a cell without draws: its test key, or 'validation'")
    parser.add_argument("--seeds", type=int, default=3, help="with --key: seeds per draw (default 3)")
    parser.add_argument(
        "--bar", action="store_true",
        help="the bar's statistics within each group (its own best baselines, CIs resampled as the cell's were)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    cell = json.loads(args.cell.read_text())
    if args.key is not None:
        cell["draws"] = redraw(cell, args.key, args.seeds)
    if args.bar:
        print(f"{cell['family']} {cell['consensus']} {cell['multiple']}x, by {args.by}: the bar within each group")
        for label, group in group_bars(cell, args.by).items():
            for name in cell["entrants"]:
                e = group[name]
                (m, ml, mh), (d, dl, dh) = e["ratio_mean"], e["ratio_median"]
                met = "tie at the floor" if e["tie"] else ("meets" if mh < 1 and dh < 1 else "misses")
                print(
                    f"  {args.by}={label}: {group['games']} games; {name}: mean {m:.3g} [{ml:.3g}, {mh:.3g}] "
                    f"(to {group['best_mean']}), median {d:.3g} [{dl:.3g}, {dh:.3g}] (to {group['best_median']}): "
                    f"{met}"
                )
        return 0
    split = groups(cell, args.by, args.baseline)
    baseline = args.baseline or cell["best_median"]
    print(f"{cell['family']} {cell['consensus']} {cell['multiple']}x, by {args.by}; ratios to {baseline}")
    for label, group in split.items():
        shown = {k: v for k, v in group["median"].items() if k == baseline or k in cell["entrants"]}
        medians = ", ".join(f"{k} {v:.3g}" for k, v in shown.items())
        ratios = ", ".join(
            f"{k} {v:.3g}" + (f" ({group['not_finite'][k]} not finite)" if group["not_finite"][k] else "")
            for k, v in group["geo_ratio"].items()
        )
        print(f"  {args.by}={label}: {group['games']} games; median gap: {medians}; geometric mean: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
