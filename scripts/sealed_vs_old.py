"""The shipped learned rules under the old protocol and the sealed one, side by side (docs/results/learned.md).

    python scripts/sealed_vs_old.py --families quadratic,regression --multiples 1 --out runs/sealed_vs_old

Old: ``scripts/learned_results.py`` with per-family tuning (the evaluation stream ``EVAL_STREAM`` that selected the
models, L* = 0 off the quadratic game, a step-size grid 1e-4..1 only, heads and trunk one step), on ``--configs`` ×
``--seeds`` games. New: a cell of ``examples/bench_learned.toml`` (:mod:`mtg_env.bench.sealed`: the sealed test
stream, the true L*, the baselines externally tuned over the full search space). Writes ``OUT/table.md`` and
``OUT/table.json`` and prints each row as it comes (with its seconds, the cost of a cell). ``--render`` prints the
table of ``OUT/table.json`` (``--out docs/sealed``: the stored run), which the ``<!-- sealed:results -->`` block of
``docs/results/learned.md`` holds (``tests/test_readme_figures.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from learned_results import run as run_old

from agents.learned import learned_agent
from agents.learned.family import DEFAULT_TEST_KEY
from mtg_env.bench.sealed import _Floors, run_cell, sealed_config_from_dict

#: A gap at or below this counts as at the floor in the table (the old protocol's floor sat 1e-9 below L*).
AT_FLOOR = 1e-9
CONFIG = Path(__file__).parent.parent / "examples" / "bench_learned.toml"


def _num(x: Any) -> str:
    x = float(x)
    return f"{x:.2f}" if x == 0 or 0.01 <= abs(x) < 1000 else f"{x:.1e}"


def _ci(r: Any) -> str:
    return f"{_num(r[0])} [{_num(r[1])}, {_num(r[2])}]"


def _knobs(knobs: dict[str, Any]) -> str:
    parts = [f"lr {knobs['lr']:.3g}"]
    for key, label in (("momentum", "μ"), ("beta1", "β1"), ("beta2", "β2"), ("trunk_ratio", "ratio")):
        if key in knobs:
            parts.append(f"{label} {knobs[key]:g}")
    return ", ".join([*parts, knobs["schedule"]])


def _floored(cell: dict[str, Any], name: str) -> int:
    """Games of ``name`` that ended within 1e-9 of the start's gap from L*: at the floor, where ratios are noise."""
    return sum(1 for g in cell["gaps"][name] if float(g) <= AT_FLOOR)


def render(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table of ``rows`` (what ``OUT/table.json`` holds) in Markdown."""
    lines = [
        "| family | horizon | entrant | old: mean ratio [95% CI] | old: median ratio [95% CI] | old div. | "
        "sealed: mean ratio [95% CI] | sealed: median ratio [95% CI] | sealed div. (entrant / baselines) | "
        "best tuned by mean: knobs (mean gap) | by median | at the floor (gap ≤ 1e-9): entrant / best by median "
        "| L* |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        old, new, agent = row["old"], row["new"], row["agent"]
        e = new["entrants"][agent]
        base_div = ", ".join(f"{b} {n}" for b, n in new["diverged"].items() if b in new["tuned"] and n)
        bm, bd = new["best_mean"], new["best_median"]
        lines.append(
            f"| {row['family']} | {row['multiple']}× ({new['horizon']}) | {agent} | {_ci(old['ratio_mean'])} "
            f"(vs {old['best_mean']}) | {_ci(old['ratio_median'])} (vs {old['best_median']}) | "
            f"{old['diverged']['learned']} | **{_ci(e['ratio_mean'])}** | **{_ci(e['ratio_median'])}** | "
            f"{new['diverged'][agent]} / {base_div or 0} | {bm}: {_knobs(new['tuned'][bm]['knobs'])} "
            f"({new['mean'][bm]:.2g}) | {bd} ({new['median'][bd]:.2g}) | {_floored(new, agent)} / "
            f"{_floored(new, bd)} | {', '.join(new['floor_kinds'])} |"
        )
    games = {r["new"]["games"] for r in rows} | {r["old"]["games"] for r in rows}
    return "\n".join(lines) + f"\n\nGames per cell: {sorted(games)}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="quadratic,regression,digits")
    parser.add_argument("--multiples", default="1,2,5")
    parser.add_argument("--configs", type=int, default=8, help="old protocol: draws (default 8)")
    parser.add_argument("--seeds", type=int, default=3, help="old protocol: seeds per draw (default 3)")
    parser.add_argument("--out", type=Path, default=Path("runs/sealed_vs_old"))
    parser.add_argument("--render", action="store_true", help="only print OUT/table.json as the Markdown table")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads((args.out / "table.json").read_text())))
        return
    import tomllib

    config = sealed_config_from_dict(tomllib.loads(CONFIG.read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    floors = _Floors(args.out / "floors.json", config.device)
    rows: list[dict[str, Any]] = []
    print("| family | horizon | entrant | old: mean ratio [95% CI] | old: median ratio | old: diverged | "
          "new: mean ratio [95% CI] | new: median ratio | new: diverged (entrant / baselines) | new: best tuned "
          "(mean) | seconds old / new |\n|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for multiple in [int(m) for m in args.multiples.split(",")]:  # every family at 1× first: the cheap cells first
        for family in args.families.split(","):
            agents = [a for a, f in config.entrants if f == family]
            start = time.perf_counter()
            rules = {a: learned_agent(a, suite=family).given.to(config.device) for a in agents}
            # bootstrap_unit "game": as the stored run (docs/sealed/table.json) was scored, before "draw" was default
            new = run_cell(replace(config, multiples=(multiple,), bootstrap_unit="game"), family, multiple, floors,
                           rules, config.test_key or DEFAULT_TEST_KEY)  # fmt: skip
            new_s = time.perf_counter() - start
            for agent in agents:
                start = time.perf_counter()
                old_args = argparse.Namespace(
                    agent=agent,
                    suite=family,
                    weights=None,
                    shifted=False,
                    configs=args.configs,
                    seeds=args.seeds,
                    train_horizon=100,
                    multiples=[multiple],
                    cache=args.out / "old_cache",
                    tunings=("family",),
                )
                old = run_old(old_args)["cells"][0]
                old_s = time.perf_counter() - start
                e = new["entrants"][agent]
                base_div = sum(v for k, v in new["diverged"].items() if k in new["tuned"])
                row = {"family": family, "multiple": multiple, "agent": agent, "old": old, "new": new,
                       "seconds_old": old_s, "seconds_new": new_s}  # fmt: skip
                rows.append(row)
                best = new["best_mean"]
                print(f"| {family} | {multiple}× | {agent} | {_ci(old['ratio_mean'])} (n={old['games']}) | "
                      f"{_ci(old['ratio_median'])} | {old['diverged']['learned']} | {_ci(e['ratio_mean'])} "
                      f"(n={new['games']}) | {_ci(e['ratio_median'])} | {new['diverged'][agent]} / {base_div} | "
                      f"{best} ({new['mean'][best]:.3g}) | {old_s:.0f} / {new_s:.0f} |", flush=True)  # fmt: skip
            (args.out / "table.json").write_text(json.dumps(rows, indent=1, default=str))
            (args.out / "table.md").write_text(render(rows))


if __name__ == "__main__":
    main()
