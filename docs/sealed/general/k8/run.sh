#!/bin/bash
# K8 cells at 1x (and sum at 2x, 5x): the shipped files after this session's choice beside the files before it.
cd /work/main
. .venv/bin/activate
export KEY=$(cat /work/runs/s9/k8.key) CACHE=/work/runs/s7
W=agents/learned/weights B=docs/sealed/general/k8
OUT=/work/runs/s9/k8
P=docs/sealed/general/k7/play.py
for c in sum mean mgda upgrad; do
  DRAWS=16 python $P quadratic:$c 1 $OUT gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt quad=$W/learned_mlp_quadratic.pt quad_before=$B/learned_mlp_quadratic_before.pt
  DRAWS=16 python $P regression:$c 1 $OUT gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt reg=$W/learned_mlp_regression.pt reg_before=$B/learned_mlp_regression_before.pt
done
for c in sum mean; do
  DRAWS=8 python $P digits:$c 1 $OUT gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt dig=$W/learned_mlp_digits.pt dig_before=$B/learned_mlp_digits_before.pt
done
for m in 2 5; do
  DRAWS=16 python $P quadratic $m $OUT gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt quad=$W/learned_mlp_quadratic.pt
  DRAWS=16 python $P regression $m $OUT gen=$W/learned_mlp_general.pt gen_before=$B/learned_mlp_general_before.pt reg=$W/learned_mlp_regression.pt
done
