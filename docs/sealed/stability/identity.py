"""Whether the shipped MLP rule files play their families' validation games bit for bit with guard options changed
(twenty-ninth session: ``guard_slack`` 2, whose cap binds only before a block is armed).

    python docs/sealed/stability/identity.py "{'guard_slack': 2.0}" quadratic,regression 500 8
    python docs/sealed/stability/identity.py "{'guard_slack': 2.0}" digits 500 4

Arguments: the options (a Python dict), the families, the steps, the validation draws. Every draw is played under
``sum``, ``mgda`` and ``upgrad`` by each shipped file as it is and with the options, and the final trunks are compared
exactly. Validation draws only: no key enters.
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


def final_trunk(rule: object, game: object, seeds: list[int], steps: int) -> torch.Tensor:
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))  # type: ignore[arg-type]
    with torch.no_grad():
        state, out = engine.reset(game, seeds)  # type: ignore[arg-type]
        memory = driver.start(out)
        for _ in range(steps):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)  # type: ignore[arg-type]
    return state.trunk


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    options, families, steps, draws = ast.literal_eval(argv[0]), argv[1].split(","), int(argv[2]), int(argv[3])
    for family in families:
        for name in ("quadratic", "regression", "digits", "general"):
            base = load_rule(pretrained_path("learned_mlp", name))[1]
            changed = with_options("learned_mlp", base, **options)
            differ = total = 0
            for consensus in ("sum", "mgda", "upgrad"):
                for draw, seeds in draw_games(family, "validation", draws, 1):
                    game = _game(family, draw, steps, consensus=consensus)
                    a, b = (final_trunk(r, game, list(seeds), steps) for r in (base, changed))
                    total += 1
                    differ += int(not torch.equal(a, b))
            print(f"{family} games, the {name} file {options}: {differ} of {total} differ", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
