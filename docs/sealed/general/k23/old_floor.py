"""K23's cells scored from the old floor as well (the Adam best runs alone, lowered to any loss a game reached, as K21
and K22 were): how much of K23's verdict is the floor's and how much its draws'. K23's verdict is the polished
floor's (docs/results/learned.md, "K23"); this is the sensitivity, not a second verdict.

    python docs/sealed/general/k23/old_floor.py [docs/sealed/general/k23/digits_RULE_5.json ...]

Each game's final loss is recovered from its gap and the polished floor it was scored from (L_T = L* + g (L_0 − L*),
L_0 from the draw's seed), then scored from the old floor with the cell's own statistics and bootstrap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

import mtg_env.bench.sealed as sealed
from mtg_env import engine
from mtg_env.bench.sealed_search import _game, _train_totals
from mtg_env.suites.floors import true_floor

HERE = Path(__file__).resolve().parent


def rescored(cell: dict, floors: dict) -> dict[str, tuple[float, float]]:
    """Per entrant (mean-gap ratio, median-gap ratio) to the old floor's best tuned baselines."""
    if cell["floor_kinds"] != ["best run, polished"]:  # each gap from the floor in floors.json, never lowered
        raise SystemExit(f"{cell['family']} {cell['consensus']}: floor kinds {cell['floor_kinds']}, not polished alone")
    finals: dict[str, list[float]] = {k: [] for k in cell["gaps"]}
    starts, olds = [], []
    i = 0
    for draw in cell["draws"]:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in draw["options"].items()}
        game = _game(cell["family"], options, cell["horizon"], consensus=cell["consensus"])
        key = json.dumps([cell["family"], options], sort_keys=True, default=str)
        new = floors[key]["value"]
        old = true_floor(game.suite, polish=0)
        first = len(starts)
        for seed in draw["seeds"]:
            state, _ = engine.reset(game, [seed])
            l0 = float(_train_totals(game, state.heads, state.trunk)[0])
            for k, g in cell["gaps"].items():
                finals[k].append(new + float(g[i]) * (l0 - new))
            starts.append(l0)
            i += 1
        reached = min(v for k in finals for v in finals[k][first:])  # every player, every seed of the draw
        olds += [old.lowered(reached).value] * len(draw["seeds"])  # as run_cell lowers a best run
    s, f0 = torch.tensor(starts, dtype=torch.float64), torch.tensor(olds, dtype=torch.float64)

    def gap(v: list[float], j: int) -> float:
        return float(
            sealed._gaps(s[j : j + 1], torch.tensor(v[j : j + 1], dtype=torch.float64), float(f0[j]), "float32")[0]
        )

    gaps = {k: np.array([gap(v, j) for j in range(len(v))]) for k, v in finals.items()}
    polished = {k: np.asarray(v, dtype=float) for k, v in cell["gaps"].items()}
    base = list(cell["tuned"])
    groups = sealed.draw_groups([(d["options"], d["seeds"]) for d in cell["draws"]])
    for agent, e in cell["entrants"].items():  # the cell's own statistics and bootstrap, reproduced from its gaps
        again = sealed.paired_ratio_ci(polished[agent], polished[cell["best_mean"]], lambda v: v.mean(-1), 2000,
                                       groups=groups)  # fmt: skip
        assert np.allclose(again, e["ratio_mean"], rtol=1e-12), (agent, again, e["ratio_mean"])
    best_mean = min(base, key=lambda k: float(np.mean(gaps[k])))
    best_median = min(base, key=lambda k: float(np.median(gaps[k])))
    out = {}
    for agent in cell["entrants"]:
        out[agent] = (
            sealed.paired_ratio_ci(gaps[agent], gaps[best_mean], lambda v: v.mean(-1), 2000, groups=groups),
            sealed.paired_ratio_ci(
                gaps[agent], gaps[best_median], lambda v: np.median(v, axis=-1), 2000, groups=groups
            ),
        )
    return out


def main() -> None:
    torch.set_num_threads(1)
    paths = [Path(p) for p in sys.argv[1:]] or sorted(HERE.glob("digits_*_5.json"))
    floors = json.loads((HERE / "floors.json").read_text())
    for path in paths:
        cell = json.loads(path.read_text())
        for agent, (rm, rd) in rescored(cell, floors).items():
            print(
                f"{cell['family']} {cell['consensus']} {cell['multiple']}x {agent}: old floor mean {rm[0]:.3g} "
                f"[{rm[1]:.3g}, {rm[2]:.3g}] (median {rd[0]:.3g} [{rd[1]:.3g}, {rd[2]:.3g}]); polished "
                f"{cell['entrants'][agent]['ratio_mean'][0]:.3g} ({cell['entrants'][agent]['ratio_median'][0]:.3g})",
                flush=True,
            )


if __name__ == "__main__":
    main()
