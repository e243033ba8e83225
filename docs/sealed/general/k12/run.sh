#!/bin/bash
# The twelfth key (K12), drawn after the eleventh session's choice was committed (db29bde: the quadratic specialist
# plays an RMSprop share, alpha_A = 0.3 and first-moment decay 0, where the consensus rule is min-bounded, i.e. under
# mgda): the shipped quadratic file beside the file before it (learned_mlp_quadratic_before.pt, from b3123b8) on the
# same draws under mgda at 1x and 2x (under sum, mean and upgrad the two play bit for bit alike: tested in
# tests/test_min_bounded_consensus.py); and the digits specialist at 2x under upgrad and mgda. Run from the repository root:
# bash docs/sealed/general/k12/run.sh OUT (CACHE=DIR keeps each cell's tuning: digits at 2x about 85 minutes a cell
# here).
# (Every file below is the one this key scored, by the bytes the weights directory held when this script was committed;
# the shipped files changed since: twelfth session's balance under mgda, K16's regression specialist.)
set -e
export KEY=11d6a168811a918beabc07a2761b87aa
W=agents/learned/weights B=docs/sealed/general/k12 P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
D=docs/sealed/general/k13/learned_mlp_digits_before.pt Q=docs/sealed/general/k13/learned_mlp_quadratic_before.pt
for m in 1 2 5; do
  DRAWS=16 python $P quadratic:mgda $m "$OUT" quad=$Q quad_before=$B/learned_mlp_quadratic_before.pt
done
DRAWS=8 python $P digits:upgrad 2 "$OUT" dig=$D
DRAWS=8 python $P digits:mgda 2 "$OUT" dig=$D
