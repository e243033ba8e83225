"""What sets the regression family's gaps: minibatch noise, and how much a per-game step could win.

    python docs/sealed/regression/noise.py [sum|mgda]    # output: noise_<rule>.txt beside this file

On the sealed protocol's validation stream (16 draws x 3 seeds, never the test stream), at 1x (100 steps), the tuned
baselines' knobs as K15's cell chose them on the tuning stream (docs/sealed/general/k15/regression_<rule>_1.json):
1. each tuned baseline's median gap (L_T - L*) / (L_0 - L*) with the suite's minibatches of 32, and with the whole
   training set every step (batch_size=None), per trunk kind;
2. a per-draw oracle over the tuned step and trunk/head ratio (x 1/4 .. 2, x 0.3 .. 3): the geometric mean over the
   games of its gap over the tuned one, and the same for the grid's best single point (what one knob set could gain).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from agents.learned.family import best_loss_floor, draw_games
from mtg_env.bench.sealed import _gaps
from mtg_env.bench.sealed_search import _game, play_candidates

HERE = Path(__file__).parent


def gaps(options: dict, seeds: list[int], knobs: list[dict], consensus: str) -> np.ndarray:
    """``[len(knobs), len(seeds)]`` final gaps as a sealed cell measures them (at least float32's resolution, 1e-6
    of the loss; +inf where a game diverged)."""
    game = _game("regression", options, 100, consensus=consensus)
    drawn = {k: v for k, v in options.items() if k != "batch_size"}  # L* is the drawn game's, whatever the batch
    floor = best_loss_floor("regression", drawn, _game("regression", drawn, 100).suite).value  # once per draw
    start, final = play_candidates(game, [k for k in knobs for _ in seeds], [s for _ in knobs for s in seeds])
    return _gaps(start, final, floor, "float32").reshape(len(knobs), len(seeds))  # the sealed cells' measure


def main(consensus: str) -> None:
    torch.set_num_threads(1)
    tuned = json.loads((HERE.parent / f"general/k15/regression_{consensus}_1.json").read_text())["tuned"]
    kinds = ("linear", "mlp")
    draws = draw_games("regression", "validation", 16, 3)
    lines = [f"regression, `{consensus}`, 1x, validation stream (16 draws x 3 seeds); tuned knobs from K15's cell", ""]
    lines.append("| baseline | trunk | games | median gap, batches of 32 | median gap, whole training set |")
    lines.append("|---|---|---|---|---|")
    best = {}
    for name in ("momentum", "adam"):
        knobs = tuned[name]["knobs"]
        per = {k: ([], []) for k in kinds}
        for options, seeds in draws:
            per[options["trunk"]][0].extend(gaps(options, seeds, [knobs], consensus)[0])
            per[options["trunk"]][1].extend(gaps({**options, "batch_size": None}, seeds, [knobs], consensus)[0])
        for kind in kinds:
            mini, whole = (np.array(v) for v in per[kind])
            best[(name, kind)] = float(np.median(mini))
            lines.append(f"| {name} | {kind} | {len(mini)} | {np.median(mini):.3g} | {np.median(whole):.3g} |")
    lines += ["", "| baseline | trunk | per-draw oracle / tuned (geometric mean) | best single grid point / tuned |"]
    lines.append("|---|---|---|---|")
    for name in ("momentum", "adam"):
        base = tuned[name]["knobs"]
        grid = [{**base, "lr": base["lr"] * a, "trunk_ratio": base["trunk_ratio"] * r}
                for a, r in itertools.product((0.25, 0.5, 1.0, 2.0), (0.3, 1.0, 3.0))]  # fmt: skip
        home = next(i for i, k in enumerate(grid) if k == base)
        for kind in kinds:
            rows = [gaps(o, s, grid, consensus) for o, s in draws if o["trunk"] == kind]
            logs = [np.log(np.minimum(r, 1e9) / r[home]) for r in rows]
            oracle = np.concatenate([lg[np.argmin(lg.mean(1))] for lg in logs])
            single = np.concatenate(logs, axis=1).mean(1).min()
            lines.append(f"| {name} | {kind} | {np.exp(oracle.mean()):.3f} | {np.exp(single):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / f"noise_{consensus}.txt").write_text(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sum")
