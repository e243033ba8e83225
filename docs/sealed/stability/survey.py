"""The shipped rule files on tests/test_learned_stability.py's ill-conditioned quadratics (3 tasks, heads of 2, a trunk
of 8, float64), ten times the horizon (1 000 steps), on game seeds beyond the tests' 1000-1002 (twenty-ninth session).

    python docs/sealed/stability/survey.py --seeds 1003 1013                         # every shipped file, every rule
    python docs/sealed/stability/survey.py --files learned_mlp:digits --rules mgda --seeds 1003 1013 \\
        --options "{'guard_memory': 0.3}"                                             # a file with options changed
    python docs/sealed/stability/survey.py --files learned_mlp:digits --rules mgda --seeds 1000 1010 --noise 0.1
    python docs/sealed/stability/survey.py --rules all --seeds 1000 1003   # every named rule the game admits

``--rules all``: every named consensus rule (:data:`mtg_env.consensus.CONSENSUS_RULES`) but those the stiff quadratic
refuses (the rules that take the logarithm or a ratio of the losses need every loss > 0; a quadratic's are not),
which it names (thirty-third session).

``--noise STD``: with gradient noise (``NoiseSpec(grad_std=STD)``: the gradients are estimates). Prints, per file, the
game seeds (two play seeds each) where a game diverged, at conditions 1e4 and 1e5.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for tests/

from mtg_env.consensus import CONSENSUS_RULES
from mtg_env.engine.noise import NoiseSpec
from tests.test_learned_stability import CONSENSUS, SHIPPED, _mode, play, shipped_rule, stiff_game


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs=2, default=(1003, 1013), metavar=("FIRST", "END"))
    parser.add_argument("--files", default=",".join(f"{n}:{s}" for n, s in SHIPPED), help="NAME:SUITE,...")
    parser.add_argument(
        "--rules", default=",".join(CONSENSUS), help="consensus rules, comma-separated; all: every named rule"
    )
    parser.add_argument("--options", default="{}", help="config fields to change, a Python dict")
    parser.add_argument("--noise", type=float, default=0.0, help="gradient noise's standard deviation (0: exact)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = ast.literal_eval(args.options)
    noise = NoiseSpec(grad_std=args.noise) if args.noise > 0 else None
    rules = admitted(list(CONSENSUS_RULES)) if args.rules == "all" else args.rules.split(",")
    for entry in args.files.split(","):
        name, suite = entry.split(":")
        rule = shipped_rule(name, suite, **options)
        bad, count = [], 0
        for consensus in rules:
            for condition in (1e4, 1e5):
                for seed in range(*args.seeds):
                    game = stiff_game(consensus, 1000, condition, seed, action_mode=_mode(name), noise_model=noise)
                    diverged, _, _ = play(rule, game, [0, 1])
                    count += 1
                    if diverged.any():
                        bad.append(f"{consensus} {condition:.0e} game {seed}")
        print(f"{name} ({suite}) {options or ''}: {len(bad)} of {count} games diverged {bad}", flush=True)


def admitted(names: list[str]) -> list[str]:
    """The rules of ``names`` the stiff quadratic admits; each one it refuses is named, with why."""
    kept = []
    for name in names:
        try:
            stiff_game(name, 1)
        except ValueError as err:
            print(f"{name}: refused by the game ({str(err).split(':')[0]})", flush=True)
        else:
            kept.append(name)
    return kept


if __name__ == "__main__":
    main()
