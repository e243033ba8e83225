#!/bin/bash
# The tenth key (K10), drawn after the tenth session's second choice was committed (57b9e78: the quadratic specialist
# plays the generalist's trunk boost, 0.05 a step, floor 0.001): the shipped quadratic file beside the file before it
# (docs/sealed/general/k9/learned_mlp_quadratic_before.pt, from 3bb7e7c) on the same draws, at 1x under sum, mean, mgda,
# upgrad and at 2x and 5x under sum and mean. Run from the repository root: bash docs/sealed/general/k10/run.sh OUT
# (CACHE=DIR keeps each cell's tuning). The file K10 scored plays the boost under every rule; the shipped one since
# plays it only under linear rules (K11), so QUAD is K10's file.
set -e
export KEY=95471ec7a9acf8c424fe04a43bdd41cf
W=agents/learned/weights B=docs/sealed/general/k9 P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
QUAD=docs/sealed/general/k11/learned_mlp_quadratic_ungated.pt
for c in sum mean mgda upgrad; do
  DRAWS=16 python $P quadratic:$c 1 "$OUT" quad=$QUAD quad_before=$B/learned_mlp_quadratic_before.pt
done
for m in 2 5; do for c in sum mean; do
  DRAWS=16 python $P quadratic:$c $m "$OUT" quad=$QUAD quad_before=$B/learned_mlp_quadratic_before.pt
done; done
