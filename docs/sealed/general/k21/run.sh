#!/bin/bash
# The twenty-first and twenty-second keys (K21, K22): the digits cells at 5x that no key had scored (their tuning took
# over 200 minutes of one core a cell before the twenty-fifth session), and the generalist's two digits cells at 2x
# that no key had played it on. One script for both keys; each key plays the cells named for it:
#   K21: KEY=... bash docs/sealed/general/k21/run.sh OUT sum:5 mean:5 mean:2 upgrad:2
#   K22: KEY=... bash docs/sealed/general/k21/run.sh OUT mgda:5 upgrad:5
# (Before either key, the twenty-fifth session moved mgda:5 to K22 and mean:5 to K21: a digits tuning step of 2 400
# games costs about three times sum's under mgda and upgrad, whose exact solvers run per game, so their tunings run
# for hours here and K21 need not wait for them.)
# Each cell 32 draws x 1 seed, the CIs by draw, with the entrants as shipped when this script was committed (sha256):
#   dig = agents/learned/weights/learned_mlp_digits.pt  139ea1b411dcf4c20d01e91da1380c43cfc3af2dc9500e60f8a0563f043b5857
#   gen = agents/learned/weights/learned_mlp_general.pt a4d742796313c661e1e7ce3877caa344fe46ae2e30adea09e6d96175351cb5b5
# (The portfolio plays the digits specialist on every digits game, bit for bit: tests/test_portfolio.py; its rows would
# be dig's.)
# Written and committed before either key was drawn, with what it is for (docs/results/learned.md, "K21 and K22: digits
# at 5x"): issue 23's bar per cell and entrant (the mean-gap and the median-gap ratio to the best tuned baseline each
# below 1 with its 95 % CI's upper end below 1; no divergence), reported for every cell whatever it shows; nothing
# shipped changes on it. The 5x cells' baselines are tuned on the tuning stream before their key is drawn (TUNE_ONLY=1
# CACHE=docs/sealed/general/k21/tuned python docs/sealed/general/k7/play.py digits:RULE 5 OUT; the key does not enter
# tuning) and committed in tuned/; the 2x cells take the knobs K15's cells were tuned to (CACHE_FROM, the tuning
# stream's choice at 2x).
# (The digits specialist this key played took guard_memory_noisy_bounded after K23: its file as played is in k24/.)
set -e
export KEY=${KEY:?set KEY to the twenty-first or twenty-second key (docs/results/learned.md, K21 and K22)}
OUT=${1:?usage: run.sh OUT RULE:MULTIPLE...}
shift
[ $# -gt 0 ] || { echo "run.sh: name the cells to play, RULE:MULTIPLE (K21: sum:5 mean:5 mean:2 upgrad:2)" >&2; exit 2; }
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw DRAWS=32
mkdir -p "$CACHE"
W=agents/learned/weights
for cell in "$@"; do
  rule=${cell%%:*} m=${cell##*:}
  case $m in
    5) tuned=docs/sealed/general/k21/tuned/tuned_digits_${rule}_5.json
       [ -f "$tuned" ] || { echo "run.sh: $tuned is not committed: tune the cell before its key" >&2; exit 2; }
       cp "$tuned" "$CACHE"/
       from= ;;
    2) from=docs/sealed/general/k15 ;;
    *) echo "run.sh: cell $cell: this script plays digits at 5x, and at 2x under mean and upgrad" >&2; exit 2 ;;
  esac
  if [ -n "$from" ]; then export CACHE_FROM=$from; else unset CACHE_FROM; fi
  python docs/sealed/general/k7/play.py digits:"$rule" "$m" "$OUT" dig=docs/sealed/general/k24/learned_mlp_digits_before.pt gen=$W/learned_mlp_general.pt
done
