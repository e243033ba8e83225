#!/bin/bash
# The fifteenth key (K15), drawn after the fourteenth session committed the learned portfolio (learned_portfolio:
# the three MLP specialists and a selector fitted on the tuning stream, scripts/fit_portfolio.py) beside the MLP
# generalist it is compared with. Every family under every named consensus rule: quadratics and regression at 1x, 2x
# and 5x (upgrad at 1x: its baselines were tuned at 1x only), digits at 1x and 2x (5x: over 200 minutes of one core to
# tune a cell here). Run from the repository root: bash docs/sealed/general/k15/run.sh OUT [FAMILY...]
# (CACHE=DIR keeps each cell's tuning; FAMILY... plays those families only).
# (The regression specialist and the portfolio this key played were replaced after K16: their files are in k16/.)
set -e
export KEY=${KEY:?set KEY to the fifteenth key (docs/results/learned.md, fourteenth session)}
W=agents/learned/weights P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT [FAMILY...]}
shift
FAMILIES=${*:-quadratic regression digits}
for family in $FAMILIES; do
  for consensus in sum mean mgda upgrad; do
    multiples="1 2 5"
    [ "$family" = digits ] && multiples="1 2"
    [ "$consensus" = upgrad ] && [ "$family" != digits ] && multiples="1"
    draws=16
    [ "$family" = digits ] && draws=8
    for m in $multiples; do
      DRAWS=$draws python $P $family:$consensus $m "$OUT" \
        port=docs/sealed/general/k16/learned_portfolio_general_before.pt gen=$W/learned_mlp_general.pt
    done
  done
done
