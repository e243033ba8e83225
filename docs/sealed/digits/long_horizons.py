"""The digits specialist's recipe meta-trained at the sealed protocol's horizons, with the regression recipe's step
search: candidates for the digits cells at 5x, which the shipped file (meta-trained at horizons 20 and 50, no step
search) misses under every rule (K21, K22). Twenty-seventh session; docs/results/learned.md, "The digits specialist
meta-trained at long horizons".

    python docs/sealed/digits/long_horizons.py VARIANT [OUT]   # VARIANTS: A to H, B1, B2 -> OUT/VARIANT/best.pt
                                                               # (OUT: runs/digits_long)

Then each candidate is played on the validation stream against the cells' tuned knobs (never a key)::

    python scripts/validation_cell.py digits:mean 5 VALOUT \\
        --tuned docs/sealed/general/k21/tuned/tuned_digits_mean_5.json \\
        dig=docs/sealed/general/k24/learned_mlp_digits_before.pt B=runs/digits_long/B/best.pt

(``dig``: the digits file shipped then, kept since; 5x: ``docs/sealed/general/k21/tuned/tuned_digits_RULE_5.json``; 1x
and 2x: K15's cells,
``docs/sealed/general/k15/digits_RULE_M.json``.) The cells those runs wrote are in ``long_horizons/``.

Every variant but ``F`` and ``H`` plays the shipped digits file's options from its first iteration (the shipped file
had the last three added after its training: ``scripts/train_weights.py``'s ``ADDED_OPTIONS``): the minibatch brake,
the learned direction offset on the heads, the sum scaling, the trunk's AMSGrad share (α_A = 0.005), the balance under
``mgda``. Each trains under ``sum``, ``mean`` and ``mgda`` in turn (``E`` to ``G``: ``sum`` alone), with the
meta-loss's late weight 1 (``G``: 0), keeps the best rule by the final gap (``G``: the meta-loss) on held-out draws of
meta-training's own stream at the longest horizon (500, the sealed 5x), then searches the trunk's and the heads' steps
together, every pair, on the search stream's draws at 500 steps:

* ``A``: horizons 100 -> 200 -> 500 (the sealed 1x, 2x, 5x), the search scored by the meta-loss;
* ``B``: horizons 20 -> 50 -> 100 -> 200 -> 500, otherwise as ``A``;
* ``C``: ``B``'s training (the same seed, so the same rule before the search), wider step grids scored by the final
  gap;
* ``D``: ``C``'s grids scored by the meta-loss, seed 1;
* ``E``: ``B`` under ``sum`` alone, as the shipped file was trained (is the mixture of rules what costs ``mgda``?);
* ``F``: ``E`` trained with the shipped file's training options (the brake, the offset), the others added after its
  training as the shipped file's were;
* ``G``: ``E`` with the shipped recipe's meta-loss and validation (no late weight; the episode's mean);
* ``H``: ``B`` trained as ``F``: the shipped file's training options, the others added after;
* ``B1``, ``B2``: ``B`` from seeds 1 and 2.

One torch thread; 5-8 minutes a variant here (two at a time on two cores; 12 beside a CI run).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch

from agents.learned.meta_config import DIGITS_RULE
from agents.learned.train import MetaTrainConfig, meta_train

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("train_weights", ROOT / "scripts/train_weights.py")
assert _spec is not None and _spec.loader is not None
weights = importlib.util.module_from_spec(_spec)  # the shipped files' recipes (as docs/sealed/quadratic/upgrad.py)
_spec.loader.exec_module(weights)

#: The options the shipped digits file had added after its training, as this session played them (the twenty-ninth
#: session's ``guard_memory_noisy_bounded``, the thirtieth's ``guard_slack`` and ``lift_growing`` and the thirty-first's
#: ``heads_adam`` with its step and handover and the thirty-second's ``heads_adam_min_horizon`` came later).
_LATER = (
    "guard_memory_noisy_bounded",
    "guard_slack",
    "lift_growing",
    "heads_adam",
    "heads_adam_lr",
    "heads_handover",
    "heads_adam_min_horizon",
)
ADDED: dict = {k: v for k, v in weights.ADDED_OPTIONS["learned_mlp_digits"].items() if k not in _LATER}

#: The shipped digits file's play options (its training's and those added after it), trained with from the start.
RULE = {**DIGITS_RULE, **ADDED}

#: What every variant shares: the shipped digits recipe's sizes, the regression recipe's mixture of rules, late weight
#: and final-gap validation.
BASE = dict(
    agent="learned_mlp", suite="digits", consensus=("sum", "mean", "mgda"), iterations=90, games=4, configs=2,
    meta_lr=3e-3, floor="legacy", val_every=10, val_configs=2, val_games=2, val_metric="final", late_weight=1.0,
    rule=RULE,
)  # fmt: skip

_LONG = (20, 50, 100, 200, 500)
_TRUNKS, _HEADS = (0.71, 1.0, 1.41, 2.0, 2.83), (1.0, 1.41, 2.0, 2.83)
_WIDE = dict(trunk_search=(0.5, 0.71, 1.0, 1.41, 2.0), head_search=(1.41, 2.0, 2.83, 4.0, 5.66))

VARIANTS: dict[str, dict] = {
    "A": dict(horizons=(100, 200, 500), trunk_search=_TRUNKS, head_search=_HEADS),
    "B": dict(horizons=_LONG, trunk_search=_TRUNKS, head_search=_HEADS),
    "C": dict(horizons=_LONG, **_WIDE, search_metric="final"),
    "D": dict(horizons=_LONG, **_WIDE, seed=1),
    "E": dict(consensus="sum", horizons=_LONG, trunk_search=_TRUNKS, head_search=_HEADS),
    # E's two halves: trained with the shipped file's training options, the others added after (as the shipped file);
    # trained as E with the shipped recipe's meta-loss and validation (no late weight, the episode's mean).
    "F": dict(consensus="sum", horizons=_LONG, trunk_search=_TRUNKS, head_search=_HEADS, rule=DIGITS_RULE, added=ADDED),
    "G": dict(consensus="sum", horizons=_LONG, trunk_search=_TRUNKS, head_search=_HEADS, late_weight=0.0,
              val_metric="mean"),
    # B trained as F: the mixture of rules with the shipped file's training options, the others added after.
    "H": dict(horizons=_LONG, trunk_search=_TRUNKS, head_search=_HEADS, rule=DIGITS_RULE, added=ADDED),
}  # fmt: skip
VARIANTS.update({f"B{seed}": {**VARIANTS["B"], "seed": seed} for seed in (1, 2)})  # B from other seeds


def config(name: str) -> MetaTrainConfig:
    """Variant ``name``'s meta-training run (its ``added`` options go on after: :func:`main`)."""
    return MetaTrainConfig(**{**BASE, **{k: v for k, v in VARIANTS[name].items() if k != "added"}})


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in VARIANTS or len(argv) > 2:
        raise SystemExit(f"usage: long_horizons.py VARIANT [OUT]; VARIANT one of {sorted(VARIANTS)}")
    torch.set_num_threads(1)
    name, out = argv[0], Path(argv[1] if len(argv) > 1 else "runs/digits_long")
    start, run = time.perf_counter(), config(name)
    result = meta_train(run, out=out / name, progress=True)
    if "added" in VARIANTS[name]:  # as the shipped files had theirs added
        weights.add_options(out / name / "best.pt", VARIANTS[name]["added"])
    print(
        f"{name}: best held-out {'final log gap' if run.val_metric == 'final' else 'meta-loss'} "
        f"{result.best_val:.4f} (iteration {result.best_iteration}), "
        f"{time.perf_counter() - start:.0f} s -> {out / name / 'best.pt'}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
