#!/bin/bash
# The thirteenth key (K13), drawn after the twelfth session's choice was committed: every shipped MLP file balances its
# trunk proposals under a min-bounded consensus rule (balance_min_bounded: under mgda each player's heavy ball steps
# as if its trunk gradient were the players' mean length, and its share's direction has RMS 1). The shipped files
# beside the files before (learned_mlp_*_before.pt here, the same weights without the option: tested in
# tests/test_balance.py) on the same draws under mgda; under sum, mean and upgrad the two play bit for bit alike
# (tested), so the earlier keys stand there. Run from the repository root: bash docs/sealed/general/k13/run.sh OUT
# (CACHE=DIR keeps each cell's tuning; the tuning stream does not depend on the key).
# (The regression specialist this key played was replaced after K16: its file is in k16/.)
# (The digits specialist this key played took guard_memory_noisy_bounded after K23: its file as played is in k24/.)
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2").
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the thirteenth key (docs/results/learned.md, twelfth session)}
W=agents/learned/weights B=docs/sealed/general/k13 P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
GEN="gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt"
for m in 1 2 5; do
  DRAWS=16 python $P quadratic:mgda $m "$OUT" quad=$S/learned_mlp_quadratic_before.pt \
    quad_before=$B/learned_mlp_quadratic_before.pt $GEN
done
for m in 1 2 5; do
  DRAWS=16 python $P regression:mgda $m "$OUT" reg=docs/sealed/general/k16/learned_mlp_regression_before.pt \
    reg_before=$B/learned_mlp_regression_before.pt $GEN
done
for m in 1 2; do
  DRAWS=8 python $P digits:mgda $m "$OUT" dig=docs/sealed/general/k24/learned_mlp_digits_before.pt dig_before=$B/learned_mlp_digits_before.pt $GEN
done
