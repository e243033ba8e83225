#!/bin/bash
# The twenty-sixth key (K26): every digits cell (sum, mean, mgda, upgrad at 1x, 2x and 5x), the digits specialist's play
# having changed in all of them in the thirty-first session (heads_adam: in games of minibatch gradients its heads play
# Adam's own step at 0.1, handed over from the trained heads' step over the first 10 % of the horizon; the trunk plays
# as trained).
#   KEY=... bash docs/sealed/general/k26/run.sh OUT [RULE:MULTIPLE ...]        (default: all twelve cells)
# Each cell as K21's, K23's, K24's and K25's: 32 draws x 1 seed, the CIs by draw, every game scored from the polished
# L* (the floors computed fresh in OUT; the script checks each cell's floor kinds after it plays). Baselines: at 5x the
# knobs K21's tuning chose (docs/sealed/general/k21/tuned/, the polished floors' choice too: K23's rescore_*_5.txt); at
# 1x and 2x the knobs K15's cells were tuned to (CACHE_FROM docs/sealed/general/k15, the tuning stream's choice, as
# K24's 1x and 2x cells and K21's 2x cells). Two processes may split the cells, each with its own OUT (as K23 and K24).
# Entrants (sha256):
#   dig        = agents/learned/weights/learned_mlp_digits.pt                db45cb945ab41e1b68191c99783c010a71c07ba579c24466fda6e80e345536f8
#   dig_before = docs/sealed/general/k26/learned_mlp_digits_before.pt        1e1cf8163f7db88d2edd92c0128a04b04597755a96c1c64d06754be75574a821
# (dig_before: the file K25 scored as dig, shipped before the option: the change's effect on fresh draws, paired.)
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K26"): issue 23's bar
# per cell for dig (the mean-gap and the median-gap ratio to the best tuned baseline each below 1 with its 95 % CI's
# upper end below 1; no divergence), reported for every cell whatever it shows; the bar table's digits rows take
# dig's K26 figures in every cell, and nothing shipped changes on the key.
set -e
export KEY=${KEY:?set KEY to the twenty-sixth key (docs/results/learned.md, K26)}
OUT=${1:?usage: run.sh OUT [RULE:MULTIPLE ...]}
shift
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(sum:1 sum:2 sum:5 mean:1 mean:2 mean:5 mgda:1 mgda:2 mgda:5 upgrad:1 upgrad:2 upgrad:5)
[ ! -e "$OUT/floors.json" ] || { echo "run.sh: $OUT/floors.json exists: K26 computes its floors afresh; give a new OUT" >&2; exit 2; }
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw DRAWS=32
mkdir -p "$CACHE"
for cell in "${cells[@]}"; do
  rule=${cell%%:*} m=${cell##*:}
  case $rule in sum|mean|mgda|upgrad) ;; *) echo "run.sh: cell $cell: K26 plays sum, mean, mgda and upgrad" >&2; exit 2 ;; esac
  case $m in
    5) cp docs/sealed/general/k21/tuned/tuned_digits_${rule}_5.json "$CACHE"/; unset CACHE_FROM ;;
    1|2) export CACHE_FROM=docs/sealed/general/k15 ;;
    *) echo "run.sh: cell $cell: K26 plays 1x, 2x and 5x" >&2; exit 2 ;;
  esac
  # dig is the file K26 scored, kept as docs/sealed/general/k27/learned_mlp_digits_before.pt (the same sha256) since
  # the shipped one took heads_adam_min_horizon in the thirty-second session.
  python docs/sealed/general/k7/play.py digits:"$rule" "$m" "$OUT" dig=docs/sealed/general/k27/learned_mlp_digits_before.pt \
    dig_before=docs/sealed/general/k26/learned_mlp_digits_before.pt
  python docs/sealed/general/polished.py "$OUT/digits_${rule}_$m.json"
done
