"""Which half of the digits specialist falls behind tuned Adam (thirty-first session): its heads' updates and its trunk
proposals played apart, each beside tuned Adam's, on the validation stream's digits draws of one trunk.

    python docs/sealed/digits/heads/parts.py RULE HIDDEN [MULTIPLE]    # e.g. mean '[32]' 5 -> parts_RULE_M_HIDDEN.txt

The validation stream's 24 draws x 1 seed (those ``scripts/validation_cell.py`` plays), those whose trunk is HIDDEN
(a JSON list); tuned Adam at the cell's knobs (5x: docs/sealed/general/k21/tuned/, 1x and 2x: K15's cells). Each game
plays the four pairs (heads, trunk) of {the digits file as it was before ``heads_adam``
(docs/sealed/general/k26/learned_mlp_digits_before.pt), adam} with docs/sealed/regression/parts.py's ``_play_parts``
(each source stepped on the game's gradients every step, whichever half plays). Prints, and writes beside this script,
each game's final training loss Σ_m ℓ_m per pair and each pair's median over the games.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from agents.learned.checkpoint import load_rule  # noqa: E402
from agents.learned.family import draw_games  # noqa: E402

_spec = importlib.util.spec_from_file_location("regression_parts", ROOT / "docs/sealed/regression/parts.py")
assert _spec is not None and _spec.loader is not None
PARTS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(PARTS)
BEFORE = ROOT / "docs/sealed/general/k26/learned_mlp_digits_before.pt"


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    consensus, hidden = argv[0], [int(h) for h in json.loads(argv[1])]
    multiple = int(argv[2]) if len(argv) == 3 else 5
    torch.set_num_threads(1)
    if multiple == 5:
        tuned = json.loads((ROOT / f"docs/sealed/general/k21/tuned/tuned_digits_{consensus}_5.json").read_text())
    else:
        tuned = json.loads((ROOT / f"docs/sealed/general/k15/digits_{consensus}_{multiple}.json").read_text())["tuned"]
    knobs = {"adam": tuned["adam"]["knobs"]}
    rule = load_rule(BEFORE)[1]
    title = f"digits, `{consensus}`, {multiple}x, validation stream, hidden {hidden}; adam {knobs['adam']}"
    lines, finals = [title], []
    for options, seeds in draw_games("digits", "validation", 24, 1):
        if list(options.get("hidden", ())) != hidden:
            continue
        played = PARTS._play_parts(rule, options, 100 * multiple, list(seeds), consensus, knobs, "digits")
        final = {k: float(v[1][0]) for k, v in played.items() if "averaged" not in k}
        lines.append(f"split_seed {options['split_seed']}: " + ", ".join(f"{k} {v:.5g}" for k, v in final.items()))
        finals.append(final)
        print(lines[-1], flush=True)
    lines.append("median final loss (heads/trunk): " + ", ".join(
        f"{k} {float(np.median([f[k] for f in finals])):.4g}" for k in finals[0]
    ))  # fmt: skip
    print(lines[-1])
    name = f"parts_{consensus}_{multiple}_{'_'.join(map(str, hidden))}.txt"
    (Path(__file__).parent / name).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
