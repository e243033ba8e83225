"""How far issue 23's bar is from what tuning each game could reach: an oracle that picks, for each drawn game, the best
of the tuned baselines' neighbouring knob sets after seeing how every one of them ended on that game.

    python docs/sealed/regression/ceiling.py [CONSENSUS] [MULTIPLE] [DRAWS]   # output: ceiling_<rule>_<multiple>.txt
                                                                              # (DRAWS other than 16: ..._<draws>.txt)

On the sealed protocol's validation stream (DRAWS = 16 draws x 3 seeds as a cell plays, never the test stream), with the
four baselines' knobs as K15's cell chose them on the tuning stream
(docs/sealed/general/k15/regression_<rule>_<multiple>.json), every baseline also plays its step x 1/4 .. 2 and its
trunk/head ratio x 0.3 .. 3 (12 knob sets each, 48 in all). Entrants,
each scored as a sealed cell scores one (the mean and the median gap against the best tuned baseline's, paired
bootstrap 95 % CIs, L* lowered to any loss a game reached):
- ``oracle_draw``: for each draw, the knob set with the least mean gap over its 3 seeds (a rule that knew which of
  the 48 settings suits each drawn task best, the same for its seeds);
- ``oracle_game``: for each game, the least gap over the 48 knob sets, after the fact (that, and a pick among each
  run's noise);
- ``portfolio``: the learned portfolio shipped when this ran (sixteenth session; on regression games, the regression
  specialist of then, replaced after K16: :data:`PORTFOLIO`).
Where the per-draw oracle misses the bar, a rule whose edge is a better fixed setting per task (among these) misses it
too; one that adapts within a game is not bound by it (nor by the per-game oracle, whose pick among each run's noise
no rule makes).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from agents.learned.checkpoint import load_rule
from agents.learned.family import best_loss_floor, draw_games
from mtg_env.bench.sealed import _gaps, _mean, _median, paired_ratio_ci
from mtg_env.bench.sealed_search import _game, play_candidates, play_rule

HERE = Path(__file__).parent
REPS = 2000  # the sealed cells' bootstrap replicates (docs/sealed/general/k5_sum.toml)


def finals(options: dict, seeds: list[int], knobs: list[dict], consensus: str, horizon: int) -> tuple[np.ndarray, ...]:
    """``(L_0, L_T)``, each ``[len(knobs), len(seeds)]``: every knob set played on every seed, as a sealed cell plays
    its baselines (``play_candidates``: +inf where a game diverged)."""
    game = _game("regression", options, horizon, consensus=consensus)
    start, final = play_candidates(game, [k for k in knobs for _ in seeds], [s for _ in knobs for s in seeds])
    shape = (len(knobs), len(seeds))
    return start.cpu().numpy().reshape(shape), final.cpu().numpy().reshape(shape)


#: The portfolio these outputs played (the shipped one until K16 replaced its regression expert).
PORTFOLIO = HERE.parent / "general/k16/learned_portfolio_general_before.pt"


def main(consensus: str, multiple: int, draws: int) -> None:
    torch.set_num_threads(1)
    cell = json.loads((HERE.parent / f"general/k15/regression_{consensus}_{multiple}.json").read_text())
    horizon, tuned = int(cell["horizon"]), cell["tuned"]
    names = list(tuned)
    knobs = {b: tuned[b]["knobs"] for b in names}
    grid = [{**knobs[b], "lr": knobs[b]["lr"] * a, "trunk_ratio": knobs[b]["trunk_ratio"] * r}
            for b in names for a, r in itertools.product((0.25, 0.5, 1.0, 2.0), (0.3, 1.0, 3.0))]  # fmt: skip
    home = [grid.index(knobs[b]) for b in names]
    portfolio = load_rule(PORTFOLIO)[1]
    gaps: dict[str, list[np.ndarray]] = {k: [] for k in [*names, "oracle_draw", "oracle_game", "portfolio"]}
    kinds: list[str] = []
    for options, seeds in draw_games("regression", "validation", draws, 3):
        start, final = finals(options, list(seeds), grid, consensus, horizon)
        p0, p1 = (x.cpu().numpy() for x in play_rule(portfolio, "regression", options, horizon, list(seeds),
                                                     consensus=consensus))  # fmt: skip
        drawn = {k: v for k, v in options.items() if k != "batch_size"}  # L* is the drawn game's, whatever the batch
        floor = best_loss_floor("regression", drawn, _game("regression", drawn, horizon).suite)
        floor = floor.lowered(float(min(np.min(final), np.min(p1))))
        g = _gaps(torch.as_tensor(start), torch.as_tensor(final), floor.value, "float32")
        for b, i in zip(names, home, strict=True):
            gaps[b].append(g[i])
        gaps["oracle_draw"].append(g[int(np.argmin(np.where(np.isfinite(g), g, np.inf).mean(1)))])
        gaps["oracle_game"].append(g.min(0))
        gaps["portfolio"].append(_gaps(torch.as_tensor(p0), torch.as_tensor(p1), floor.value, "float32"))
        kinds.extend([options["trunk"]] * len(seeds))
    arrays = {k: np.concatenate(v) for k, v in gaps.items()}
    kind = np.array(kinds)
    lines = [
        f"regression, `{consensus}`, {multiple}x ({horizon} steps), validation stream ({draws} draws x 3 seeds = "
        f"{len(kinds)} games: {kinds.count('linear')} linear trunks, {kinds.count('mlp')} MLP); knobs from K15's cell",
        "",
        "| games | entrant | mean ratio [95 % CI] | median ratio [95 % CI] | meets the bar "
        "| best tuned (mean, median) |",
        "|---|---|---|---|---|---|",
    ]
    for games, mask in (("all", kind == kind), ("linear", kind == "linear"), ("MLP", kind == "mlp")):
        lines.extend(_rows(games, {k: v[mask] for k, v in arrays.items()}, names))
    text = "\n".join(lines) + "\n"
    print(text)
    suffix = "" if draws == 16 else f"_{draws}"
    (HERE / f"ceiling_{consensus}_{multiple}{suffix}.txt").write_text(text)


def _rows(games: str, arrays: dict[str, np.ndarray], names: list[str]) -> list[str]:
    """The entrants' rows on these games, against the best tuned baseline on them (as a cell of them would pick)."""
    best_mean = min(names, key=lambda k: float(_mean(arrays[k])))
    best_median = min(names, key=lambda k: float(_median(arrays[k])))
    rows = []
    for name in ("oracle_draw", "oracle_game", "portfolio"):
        m = paired_ratio_ci(arrays[name], arrays[best_mean], _mean, REPS)
        md = paired_ratio_ci(arrays[name], arrays[best_median], _median, REPS)
        met = "yes" if m[2] < 1 and md[2] < 1 else "no"
        cis = f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}] | {md[0]:.3f} [{md[1]:.3f}, {md[2]:.3f}]"
        best = f"{best_mean} {_mean(arrays[best_mean]):.3g}, {best_median} {_median(arrays[best_median]):.3g}"
        rows.append(f"| {games} | {name} | {cis} | {met} | {best} |")
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "sum", int(args[1]) if len(args) > 1 else 1, int(args[2]) if len(args) > 2 else 16)
