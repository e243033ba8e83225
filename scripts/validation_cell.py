"""One sealed cell played on the validation (development) stream, with learned-rule variants as entrants: what a
change of a shipped rule's options or steps would do, looked at before any key plays it.

    python scripts/validation_cell.py digits:mean 5 OUT \\
        --tuned docs/sealed/general/k21/tuned/tuned_digits_mean_5.json \\
        dig=agents/learned/weights/learned_mlp_digits.pt \\
        dig_anneal_half=agents/learned/weights/learned_mlp_digits.pt:anneal=0.5 \\
        dig_heads_x2=agents/learned/weights/learned_mlp_digits.pt:head_step=2

An entrant is ``LABEL=FILE`` or ``LABEL=FILE:OPTION=VALUE[,OPTION=VALUE...]``: the file's rule with those config
fields changed (:func:`agents.learned.checkpoint.with_options`; values are read as Python literals), and
``head_step=F`` or ``trunk_step=F`` multiply its trained heads' or trunk's step by F (as meta-training's step search
does). The baselines play the knobs in ``--tuned``: a cell's tuning result, a key's ``tuned_*.json`` or a cell
file's ``tuned`` field, which the tuning stream chose; no tuning runs here. The draws are the validation stream's
(``--draws`` × ``--seeds``), disjoint from every key's test draws. The config is docs/sealed/general/k5_sum.toml's, as
the keys' scripts use, with the CIs by draw. Writes ``OUT/FAMILY_RULE_MULTIPLE.json`` in the cells' format
(``scripts/cell_groups.py`` splits it by trunk) and prints each entrant's row of the bench report's table
(``cell_rows``: the ratios to the best tuned baseline with their CIs, the divergences, a tie where both medians are at
the floor). L* is the best known loss of each game, lowered by every run of the cell, so ratios compare within one
run's entrants.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

import mtg_env.bench.sealed as sealed
from agents.learned.checkpoint import load_rule, with_options
from mtg_env._platform import steady_allocator
from mtg_env.bench.sealed_report import cell_rows

ROOT = Path(__file__).resolve().parents[1]


def _entrant(spec: str) -> tuple[str, Any]:
    """``LABEL=FILE[:OPTION=VALUE,...]`` -> (label, rule)."""
    label, sep, rest = spec.partition("=")
    if not sep or not label or not rest:
        raise SystemExit(f"entrant {spec!r}: expected LABEL=FILE or LABEL=FILE:OPTION=VALUE[,OPTION=VALUE...]")
    path, _, opts = rest.partition(":")
    name, rule, _ = load_rule(path)
    if not opts:
        return label, rule
    options: dict[str, Any] = {}
    steps: dict[str, float] = {}
    for item in opts.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"entrant {label!r}: option {item!r} is not OPTION=VALUE")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"entrant {label!r}: option {key}'s value {value!r} is not a Python literal") from None
        (steps if key in ("head_step", "trunk_step") else options)[key] = parsed
    for key, factor in steps.items():
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
            raise SystemExit(f"entrant {label!r}: {key} must be a positive finite number, got {factor!r}")
    try:  # a copy: the loaded rule's own parameters are never moved
        rule = with_options(name, rule, **options)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"entrant {label!r}: options {sorted(options)} of {path}: {err}") from None
    for key, factor in steps.items():
        if not callable(getattr(rule, f"scale_{key}", None)):
            raise SystemExit(f"entrant {label!r}: the rule of {path} has no scale_{key}")
        getattr(rule, f"scale_{key}")(float(factor))
    return label, rule


def entrants(specs: list[str], baselines: tuple[str, ...]) -> dict[str, Any]:
    """The entrants by label; a label used twice, or a baseline's (its gaps would replace the baseline's), is
    refused."""
    rules: dict[str, Any] = {}
    for spec in specs:
        label, rule = _entrant(spec)
        if label in rules or label in baselines:
            taken = "another entrant's" if label in rules else "a tuned baseline's"
            raise SystemExit(f"entrant label {label!r} is {taken}: give each entrant a label of its own")
        rules[label] = rule
    return rules


def tuned_knobs(path: Path, family: str, consensus: str, multiple: int, baselines: tuple[str, ...]) -> dict[str, Any]:
    """The cell's tuned baselines from ``path``: a cell file (its ``tuned`` field) or a tuning result. Refused where
    the file says it is another cell's (a cell file's family, rule and multiple; a ``tuned_FAMILY_RULE_MULTIPLE.json``
    name) or lacks a baseline."""
    data = json.loads(path.read_text())
    if "tuned" in data:  # a cell file
        theirs = (data.get("family"), data.get("consensus", "sum"), data.get("multiple"))
    else:
        named = re.fullmatch(r"tuned_([a-z0-9]+)_([a-z0-9_]+)_(\d+)\.json", path.name)
        theirs = (named[1], named[2], int(named[3])) if named else (family, consensus, multiple)
    if theirs != (family, consensus, multiple):
        raise SystemExit(
            f"--tuned {path} is the cell {theirs[0]}:{theirs[1]} at {theirs[2]}x, not {family}:{consensus} at "
            f"{multiple}x: give this cell's tuned knobs"
        )
    tuned = data.get("tuned", data)
    missing = [b for b in baselines if b not in tuned]
    if missing:
        raise SystemExit(f"--tuned {path} lacks the baselines {missing}")
    return tuned  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", help="FAMILY:RULE, e.g. digits:mean")
    parser.add_argument("multiple", type=int, help="the horizon's multiple of the family's (1, 2, 5)")
    parser.add_argument("out", type=Path, help="directory for the cell file and the floors")
    parser.add_argument("entrants", nargs="+", help="LABEL=FILE[:OPTION=VALUE,...]")
    parser.add_argument("--tuned", type=Path, required=True, help="the cell's tuned baselines (JSON)")
    parser.add_argument("--draws", type=int, default=24, help="validation draws (default 24)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds a draw (default 1)")
    args = parser.parse_args()
    family, _, consensus = args.cell.partition(":")
    consensus = consensus or "sum"
    torch.set_num_threads(1)
    steady_allocator()
    toml = importlib.import_module("tomllib")  # Python 3.11+ (as docs/sealed/general/k7/play.py)
    data = toml.loads((ROOT / "docs/sealed/general/k5_sum.toml").read_text())
    data["families"], data["multiples"], data["consensus"] = [family], [args.multiple], [consensus]
    data["entrants"] = []
    data["test"]["draws"], data["test"]["seeds"], data["bootstrap_unit"] = args.draws, args.seeds, "draw"
    config = sealed.sealed_config_from_dict(data)
    tuned = tuned_knobs(args.tuned, family, consensus, args.multiple, tuple(config.baselines))
    rules = entrants(args.entrants, tuple(config.baselines))
    sealed.tune_baselines = lambda *a, **k: tuned  # the knobs given: no tuning here
    args.out.mkdir(parents=True, exist_ok=True)
    floors = sealed._Floors(args.out / "floors.json")
    cell = sealed.run_cell(config, family, args.multiple, floors, rules, "", "validation", consensus)
    path = args.out / f"{family}_{consensus}_{args.multiple}.json"
    path.write_text(json.dumps({**cell, "stream": "validation"}, default=str))  # not a sealed cell: no key drew it
    print(f"{family} {consensus} {args.multiple}x, validation stream ({cell['games']} games) -> {path}")
    print(cell_rows(cell, header=True, consensus=True))


if __name__ == "__main__":
    main()
