"""Where play under ``upgrad`` goes on quadratics, on the tuning stream (twenty-third session; no key).

Six tuning-stream quadratic draws (one seed each) played for 100, 400 and 1600 steps under ``upgrad`` and under ``sum``
by the tuned heavy ball of the ``upgrad`` 1× cell (K15's knobs: lr 0.00464, μ 0.9, constant, ratio 1) and the shipped
quadratic specialist; each printed figure is a game's (L_T − L*) / (L_0 − L*), L* the closed-form minimum of the
training objective. Under ``sum`` both reach round-off (below 1e-16) by 400 steps. Under ``upgrad`` neither does by
1600: from 100 to 1600 steps the heavy ball's gaps fall 5–210× and the specialist's 0.6–33× (one rose: its schedules
follow the horizon). So a cell under ``upgrad`` scores where play has got to on a slow descent, not a race to L*;
``pareto.py`` shows why: play has met the tasks' Pareto set, away from L*, where ``upgrad`` barely moves the trunk
(docs/results/learned.md, K19).

    python docs/sealed/quadratic/plateau.py > docs/sealed/quadratic/plateau.txt
"""

import numpy as np
import torch

from agents.learned.checkpoint import load_rule
from agents.learned.family import draw_games
from mtg_env.bench.sealed import _Floors
from mtg_env.bench.sealed_search import _game, play_candidates, play_rule

torch.set_num_threads(1)
# The quadratic specialist as shipped then (before guard_slack).
RULE = load_rule("docs/sealed/stability/slack/learned_mlp_quadratic_before.pt")[1]
MOMENTUM = {
    "baseline": "momentum",
    "lr": 0.004641588833612782,
    "momentum": 0.9,
    "trunk_ratio": 1.0,
    "schedule": "constant",
}
floors = _Floors(None)
draws = draw_games("quadratic", "tuning", 6, 1)
print("rule, steps: each game's (L_T - L*) / (L_0 - L*), heavy ball | learned specialist")
for consensus in ["upgrad", "sum"]:
    for horizon in [100, 400, 1600]:
        rows = []
        for options, seeds in draws:
            floor = floors.get("quadratic", options).value
            s0, f0 = play_candidates(_game("quadratic", options, horizon, consensus=consensus), [MOMENTUM], list(seeds))
            s1, f1 = play_rule(RULE, "quadratic", options, horizon, list(seeds), consensus=consensus)
            rows.append(((f0.item() - floor) / (s0.item() - floor), (f1.item() - floor) / (s1.item() - floor)))
        r = np.array(rows)
        fmt = {"float_kind": lambda x: f"{x:8.1e}"}
        heavy, learned = (np.array2string(r[:, i], formatter=fmt) for i in (0, 1))
        print(f"{consensus:<6} {horizon:>4}  {heavy} | {learned}")
