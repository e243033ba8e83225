"""The digits specialist's trunk over 500-step games of the validation stream (twenty-ninth session): the trunk's move,
its heavy-ball log step and brake, and each block's guard state (‖s‖, armed, L̂) at a few steps.

    python docs/sealed/digits/guard/trace.py FILE 32 mgda 2                      # hidden (32,), mgda, 2 draws
    python docs/sealed/digits/guard/trace.py FILE 32 mgda 1 "{'guard': False}"   # FILE's rule with options changed

FILE: a digits rule file (docs/sealed/general/k24/learned_mlp_digits_before.pt: the file the twenty-ninth session
traced; agents/learned/weights/learned_mlp_digits.pt: the one shipped now, whose heads play Adam's step on minibatches
since the thirty-first session).

Blocks are [head 0, trunk 0, head 1, trunk 1, ...]. Validation draws only: no key enters.
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

MARKS = {0, 10, 25, 50, 100, 150, 200, 250, 300, 400, 499}


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    path, argv = argv[0], argv[1:]
    hidden = tuple(int(x) for x in argv[0].split(","))
    consensus, count = argv[1], int(argv[2])
    options = ast.literal_eval(argv[3]) if len(argv) > 3 else {}
    rule = load_rule(path)[1]
    rule = with_options("learned_mlp", rule, **options) if options else rule
    games = [(o, s) for o, s in draw_games("digits", "validation", 24, 1) if tuple(o["hidden"]) == hidden][:count]
    for draw, seeds in games:
        game = _game("digits", draw, 500, consensus=consensus)
        print("draw", seeds, draw)
        with torch.no_grad():
            state, out = engine.reset(game, list(seeds))
            driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
            memory = driver.start(out)
            for t in range(500):
                actions, memory = driver.act(state, out, memory)
                before = state.trunk
                state, out = engine.step(game, state, actions)
                if t in MARKS:
                    move = float((state.trunk - before).norm())
                    print(
                        f"  t={t:4d} loss {float(out.losses.sum()):.4f} move {move:.2e} "
                        f"log_step {float(memory['log_step'][0, 0]):.2f} brake {float(memory['brake'][0, 0]):.2f}"
                    )
                    if "guard_s" in memory:
                        print(
                            "     |s|", memory["guard_s"][0].numpy().round(4), "armed",
                            memory["guard_armed"][0].numpy(), "L", memory["guard_l"][0].numpy().round(1),
                        )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
