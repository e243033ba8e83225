#!/bin/bash
# The ninth key (K9), drawn after the tenth session's first choice was committed (cb63aa2: the digits specialist
# plays the trunk's AMSGrad share, alpha_A = 0.005): the shipped digits file beside the file before it
# (learned_mlp_digits_before.pt, from 3bb7e7c) on the same draws, at 1x under sum, mean, mgda, upgrad, and at 2x under
# sum and mean. Run from the repository root: bash docs/sealed/general/k9/run.sh OUT (CACHE=DIR keeps each cell's tuning:
# digits 40-70 minutes a cell here at 1x, 85 at 2x).
# (Every file below is the one this key scored, by the bytes the weights directory held when this script was committed;
# the shipped files changed since: twelfth session's balance under mgda, K16's regression specialist.)
set -e
export KEY=cec467479f2f32c6aa9da8cf37bd8eb4
W=agents/learned/weights B=docs/sealed/general/k9 P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
D=docs/sealed/general/k13/learned_mlp_digits_before.pt
for c in sum mean mgda upgrad; do
  DRAWS=8 python $P digits:$c 1 "$OUT" dig=$D dig_before=$B/learned_mlp_digits_before.pt
done
DRAWS=8 python $P digits:sum 2 "$OUT" dig=$D dig_before=$B/learned_mlp_digits_before.pt
DRAWS=8 python $P digits:mean 2 "$OUT" dig=$D dig_before=$B/learned_mlp_digits_before.pt
