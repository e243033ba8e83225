"""The quadratic specialist under ``upgrad``, the one quadratic cell it loses on every key (K18: 2.61 [1.20, 5.57]):
is it that the rule was meta-trained under ``sum`` only? (twenty-second session; tuning stream only.)

    python docs/sealed/quadratic/upgrad.py train VARIANT SEED   # -> runs/upgrad/<VARIANT>_s<SEED>/file.pt
    python docs/sealed/regression/moves.py score tuning upgrad 1 \\
        shipped=docs/sealed/stability/slack/learned_mlp_quadratic_before.pt \\
        NAME=runs/upgrad/<VARIANT>_s<SEED>/file.pt ... \\
        --family quadratic

``train``: the shipped quadratic specialist's recipe (``scripts/train_weights.py``'s ``learned_mlp_quadratic``: 120
iterations, horizons 20 -> 50 -> 100, the legacy floor) with another consensus rule, then the options the shipped
file had added after its training (``ADDED_OPTIONS``: the boost under a linear rule, the RMSprop share and the balance
under a min-bounded one; under ``upgrad``, which is neither, none of them plays). ``upgrad`` solves a quadratic
program a step, which truncated backpropagation does not differentiate, so every variant meta-trains by PES
(persistent evolution strategies: ``method="pes"``, 8 antithetic pairs, σ = 0.01) where the shipped file had TBPTT.
VARIANTS:

* ``upgrad``: meta-trained under ``upgrad`` alone;
* ``all``: under ``sum``, ``mean``, ``mgda`` and ``upgrad`` in turn (each iteration's draws under the next rules);
* ``upgrad+final``: ``upgrad`` with the regression specialist's later choices: the meta-loss from the true floor with
  late weight 1, the best rule by the final gap on held-out draws, the trunk's and the heads' steps searched;
* ``upgrad+init``, ``all+init``: ``upgrad`` and ``all`` started from the shipped file (``MetaTrainConfig.init``:
  fine-tuning, its options kept; ``best.pt`` stays the file unless an iteration beats it on held-out draws).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from agents.learned.train import meta_train

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("train_weights", ROOT / "scripts/train_weights.py")
assert _spec is not None and _spec.loader is not None
weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(weights)

RECIPE = weights.RUNS["learned_mlp_quadratic"]
#: The quadratic specialist as shipped when these runs were made (kept since the thirtieth session's ``guard_slack``).
SHIPPED = str(ROOT / "docs/sealed/stability/slack/learned_mlp_quadratic_before.pt")
#: The options added to it after training, as these runs played them (``guard_slack`` came later).
ADDED = {k: v for k, v in weights.ADDED_OPTIONS["learned_mlp_quadratic"].items() if k != "guard_slack"}
VARIANTS = {
    "upgrad": {"consensus": "upgrad", "method": "pes"},
    "all": {"consensus": ("sum", "mean", "mgda", "upgrad"), "method": "pes"},
    "upgrad+final": {
        "consensus": "upgrad", "method": "pes", "floor": "true", "late_weight": 1.0, "val_metric": "final",
        "trunk_search": (0.5, 0.71, 1.0, 1.41, 2.0), "head_search": (0.5, 0.71, 1.0, 1.41, 2.0),
    },
    "upgrad+init": {"consensus": "upgrad", "method": "pes", "init": SHIPPED},
    "all+init": {"consensus": ("sum", "mean", "mgda", "upgrad"), "method": "pes", "init": SHIPPED},
}  # fmt: skip


def train(variant: str, seed: int) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    config = replace(RECIPE, seed=seed, **VARIANTS[variant])
    out = ROOT / "runs" / "upgrad" / f"{variant}_s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    result = meta_train(config, out=out, progress=False)
    shutil.copyfile(out / "best.pt", out / "file.pt")
    if "init" not in VARIANTS[variant]:  # (a file started from plays its own options, these among them)
        weights.add_options(out / "file.pt", ADDED)
    print(f"{out}: {time.perf_counter() - began:.0f} s, best {result.best_val:.4f} at {result.best_iteration}, "
          f"trunk x{result.trunk_factor}, heads x{result.head_factor}")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) == 4 and sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
