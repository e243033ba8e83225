"""Every committed sealed cell's CIs again, resampling the drawn games (each with all its seeds) where K1 to K16
resampled each game on its own (``SealedConfig.bootstrap_unit``, twenty-first session).

    python docs/sealed/by_draw.py > docs/sealed/by_draw.md

Reads every cell under docs/sealed/: the cells of a bench run's ``report.json`` (K1 to K6, the H200 digits run) and the
one-cell files of ``docs/sealed/general/k7/play.py`` (K7 on), not the validation-stream cells of
``scripts/validation_cell.py`` (development runs, not sealed); ``docs/sealed/table.json`` keeps no gaps, so it is not
re-scored. A cell's gaps are in draw order, every draw's seeds in turn (``run_cell``); the units are its recorded draws
where it has them (K15 on), else consecutive blocks of its config's seeds per draw (3 in every key to K16). Each row
first recomputes the recorded CI (by the cell's ``bootstrap_unit``: by game to K16, by draw from K17; the bootstrap's
seed 0 and the cell's replicates) and stops if it does not match the record, so the by-draw CI beside it is computed on
the very games, baseline and statistic the record used. The bar (issue 23) is met where both the mean's and the median's
CI end below 1; "medians at the floor" marks a cell whose entrant's and baseline's medians are both 1e-9 or less, a tie
whatever the ratio (docs/results/learned.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mtg_env.bench.sealed import _mean, _median, _plain, draw_groups, paired_ratio_ci  # noqa: E402
from mtg_env.bench.sealed_report import medians_at_floor  # noqa: E402

SEEDS = 3  # every key's seeds per draw (the bench configs' [test] seeds, docs/sealed/general/k7/play.py's)


def cells() -> list[tuple[str, dict, int]]:
    """``(where, cell, bootstrap replicates)`` of every committed cell, in path order."""
    found = []
    for path in sorted((ROOT / "docs/sealed").rglob("*.json")):
        if path.name == "floors.json" or path.name == "table.json":
            continue
        data = json.loads(path.read_text())
        where = str(path.relative_to(ROOT / "docs/sealed"))
        if "cells" in data:
            if data.get("stream") == "validation":  # a development run of mtg-env bench: not sealed
                continue
            if data["config"]["test_seeds"] != SEEDS:
                raise SystemExit(f"{where}: {data['config']['test_seeds']} seeds a draw, not {SEEDS}")
            found += [(where, c, data["config"]["bootstrap_reps"]) for c in data["cells"] if c.get("entrants")]
        elif "entrants" in data and "gaps" in data:
            if is_validation(data):  # scripts/validation_cell.py's development runs: not a sealed cell
                continue
            found.append((where, data, 2000))  # play.py's config, k5_sum.toml: 2000 replicates
    return found


def is_validation(cell: dict) -> bool:
    """Whether a one-cell file was played on the validation (development) stream (``scripts/validation_cell.py``,
    which marks its files since the twenty-eighth session; earlier ones are known by their draws), not on a key."""
    from agents.learned.family import draw_games

    if cell.get("stream") == "validation":
        return True
    if "draws" not in cell:
        return False
    seeds = len(cell["draws"][0]["seeds"])
    drawn = draw_games(cell["family"], "validation", len(cell["draws"]), seeds)
    return [[_plain(o), list(s)] for o, s in drawn] == [[d["options"], d["seeds"]] for d in cell["draws"]]


def groups(cell: dict) -> np.ndarray:
    """The draw of each of the cell's games."""
    if "draws" in cell:
        return draw_groups([(d["options"], d["seeds"]) for d in cell["draws"]])
    if cell["games"] % SEEDS:
        raise SystemExit(f"{cell['family']} cell of {cell['games']} games: not whole draws of {SEEDS} seeds")
    return np.repeat(np.arange(cell["games"] // SEEDS), SEEDS)


def rows() -> tuple[list[str], dict[str, int]]:
    lines = ["| cell | entrant | mean ratio: by game → by draw | median ratio: by game → by draw | bar: by game → by "
             "draw |", "|---|---|---|---|---|"]  # fmt: skip
    counts = {"cells": 0, "game": 0, "draw": 0, "gained": 0, "lost": 0}
    shares: dict[str, list[float]] = {}  # family: the share of the log gaps' variance that lies between draws
    widths: dict[tuple[str, str], list[float]] = {}  # (family, statistic): by-draw width over by-game width
    for where, cell, reps in cells():
        gaps = {k: np.asarray([float(x) for x in v]) for k, v in cell["gaps"].items()}  # "inf" in some records
        units = groups(cell)
        label = f"{where} {cell['family']} {cell.get('consensus', 'sum')} {cell['multiple']}×"
        logs = np.log(gaps[cell["best_median"]])
        seeds = set(np.bincount(units))
        if np.isfinite(logs).all() and logs.var() > 0 and len(seeds) == 1 and min(seeds) > 1:
            within = logs.reshape(-1, np.bincount(units)[0]).var(axis=1, ddof=1).mean()
            shares.setdefault(cell["family"], []).append(1.0 - within / logs.var(ddof=1))
        for name, entrant in cell["entrants"].items():
            bars, texts = {}, []
            for stat, fn, best in (("mean", _mean, cell["best_mean"]), ("median", _median, cell["best_median"])):
                by_game = paired_ratio_ci(gaps[name], gaps[best], fn, reps)
                drawn = paired_ratio_ci(gaps[name], gaps[best], fn, reps, groups=units)
                again = drawn if cell.get("bootstrap_unit", "game") == "draw" else by_game  # the cell's own unit
                if not np.allclose(again, [float(x) for x in entrant[f"ratio_{stat}"]], rtol=1e-9, equal_nan=True):
                    raise SystemExit(f"{label} {name} {stat}: recomputed {again}, recorded {entrant[f'ratio_{stat}']}")
                bars[stat] = (by_game[2] < 1, drawn[2] < 1)
                ends = np.array([*by_game[1:], *drawn[1:]])
                if np.isfinite(ends).all() and ends.min() > 0 and by_game[2] > by_game[1] and min(seeds) > 1:
                    widths.setdefault((cell["family"], stat), []).append(
                        np.log(drawn[2] / drawn[1]) / np.log(by_game[2] / by_game[1])
                    )
                texts.append(f"{by_game[0]:.3g} [{by_game[1]:.3g}, {by_game[2]:.3g}] → [{drawn[1]:.3g}, "
                             f"{drawn[2]:.3g}]")  # fmt: skip
            floor = medians_at_floor(cell, name)
            by_game, by_draw = (bars["mean"][i] and bars["median"][i] for i in (0, 1))
            counts["cells"] += 1
            counts["game"] += by_game and not floor
            counts["draw"] += by_draw and not floor
            counts["gained"] += by_draw and not by_game and not floor
            counts["lost"] += by_game and not by_draw and not floor
            bar = "medians at the floor" if floor else f"{_yes(by_game)} → {_yes(by_draw)}"
            if by_game != by_draw and not floor:
                bar = f"**{bar}**"
            lines.append(f"| {label} | {name} | {texts[0]} | {texts[1]} | {bar} |")
    lines += ["", "How much wider the CIs are by draw: the median over a family's rows of the by-draw CI's width over "
              "the by-game CI's, in log ratio (finite CIs of positive width only).", "",
              "| family | mean ratio's CI | median ratio's CI | rows |", "|---|---|---|---|"]  # fmt: skip
    for family in sorted({f for f, _ in widths}):
        m, md = widths.get((family, "mean"), []), widths.get((family, "median"), [])
        lines.append(f"| {family} | {np.median(m):.2f}× | {np.median(md):.2f}× | {len(m)}, {len(md)} |")
    lines += ["", "Why: the share of the log gaps' variance that lies between draws (1 − the mean within-draw variance "
              "over the total), of the best baseline by median in each cell whose gaps are finite and not all equal.",
              "",
              "| family | median share | range | cells |", "|---|---|---|---|"]  # fmt: skip
    for family, values in sorted(shares.items()):
        lines.append(f"| {family} | {np.median(values):.2f} | {min(values):.2f}–{max(values):.2f} | {len(values)} |")
    return lines, counts


def _yes(met: bool) -> str:
    return "met" if met else "missed"


if __name__ == "__main__":
    table, counts = rows()
    print("# Every sealed cell's CIs, resampled by game and by draw\n")
    print("`python docs/sealed/by_draw.py` (its docstring says how). Ratios to the best tuned baseline (by mean, by "
          "median) with their paired bootstrap 95 % CIs: every game resampled on its own (as recorded to K16) → "
          "resampling the drawn games, each with its seeds. **Bold**: the bar's verdict differs.\n")  # fmt: skip
    print(
        f"{counts['cells']} entrant rows; the bar (both CIs below 1, medians not at the floor) met by game in "
        f"{counts['game']}, by draw in {counts['draw']}: gained {counts['gained']}, lost {counts['lost']}.\n"
    )
    print("\n".join(table))
