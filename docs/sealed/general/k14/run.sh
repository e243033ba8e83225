#!/bin/bash
# The fourteenth key (K14), drawn after the thirteenth session's choice was committed: under a min-bounded consensus
# rule (mgda) a balanced rule's guard restarts a capped trunk proposal as if its gradient were at least G long (G the
# players' mean trunk-gradient length), so a capped player whose gradient is short no longer bounds every player's
# move. The shipped files, on the same draws as K13's grid (mgda; under sum, mean and upgrad nothing changed, bit for
# bit). The files as the twelfth session shipped them are the same weights played by the code before (commit
# 84df2ed): run K13's script there on this key for them (docs/results/learned.md, thirteenth session). Run from the
# repository root: bash docs/sealed/general/k14/run.sh OUT (CACHE=DIR keeps each cell's tuning).
# (The regression specialist this key played was replaced after K16: its file is in k16/.)
# (The digits specialist this key played took guard_memory_noisy_bounded after K23: its file as played is in k24/.)
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2").
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the fourteenth key (docs/results/learned.md, thirteenth session)}
W=agents/learned/weights P=docs/sealed/general/k7/play.py OUT=${1:?usage: run.sh OUT}
for m in 1 2 5; do
  DRAWS=16 python $P quadratic:mgda $m "$OUT" quad=$S/learned_mlp_quadratic_before.pt gen=$W/learned_mlp_general.pt
done
for m in 1 2 5; do
  DRAWS=16 python $P regression:mgda $m "$OUT" reg=docs/sealed/general/k16/learned_mlp_regression_before.pt gen=$W/learned_mlp_general.pt
done
for m in 1 2; do
  DRAWS=8 python $P digits:mgda $m "$OUT" dig=docs/sealed/general/k24/learned_mlp_digits_before.pt gen=$W/learned_mlp_general.pt
done
