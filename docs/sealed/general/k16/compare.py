"""K16's decision table (docs/results/learned.md, "K16: the regression specialist's replacement"): per cell, each
entrant's mean-gap and median-gap ratio to the best tuned baseline with their paired bootstrap 95 % CIs (as the cell
recorded them), which entrant is lower by each, and the geometric mean over the games of the pick's gap over the
shipped file's (paired, resampled game by game as the cells' CIs are) on all games and per trunk kind; then the
pre-registered decision.

    python docs/sealed/general/k16/compare.py docs/sealed/general/k16   # the cells run.sh wrote
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtg_env.bench.sealed import paired_ratio_ci

_spec = importlib.util.spec_from_file_location("regression_moves", Path(__file__).parents[2] / "regression/moves.py")
assert _spec is not None and _spec.loader is not None
_moves = importlib.util.module_from_spec(_spec)  # moves.py's geometric mean, so the scripts score alike
_spec.loader.exec_module(_moves)

CELLS = [f"regression_{c}_{m}.json" for c in ("sum", "mean", "mgda") for m in (1, 2, 5)] + ["regression_upgrad_1.json"]
REPS = 2000  # the sealed cells' bootstrap replicates


def _ci(r: Sequence[float]) -> str:
    return f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]"


def table(folder: Path, a: str = "pick", b: str = "shipped") -> str:
    lines = [f"| cell | {a}: mean (median) | {b}: mean (median) | lower mean | lower median | diverged | "
             f"{a} / {b}, geometric mean: all | linear trunk | MLP trunk |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    wins = {"mean": 0, "median": 0}
    diverged = 0
    for name in CELLS:
        cell = json.loads((folder / name).read_text())
        ea, eb = cell["entrants"][a], cell["entrants"][b]
        lower = {s: ea[f"ratio_{s}"][0] < eb[f"ratio_{s}"][0] for s in wins}
        for s in wins:
            wins[s] += lower[s]
        diverged += cell["diverged"][a]
        ga, gb = np.asarray(cell["gaps"][a], dtype=np.float64), np.asarray(cell["gaps"][b], dtype=np.float64)
        kind = np.array([d["options"]["trunk"] for d in cell["draws"] for _ in d["seeds"]])
        geo = [_ci(paired_ratio_ci(ga[m], gb[m], _moves._geometric_mean, REPS))
               for m in (np.ones_like(ga, dtype=bool), kind == "linear", kind == "mlp")]  # fmt: skip
        label = f"`{cell['consensus']}` {cell['multiple']}×"
        lines.append(
            f"| {label} | {_ci(ea['ratio_mean'])} ({_ci(ea['ratio_median'])}) | {_ci(eb['ratio_mean'])} "
            f"({_ci(eb['ratio_median'])}) | {a if lower['mean'] else b} | {a if lower['median'] else b} | "
            f"{cell['diverged'][a]} / {cell['diverged'][b]} | " + " | ".join(geo) + " |"
        )
    replaces = wins["mean"] >= 6 and wins["median"] >= 6 and diverged == 0
    lines += ["", f"{a} lower by the mean in {wins['mean']} of {len(CELLS)} cells, by the median in {wins['median']}; "
              f"{a} diverged in {diverged} games: {a} {'replaces' if replaces else 'does not replace'} {b} "
              "(the rule: at least 6 of 10 by each, no divergence)"]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(table(Path(sys.argv[1])), end="")
