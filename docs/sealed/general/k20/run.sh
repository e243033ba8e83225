#!/bin/bash
# The twentieth key (K20): the other two of the four upgrad cells no key had scored, quadratics and regression at 5x,
# each 128 draws x 1 seed, the CIs by draw (as K17 and K18 played their families' other cells), with the entrants as
# shipped when this script was committed (sha256):
#   quad    = agents/learned/weights/learned_mlp_quadratic.pt     b2720003a04faeed93a5ee0dc0d050be0d444c18bd458ebf1bc18af56c2d6c33
#   port    = agents/learned/weights/learned_portfolio_general.pt 8dab4d06c5dde122ad23b9c20014ea9bcffb1d155a22d818f9a6a01745f1f064
#   gen     = agents/learned/weights/learned_mlp_general.pt       a4d742796313c661e1e7ce3877caa344fe46ae2e30adea09e6d96175351cb5b5
#   shipped = agents/learned/weights/learned_mlp_regression.pt    aa0ba171a2cfe71ddea2801f650e3e5ada973e79ce66a399f6c53800179cb15b
# (quadratics: quad, port and gen, as K18; regression: shipped and gen; the portfolio plays the regression specialist on
# every regression tuning and validation game, and K17 scored the specialist alone.)
# (K19, docs/sealed/general/k19/run.sh, played the two 2x cells with its own key.)
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K19 and K20: the upgrad
# cells at 2x and 5x"): issue 23's bar per cell and entrant (the mean-gap and the median-gap ratio to the best tuned
# baseline each below 1 with its 95 % CI's upper end below 1; no divergence; where the entrant's and the baseline's
# medians are both at the floor, 1e-9 or less, the median is a tie), reported for both cells whatever they show; nothing
# shipped changes on it. The baselines' knobs were tuned on the tuning stream before the key was drawn (TUNE_ONLY=1
# CACHE=... python docs/sealed/general/k7/play.py FAMILY:upgrad M OUT; the key does not enter tuning) and committed
# beside this script (tuned/); CACHE is seeded from them.
# Run from the repository root: KEY=... bash docs/sealed/general/k20/run.sh OUT
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2");
# the portfolio this key scored is k24/'s.
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the twentieth key (docs/results/learned.md, K19 and K20)}
OUT=${1:?usage: run.sh OUT}
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw
mkdir -p "$CACHE"
cp docs/sealed/general/k20/tuned/tuned_*_upgrad_*.json "$CACHE"/
W=agents/learned/weights
for m in 5; do
  DRAWS=128 python docs/sealed/general/k7/play.py quadratic:upgrad $m "$OUT" \
    quad=$S/learned_mlp_quadratic_before.pt port=docs/sealed/general/k24/learned_portfolio_general_before.pt gen=$W/learned_mlp_general.pt
  DRAWS=128 python docs/sealed/general/k7/play.py regression:upgrad $m "$OUT" \
    shipped=$S/learned_mlp_regression_before.pt gen=$W/learned_mlp_general.pt
done
