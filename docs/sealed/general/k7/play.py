"""Cells of the sealed protocol played on a test key (``KEY``), with the tuned baselines' choices from the tuning stream
(the key does not enter tuning, so these are the bench's own choices). Written for the seventh key (K7, below); the
later keys' scripts play their cells with it too (``docs/sealed/general/k8/run.sh``, ``k9/run.sh``, ``k10/run.sh``).

    KEY=d482540abae1601e7ec27060e64016ab DRAWS=8 python docs/sealed/general/k7/play.py digits 1 OUT \\
        gen=agents/learned/weights/learned_mlp_general.pt digits=agents/learned/weights/learned_mlp_digits.pt \\
        digits_vanishing=docs/sealed/general/k7/learned_mlp_digits_vanishing.pt
    KEY=... DRAWS=16 python docs/sealed/general/k7/play.py regression 1 OUT gen=... regression=...
    KEY=... DRAWS=16 python docs/sealed/general/k7/play.py quadratic 1 OUT gen=...
    (digits:mean, digits:mgda: FAMILY:CONSENSUS)

The config is docs/sealed/general/k5_sum.toml's (search grid, tuning draws, bootstrap) with the family, multiple and
consensus given here and DRAWS x SEEDS test games (SEEDS: 3 unless set). ``BOOTSTRAP_UNIT`` (``game`` unless set, as K7
to K16 were scored; ``draw`` from K17, the sealed config's default since the twenty-first session) says what the CIs
resample. ``CACHE`` (a directory, optional) keeps each cell's tuning result, so a
second cell of the same family, horizon and consensus does not tune again (digits: about 30 minutes a cell here).
``CACHE_FROM`` (a directory of an earlier key's cells, optional; needs ``CACHE``) takes a cell's tuned knobs from that
key's ``FAMILY_CONSENSUS_MULTIPLE.json`` (its ``tuned`` field: the tuning stream's choice, which no key enters) where
``CACHE`` has none yet, so a later key plays the same baselines without tuning them again (K19 on; K16 to K18 seeded
``CACHE`` from K15's cells in their run.sh).
``TUNE_ONLY=1`` (needs ``CACHE``; no ``KEY``, no entrants) tunes the cell's baselines on the tuning stream into
``CACHE`` and stops, so a key's cells can be tuned before the key is drawn (K19). With ``CACHE`` a tuning keeps its
finished draws in ``CACHE/progress_tuned_FAMILY_CONSENSUS_MULTIPLE.json`` and, run again after a stop, resumes from
them (the twenty-fifth session, for the digits cells at 5×: 12 M game-steps each).
``learned_mlp_digits_vanishing.pt`` is the shipped digits rule with ``offset_vanishes=True`` (``with_options``), the
variant chosen on the validation stream before this key was drawn (docs/results/learned.md, eighth session).
"""

import importlib
import json
import os
import sys
from pathlib import Path

import torch

import mtg_env.bench.sealed as sealed
from agents.learned.checkpoint import load_rule
from mtg_env._platform import steady_allocator

tomllib = importlib.import_module("tomllib")  # Python 3.11+ (as run here)
ROOT = Path(__file__).resolve().parents[4]
torch.set_num_threads(1)
steady_allocator()  # as `mtg-env bench` does: tuning's batch-sized blocks stay in the process
family, _, consensus = sys.argv[1].partition(":")
consensus = consensus or "sum"
multiple, out = int(sys.argv[2]), Path(sys.argv[3])
data = tomllib.loads((ROOT / "docs/sealed/general/k5_sum.toml").read_text())
data["families"], data["multiples"], data["consensus"], data["entrants"] = [family], [multiple], [consensus], []
data["test"]["draws"], data["test"]["seeds"] = int(os.environ.get("DRAWS", 16)), int(os.environ.get("SEEDS", 3))
data["bootstrap_unit"] = os.environ.get("BOOTSTRAP_UNIT", "game")  # what K7 to K16 recorded; K17 on: "draw"
config = sealed.sealed_config_from_dict(data)
tune = sealed.tune_baselines
if "CACHE_FROM" in os.environ and "CACHE" not in os.environ:
    raise SystemExit("CACHE_FROM needs CACHE (the directory the cell's tuned knobs are kept in): set both")
if "CACHE" in os.environ:
    cache = Path(os.environ["CACHE"]) / f"tuned_{family}_{consensus}_{multiple}.json"

    def tune(config, suite, horizon, floors, consensus="sum", progress=None, _tune=sealed.tune_baselines):  # type: ignore[no-redef]
        if cache.exists():
            return json.loads(cache.read_text())
        if "CACHE_FROM" in os.environ:
            earlier = Path(os.environ["CACHE_FROM"]) / f"{family}_{consensus}_{multiple}.json"
            if not earlier.exists():
                raise SystemExit(f"CACHE_FROM has no cell {earlier}: unset CACHE_FROM to tune this cell's baselines")
            chosen = json.loads(earlier.read_text())["tuned"]
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(chosen))
            return chosen
        chosen = _tune(
            config, suite, horizon, floors, consensus, progress=progress or cache.with_name(f"progress_{cache.name}")
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(chosen))
        return chosen

    sealed.tune_baselines = tune
tune_only = bool(os.environ.get("TUNE_ONLY"))
if tune_only and ("CACHE" not in os.environ or sys.argv[4:]):
    raise SystemExit("TUNE_ONLY tunes into CACHE and plays no entrant: set CACHE and name no rule files")
rules = {name: load_rule(path)[1] for name, path in (arg.split("=", 1) for arg in sys.argv[4:])}
out.mkdir(parents=True, exist_ok=True)
floors = sealed._Floors(out / "floors.json")
if tune_only:
    sealed.tune_baselines(config, family, config.horizon(family, multiple), floors, consensus)
    print(f"tuned {family} {consensus} {multiple}x into {cache}")
    sys.exit(0)
cell = sealed.run_cell(config, family, multiple, floors, rules, os.environ["KEY"], "test", consensus)
(out / f"{family}_{consensus}_{multiple}.json").write_text(json.dumps(cell, default=str))
print(f"{family} {consensus} {multiple}x ({cell['games']} games) best mean {cell['best_mean']}")
for name, entrant in cell["entrants"].items():
    m, md = entrant["ratio_mean"], entrant["ratio_median"]
    print(
        f"  {name:<18} mean {m[0]:.3g} [{m[1]:.3g}, {m[2]:.3g}]  median {md[0]:.3g} [{md[1]:.3g}, {md[2]:.3g}]  "
        f"diverged {cell['diverged'][name]}"
    )
