#!/bin/bash
# The eighth key (K8), drawn after the ninth session's choice was committed (5d60f10: every shipped MLP file plays
# sum_scaled, the generalist adds the trunk boost): the shipped files beside the files before it (*_before.pt, from
# bdbe173) on the same draws, at 1x under sum, mean, mgda, upgrad, and at 2x and 5x under sum and mean. Run from the repository
# root: bash docs/sealed/general/k8/run.sh OUT (CACHE=DIR keeps each cell's tuning: digits about 40 minutes a cell).
# The digits and quadratic specialists changed after K8 (tenth session): DIG and QUAD are the files K8 scored.
# (Every file below is the one this key scored, by the bytes the weights directory held when this script was committed;
# the shipped files changed since: twelfth session's balance under mgda, K16's regression specialist.)
set -e
export KEY=3b159ee53c0942beeb924b5bd2f6cbfc
W=agents/learned/weights B=docs/sealed/general/k8 P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
G=docs/sealed/general/k13/learned_mlp_general_before.pt R=docs/sealed/general/k13/learned_mlp_regression_before.pt
DIG=docs/sealed/general/k9/learned_mlp_digits_before.pt QUAD=docs/sealed/general/k9/learned_mlp_quadratic_before.pt
for c in sum mean mgda upgrad; do
  DRAWS=16 python $P quadratic:$c 1 "$OUT" gen=$G gen_before=$B/learned_mlp_general_before.pt \
    quad=$QUAD quad_before=$B/learned_mlp_quadratic_before.pt
  DRAWS=16 python $P regression:$c 1 "$OUT" gen=$G gen_before=$B/learned_mlp_general_before.pt \
    reg=$R reg_before=$B/learned_mlp_regression_before.pt
done
for c in sum mean mgda upgrad; do
  DRAWS=8 python $P digits:$c 1 "$OUT" gen=$G gen_before=$B/learned_mlp_general_before.pt \
    dig=$DIG dig_before=$B/learned_mlp_digits_before.pt
done
for m in 2 5; do for c in sum mean; do
  DRAWS=16 python $P quadratic:$c $m "$OUT" gen=$G gen_before=$B/learned_mlp_general_before.pt \
    quad=$QUAD
  DRAWS=16 python $P regression:$c $m "$OUT" gen=$G gen_before=$B/learned_mlp_general_before.pt \
    reg=$R
done; done
# Added in the tenth session: the digits cell at 2x under sum, the generalist and the digits specialist K8 scored.
DRAWS=8 python $P digits:sum 2 "$OUT" gen=$G dig=$DIG
