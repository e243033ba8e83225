#!/bin/bash
# The seventeenth key (K17): the regression family's ten cells (sum, mean, mgda at 1x, 2x and 5x; upgrad at 1x, where
# its baselines were tuned), each 128 draws x 1 seed: as many games as K16's 16 x 3 would take 43 draws for, every one
# its own draw (on regression 0.97 of the log gaps' variance lies between draws: docs/sealed/by_draw.md), the CIs by
# draw (BOOTSTRAP_UNIT=draw; with one seed a draw, by game too).
#   shipped = the regression specialist shipped since K16 (agents/learned/weights/learned_mlp_regression.pt, sha256
#             aa0ba171a2cfe71ddea2801f650e3e5ada973e79ce66a399f6c53800179cb15b when this script was committed: the
#             eighteenth session's moves_heads_s3.pt), which the portfolio plays on every regression game
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K17: the regression
# family with a draw a game"): issue 23's bar per cell (the mean-gap and the median-gap ratio to the best tuned baseline
# each below 1 with its 95 % CI's upper end below 1; no divergence), reported for all ten cells whatever they show;
# nothing shipped changes on it. The baselines' knobs are K15's cells' (the tuning stream's choice; the key does not
# enter tuning), as for K16: CACHE is seeded from docs/sealed/general/k15/regression_<rule>_<multiple>.json.
# Run from the repository root: KEY=... bash docs/sealed/general/k17/run.sh OUT
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2").
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the seventeenth key (docs/results/learned.md, twenty-first session)}
OUT=${1:?usage: run.sh OUT}
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw
python - <<'PY'
import json, os, pathlib
cache = pathlib.Path(os.environ["CACHE"])
cache.mkdir(parents=True, exist_ok=True)
for cell in sorted(pathlib.Path("docs/sealed/general/k15").glob("regression_*.json")):
    (cache / f"tuned_{cell.name}").write_text(json.dumps(json.loads(cell.read_text())["tuned"]))
PY
for consensus in sum mean mgda upgrad; do
  multiples="1 2 5"
  [ "$consensus" = upgrad ] && multiples="1"
  for m in $multiples; do
    DRAWS=128 python docs/sealed/general/k7/play.py regression:$consensus $m "$OUT" \
      shipped=$S/learned_mlp_regression_before.pt
  done
done
