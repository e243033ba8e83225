#!/bin/bash
# The twenty-third key (K23): the digits cells at 5x (sum, mean, mgda, upgrad), scored from the polished L*
# (mtg_env/suites/floors.py: the best Adam run polished by L-BFGS, twenty-eighth session), where K21 and K22 scored
# them from the Adam runs alone, a floor a player's 500-step game reached in 3-7 of a cell's 32 games.
#   KEY=... bash docs/sealed/general/k23/run.sh OUT [RULE:5 ...]     (default: all four cells)
# Each cell as K21's and K22's: 32 draws x 1 seed, the CIs by draw, the baselines at the knobs K21's tunings chose
# (docs/sealed/general/k21/tuned/), the entrants as shipped (sha256, unchanged since K21):
#   dig = agents/learned/weights/learned_mlp_digits.pt  139ea1b411dcf4c20d01e91da1380c43cfc3af2dc9500e60f8a0563f043b5857
#   gen = agents/learned/weights/learned_mlp_general.pt a4d742796313c661e1e7ce3877caa344fe46ae2e30adea09e6d96175351cb5b5
# The tunings were played from the old floors; scripts/rescore_tuning.py --replay 8 re-scores each from the polished
# ones (the games that reached the old floor played again) and finds every baseline's choice unchanged
# (docs/sealed/general/k23/rescore_*.txt). The floors are computed fresh in OUT (a directory without floors.json), so
# every game is scored from the polished L*; the script checks each cell's floor kinds after it plays.
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K23"): issue 23's bar
# per cell and entrant (the mean-gap and the median-gap ratio to the best tuned baseline each below 1 with its 95 %
# CI's upper end below 1; no divergence), reported for every cell whatever it shows; nothing shipped changes on it.
# (k21/run.sh plays the digits file it names above, now kept in k24/: the shipped one took
# guard_memory_noisy_bounded after K23.)
set -e
export KEY=${KEY:?set KEY to the twenty-third key (docs/results/learned.md, K23)}
OUT=${1:?usage: run.sh OUT [RULE:5 ...]}
shift
cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(sum:5 mean:5 mgda:5 upgrad:5)
for cell in "${cells[@]}"; do
  [ "${cell##*:}" = 5 ] || { echo "run.sh: cell $cell: K23 plays digits at 5x only" >&2; exit 2; }
done
[ ! -e "$OUT/floors.json" ] || { echo "run.sh: $OUT/floors.json exists: K23 computes its floors afresh; give a new OUT" >&2; exit 2; }
bash docs/sealed/general/k21/run.sh "$OUT" "${cells[@]}"
for cell in "${cells[@]}"; do
  python docs/sealed/general/polished.py "$OUT/digits_${cell%%:*}_5.json"
done
