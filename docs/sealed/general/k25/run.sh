#!/bin/bash
# The twenty-fifth key (K25): the digits cell under mgda at 5x, the only cell where the shipped digits file's play
# changed in the thirtieth session (lift_growing = False: under a min-bounded consensus rule a capped, balanced player
# whose trunk gradient grew over its last move restarts at the guard's cap, not lifted to the players' mean gradient
# length; under sum, mean and upgrad the balance does not play, nor does the option, and on the validation stream
# the file plays the 1x and 2x mgda games bit for bit as before, so K24's and the earlier keys' cells stand there).
#   KEY=... bash docs/sealed/general/k25/run.sh OUT
# As K24's 5x cell: 32 draws x 1 seed, the CIs by draw, every game scored from the polished L* (the floors computed
# fresh in OUT; the script checks the cell's floor kinds after it plays), the baselines at the knobs K21's tuning chose
# (docs/sealed/general/k21/tuned/, the polished floors' choice too: K23's rescore_mgda_5.txt). Entrants (sha256):
#   dig        = agents/learned/weights/learned_mlp_digits.pt                1e1cf8163f7db88d2edd92c0128a04b04597755a96c1c64d06754be75574a821
#   dig_before = docs/sealed/general/k25/learned_mlp_digits_before.pt        2ef359127f2509223bd86126c5d6ca243e9f91980180dacaa592fa038a285588
# (dig_before: the file without the option, K24's dig with guard_slack 2, which on digits games plays as K24's dig:
# the change's effect on fresh draws, paired.)
# Written and committed before the key was drawn, with what it is for (docs/results/learned.md, "K25"): issue 23's bar
# for dig (the mean-gap and the median-gap ratio to the best tuned baseline each below 1 with its 95 % CI's upper end
# below 1; no divergence), reported whatever it shows; nothing shipped changes on it.
set -e
export KEY=${KEY:?set KEY to the twenty-fifth key (docs/results/learned.md, K25)}
OUT=${1:?usage: run.sh OUT}
[ ! -e "$OUT/floors.json" ] || { echo "run.sh: $OUT/floors.json exists: K25 computes its floors afresh; give a new OUT" >&2; exit 2; }
export CACHE=${CACHE:-$OUT/cache} SEEDS=1 BOOTSTRAP_UNIT=draw DRAWS=32
mkdir -p "$CACHE"
cp docs/sealed/general/k21/tuned/tuned_digits_mgda_5.json "$CACHE"/
unset CACHE_FROM
# dig is the file K25 scored, kept as docs/sealed/general/k26/learned_mlp_digits_before.pt (the same sha256) since the
# shipped one took heads_adam in the thirty-first session.
python docs/sealed/general/k7/play.py digits:mgda 5 "$OUT" dig=docs/sealed/general/k26/learned_mlp_digits_before.pt \
  dig_before=docs/sealed/general/k25/learned_mlp_digits_before.pt
python docs/sealed/general/polished.py "$OUT/digits_mgda_5.json"
