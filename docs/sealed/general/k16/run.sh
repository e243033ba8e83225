#!/bin/bash
# The sixteenth key (K16): the regression family's ten cells (sum, mean, mgda at 1x, 2x and 5x; upgrad at 1x, where its
# baselines were tuned), 16 draws x 3 seeds each, with two entrants on the same games:
#   pick    = docs/sealed/regression/moves/moves_heads_s3.pt (the eighteenth session's pick: seed 3 of moves+heads,
#             picked among seeds 0-5 on the tuning stream, scored on validation in the eighteenth and nineteenth
#             sessions; docs/results/learned.md)
#   shipped = the regression specialist shipped before this key (agents/learned/weights/learned_mlp_regression.pt
#             then, the portfolio's regression expert; kept as docs/sealed/general/k16/learned_mlp_regression_before.pt
#             since the pick replaced it, so this script plays what it played)
# Written and committed before the key was drawn, with the decision it serves (docs/results/learned.md, "K16: the
# regression specialist's replacement"): the pick replaces the shipped file if its mean-gap ratio is below the shipped
# file's in at least 6 of the 10 cells, its median-gap ratio below in at least 6 of the 10, and it diverges in no game.
# The baselines' knobs are K15's cells' (the tuning stream's choice; the key does not enter tuning): CACHE is seeded
# from docs/sealed/general/k15/regression_<rule>_<multiple>.json, so no cell tunes again.
# Run from the repository root: KEY=... bash docs/sealed/general/k16/run.sh OUT
set -e
export KEY=${KEY:?set KEY to the sixteenth key (docs/results/learned.md, twentieth session)}
OUT=${1:?usage: run.sh OUT}
export CACHE=${CACHE:-$OUT/cache}
python - <<'PY'
import json, os, pathlib
cache = pathlib.Path(os.environ["CACHE"])
cache.mkdir(parents=True, exist_ok=True)
for cell in sorted(pathlib.Path("docs/sealed/general/k15").glob("regression_*.json")):
    (cache / f"tuned_{cell.name}").write_text(json.dumps(json.loads(cell.read_text())["tuned"]))
PY
for consensus in sum mean mgda upgrad; do
  multiples="1 2 5"
  [ "$consensus" = upgrad ] && multiples="1"
  for m in $multiples; do
    DRAWS=16 python docs/sealed/general/k7/play.py regression:$consensus $m "$OUT" \
      pick=docs/sealed/regression/moves/moves_heads_s3.pt shipped=docs/sealed/general/k16/learned_mlp_regression_before.pt
  done
done
