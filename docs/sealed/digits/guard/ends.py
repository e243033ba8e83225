"""The digits specialist's full training loss (summed over tasks) at the end of 500-step games of the validation
stream, per variant of its options (twenty-ninth session).

    python docs/sealed/digits/guard/ends.py FILE 32 mgda 4 "{}" "{'guard': False}" "{'guard_memory': 0.5}"

FILE: a digits rule file (docs/sealed/general/k24/learned_mlp_digits_before.pt: the file the twenty-ninth session
compared; docs/sealed/stability/slack/learned_mlp_digits_before.pt: the one shipped at the end of that session, whose
``guard_memory_noisy_bounded`` 0.3 replaces ``guard_memory`` under ``mgda``: add ``'guard_memory_noisy_bounded': None``
to a variant to compare memories with it; docs/sealed/general/k26/learned_mlp_digits_before.pt: the one shipped in
the thirtieth session, which also plays ``guard_slack`` 2 and ``lift_growing`` False;
agents/learned/weights/learned_mlp_digits.pt: the one shipped now, whose heads since the thirty-first session play
Adam's step on minibatches: add ``'heads_adam': False`` to compare).

Prints each variant's four finals and their geometric mean. Validation draws only: no key enters.
"""

from __future__ import annotations

import ast
import sys

import torch

from agents.learned import EngineDriver
from agents.learned.checkpoint import load_rule, with_options
from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed_search import _game


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    path, argv = argv[0], argv[1:]
    hidden = tuple(int(x) for x in argv[0].split(","))
    consensus, count = argv[1], int(argv[2])
    base = load_rule(path)[1]
    games = [(o, s) for o, s in draw_games("digits", "validation", 24, 1) if tuple(o["hidden"]) == hidden][:count]
    for text in argv[3:]:
        options = ast.literal_eval(text)
        rule = with_options("learned_mlp", base, **options) if options else base
        ends = []
        for draw, seeds in games:
            game = _game("digits", draw, 500, consensus=consensus)
            with torch.no_grad():
                state, out = engine.reset(game, list(seeds))
                driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
                memory = driver.start(out)
                for _ in range(500):
                    actions, memory = driver.act(state, out, memory)
                    state, out = engine.step(game, state, actions)
                full = game.suite.batched_losses(state.heads, state.trunk, game.suite.train_batch())
            ends.append(float(full.sum()))
        geo = float(torch.tensor(ends).log().mean().exp())
        print(options, [round(e, 4) for e in ends], "geometric mean", round(geo, 4), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
