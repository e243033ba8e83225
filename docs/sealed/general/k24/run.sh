#!/bin/bash
# The twenty-fourth key (K24): the digits cells under mgda at 1x, 2x and 5x, the only cells where the digits specialist's
# play changed in the twenty-ninth session (guard_memory_noisy_bounded = 0.3: the guard's memory in games of
# minibatch gradients under a min-bounded consensus rule; under sum, mean and upgrad, and in games of exact gradients,
# the file plays bit for bit as before, tests/test_guard_memory.py, so K23's and the earlier keys' cells stand there).
#   KEY=... bash docs/sealed/general/k24/run.sh OUT [RULE:MULTIPLE ...]     (default: mgda:1 mgda:2 mgda:5)
# Each cell as K21's and K23's: 32 draws x 1 seed, the CIs by draw, every game scored from the polished L* (the
# floors computed fresh in OUT; the script checks each cell's floor kinds after it plays). Baselines: at 5x the knobs
# K21's tuning chose (docs/sealed/general/k21/tuned/, re-scored from the polished floors by K23's rescore_mgda_5.txt:
# the same choice); at 1x and 2x the knobs K15's cells were tuned to (CACHE_FROM docs/sealed/general/k15, the tuning
# stream's choice, tuned from the old floor and not re-scored: no player of K14's or K15's digits mgda 1x and 2x cells
# reached that floor). Entrants (sha256):
#   dig        = agents/learned/weights/learned_mlp_digits.pt                dcf3250650af937bcbcd3acd6916ccd6c87c2ef1aa8f9d9b606be86f69b74d20
#   dig_before = docs/sealed/general/k24/learned_mlp_digits_before.pt        139ea1b411dcf4c20d01e91da1380c43cfc3af2dc9500e60f8a0563f043b5857
# (dig_before: the file K13 to K23 scored, without the option: the change's effect on fresh draws, paired.)
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K24"): issue 23's bar
# per cell for dig (the mean-gap and the median-gap ratio to the best tuned baseline each below 1 with its 95 % CI's
# upper end below 1; no divergence), reported for every cell whatever it shows; nothing shipped changes on it.
set -e
# S: the specialists this key scored (any sha256 above is theirs; the files are now in S: the shipped ones took
# guard_slack 2 in the thirtieth session, and on the validation stream play their families' games bit for bit as
# these: docs/results/learned.md, "guard_slack 2").
S=docs/sealed/stability/slack
export KEY=${KEY:?set KEY to the twenty-fourth key (docs/results/learned.md, K24)}
OUT=${1:?usage: run.sh OUT [RULE:MULTIPLE ...]}
shift
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(mgda:1 mgda:2 mgda:5)
[ ! -e "$OUT/floors.json" ] || { echo "run.sh: $OUT/floors.json exists: K24 computes its floors afresh; give a new OUT" >&2; exit 2; }
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw DRAWS=32
mkdir -p "$CACHE"
for cell in "${cells[@]}"; do
  rule=${cell%%:*} m=${cell##*:}
  [ "$rule" = mgda ] || { echo "run.sh: cell $cell: K24 plays digits under mgda only" >&2; exit 2; }
  case $m in
    5) cp docs/sealed/general/k21/tuned/tuned_digits_mgda_5.json "$CACHE"/; unset CACHE_FROM ;;
    1|2) export CACHE_FROM=docs/sealed/general/k15 ;;
    *) echo "run.sh: cell $cell: K24 plays 1x, 2x and 5x" >&2; exit 2 ;;
  esac
  python docs/sealed/general/k7/play.py digits:mgda "$m" "$OUT" dig=$S/learned_mlp_digits_before.pt \
    dig_before=docs/sealed/general/k24/learned_mlp_digits_before.pt
  python docs/sealed/general/polished.py "$OUT/digits_mgda_$m.json"
done
