#!/bin/bash
# The twenty-seventh key (K27): every digits cell (sum, mean, mgda, upgrad at 1x, 2x and 5x), the digits specialist
# having changed in the thirty-second session (heads_adam_min_horizon 100: its heads play Adam's step only in games
# longer than 100 steps; in the 1x games, 100 steps, the trained heads play throughout, and at 2x and 5x it plays bit
# for bit as the file K26 scored).
#   KEY=... bash docs/sealed/general/k27/run.sh OUT [RULE:MULTIPLE ...]        (default: all twelve cells)
# Each cell as K21's and K23's to K26's: 32 draws x 1 seed, the CIs by draw, every game scored from the polished L*
# (the floors computed fresh in OUT; the script checks each cell's floor kinds after it plays). Baselines: at 5x the
# knobs K21's tuning chose (docs/sealed/general/k21/tuned/), at 1x and 2x the knobs K15's cells were tuned to
# (CACHE_FROM docs/sealed/general/k15, the tuning stream's choice). Two processes may split the cells, each with its
# own OUT (as K23 to K26).
# Entrants (sha256):
#   dig        = agents/learned/weights/learned_mlp_digits.pt                eecaeb09011455a45d78aa7d232ac55089daa2ae4263d20a809691bb18783b17
#   dig_before = docs/sealed/general/k27/learned_mlp_digits_before.pt        db45cb945ab41e1b68191c99783c010a71c07ba579c24466fda6e80e345536f8
# (dig_before: the file K26 scored as dig, paired on the same draws in the 1x cells, the only cells where the two
# play differently: at 2x and 5x they play the same game bit for bit, so dig plays alone there.)
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K27"): issue 23's bar
# per cell for dig (the mean-gap and the median-gap ratio to the best tuned baseline each below 1 with its 95 % CI's
# upper end below 1; no divergence), reported for every cell whatever it shows; the bar table's digits rows take
# dig's K27 figures in every cell, and nothing shipped changes on the key.
set -e
export KEY=${KEY:?set KEY to the twenty-seventh key (docs/results/learned.md, K27)}
OUT=${1:?usage: run.sh OUT [RULE:MULTIPLE ...]}
shift
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(sum:1 sum:2 sum:5 mean:1 mean:2 mean:5 mgda:1 mgda:2 mgda:5 upgrad:1 upgrad:2 upgrad:5)
[ ! -e "$OUT/floors.json" ] || { echo "run.sh: $OUT/floors.json exists: K27 computes its floors afresh; give a new OUT" >&2; exit 2; }
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw DRAWS=32
mkdir -p "$CACHE"
for cell in "${cells[@]}"; do
  rule=${cell%%:*} m=${cell##*:}
  case $rule in sum|mean|mgda|upgrad) ;; *) echo "run.sh: cell $cell: K27 plays sum, mean, mgda and upgrad" >&2; exit 2 ;; esac
  entrants=(dig=agents/learned/weights/learned_mlp_digits.pt)
  case $m in
    5) cp docs/sealed/general/k21/tuned/tuned_digits_${rule}_5.json "$CACHE"/; unset CACHE_FROM ;;
    2) export CACHE_FROM=docs/sealed/general/k15 ;;
    1) export CACHE_FROM=docs/sealed/general/k15; entrants+=(dig_before=docs/sealed/general/k27/learned_mlp_digits_before.pt) ;;
    *) echo "run.sh: cell $cell: K27 plays 1x, 2x and 5x" >&2; exit 2 ;;
  esac
  python docs/sealed/general/k7/play.py digits:"$rule" "$m" "$OUT" "${entrants[@]}"
  python docs/sealed/general/polished.py "$OUT/digits_${rule}_$m.json"
done
