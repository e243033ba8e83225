#!/bin/bash
# The eighteenth key (K18): the quadratic family's ten cells (sum, mean, mgda at 1x, 2x and 5x; upgrad at 1x, where its
# baselines were tuned), each 128 draws x 1 seed, the CIs by draw (as K17 played regression; on quadratics 0.65 of the
# log gaps' variance lies between draws: docs/sealed/by_draw.md), with three entrants on the same games, as shipped
# when this script was committed (sha256):
#   quad = agents/learned/weights/learned_mlp_quadratic.pt   b2720003a04faeed93a5ee0dc0d050be0d444c18bd458ebf1bc18af56c2d6c33
#   port = agents/learned/weights/learned_portfolio_general.pt   8dab4d06c5dde122ad23b9c20014ea9bcffb1d155a22d818f9a6a01745f1f064
#   gen  = agents/learned/weights/learned_mlp_general.pt   a4d742796313c661e1e7ce3877caa344fe46ae2e30adea09e6d96175351cb5b5
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K18: the quadratic
# family with a draw a game"): issue 23's bar per cell and entrant (the mean-gap and the median-gap ratio to the best
# tuned baseline each below 1 with its 95 % CI's upper end below 1; no divergence; where the entrant's and the
# baseline's medians are both at the floor, 1e-9 or less, the median is a tie), reported for all ten cells whatever
# they show; nothing shipped changes on it. The baselines' knobs are K15's cells' (the tuning stream's choice; the key
# does not enter tuning): CACHE is seeded from docs/sealed/general/k15/quadratic_<rule>_<multiple>.json.
# Run from the repository root: KEY=... bash docs/sealed/general/k18/run.sh OUT
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2");
# the portfolio this key scored is k24/'s.
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the eighteenth key (docs/results/learned.md, twenty-first session)}
OUT=${1:?usage: run.sh OUT}
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw
W=agents/learned/weights
python - <<'PY'
import json, os, pathlib
cache = pathlib.Path(os.environ["CACHE"])
cache.mkdir(parents=True, exist_ok=True)
for cell in sorted(pathlib.Path("docs/sealed/general/k15").glob("quadratic_*.json")):
    (cache / f"tuned_{cell.name}").write_text(json.dumps(json.loads(cell.read_text())["tuned"]))
PY
for consensus in sum mean mgda upgrad; do
  multiples="1 2 5"
  [ "$consensus" = upgrad ] && multiples="1"
  for m in $multiples; do
    DRAWS=128 python docs/sealed/general/k7/play.py quadratic:$consensus $m "$OUT" \
      quad=$S/learned_mlp_quadratic_before.pt port=docs/sealed/general/k24/learned_portfolio_general_before.pt gen=$W/learned_mlp_general.pt
  done
done
