#!/bin/bash
# The eleventh key (K11), drawn after the tenth session's third choice was committed (5c9d4ae: the quadratic
# specialist's trunk boost plays only under a linear consensus rule, boost_linear_only): the shipped quadratic file
# beside the file with the boost everywhere (learned_mlp_quadratic_ungated.pt, K10's) and the file before the boost
# (docs/sealed/general/k9/learned_mlp_quadratic_before.pt) on the same draws, at 1x under sum, mgda and upgrad. Run from
# the repository root: bash docs/sealed/general/k11/run.sh OUT (CACHE=DIR keeps each cell's tuning).
# (Every file below is the one this key scored, by the bytes the weights directory held when this script was committed;
# the shipped files changed since: twelfth session's balance under mgda, K16's regression specialist.)
set -e
export KEY=3a9ac8f2bedf37ea32624557fc5bb8e1
W=agents/learned/weights B=docs/sealed/general P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
for c in upgrad mgda sum; do
  DRAWS=16 python $P quadratic:$c 1 "$OUT" quad=docs/sealed/general/k12/learned_mlp_quadratic_before.pt \
    quad_ungated=$B/k11/learned_mlp_quadratic_ungated.pt quad_before=$B/k9/learned_mlp_quadratic_before.pt
done
