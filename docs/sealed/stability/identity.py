"""Whether the shipped MLP rule files play their families' validation games bit for bit with guard options changed
(twenty-ninth session: ``guard_slack`` 2, whose cap binds only before a block is armed; shipped in the thirtieth,
so the files as they were play with 10).

    python docs/sealed/stability/identity.py "{'guard_slack': 10.0}" quadratic 500 24 quadratic
    python docs/sealed/stability/identity.py "{'lift_growing': True}" digits 500 16 digits mgda   # shipped: False

Arguments: the options (a Python dict), the families, the steps, the validation draws, and optionally the files
(comma-separated tags; default every MLP file) and the consensus rules (default ``sum,mgda,upgrad``). Every draw is
played under each rule by each file as it is and with the options, and the final trunks are compared exactly; where
they differ, the games' final total losses (mean over the play seeds) are printed, as it is -> with the options.
Validation draws only: no key enters.
"""

from __future__ import annotations

import ast
import sys

import torch

from agents.learned import EngineDriver
from agents.learned.checkpoint import load_rule, pretrained_path, with_options
from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed_search import _game


def final_trunk(rule: object, game: object, seeds: list[int], steps: int) -> tuple[torch.Tensor, float]:
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))  # type: ignore[arg-type]
    with torch.no_grad():
        state, out = engine.reset(game, seeds)  # type: ignore[arg-type]
        memory = driver.start(out)
        for _ in range(steps):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)  # type: ignore[arg-type]
    return state.trunk, float(out.losses.sum(1).mean())


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    options, families, steps, draws = ast.literal_eval(argv[0]), argv[1].split(","), int(argv[2]), int(argv[3])
    names = argv[4].split(",") if len(argv) > 4 else ["quadratic", "regression", "digits", "general"]
    rules = argv[5].split(",") if len(argv) > 5 else ["sum", "mgda", "upgrad"]
    for family in families:
        for name in names:
            base = load_rule(pretrained_path("learned_mlp", name))[1]
            changed = with_options("learned_mlp", base, **options)
            differ = total = 0
            for consensus in rules:
                for draw, seeds in draw_games(family, "validation", draws, 1):
                    game = _game(family, draw, steps, consensus=consensus)
                    (a, loss_a), (b, loss_b) = (final_trunk(r, game, list(seeds), steps) for r in (base, changed))
                    total += 1
                    if not torch.equal(a, b):
                        differ += 1
                        print(f"  {consensus} {draw}: final loss {loss_a:.6g} -> {loss_b:.6g}", flush=True)
            print(f"{family} games, the {name} file {options}: {differ} of {total} differ", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
