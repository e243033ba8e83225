"""Why play under ``upgrad`` stalls on quadratics (twenty-third session, tuning stream; no key).

The six tuning draws of ``plateau.py``, played by the tuned heavy ball of the ``upgrad`` 1× cell under ``upgrad`` and
``sum`` and by the ``mgda`` 1× cell's (K15's knobs) under ``mgda``: each row gives the game's (L_T − L*) / (L_0 − L*)
and, at the end, the tasks' trunk gradients g_m (the engine's Jacobian rows, each head at its own step) measured two
ways: ‖Σ_m g_m‖, zero only at the training objective's minimum L*, and the norm of the min-norm point of their convex
hull (the exact solver ``mgda`` plays, :func:`mtg_env.consensus.minnorm.min_norm_weights`), zero at any
Pareto-stationary trunk. After 1600 steps under ``upgrad`` the second is 1e-5–7e-5 and the first 0.12–0.72, 6 000–28 000
times as large: play has reached the tasks' Pareto set, away from L*, where ``upgrad``'s move (which conflicts with no
task's gradient) is nearly zero. Under ``mgda``, whose move is that min-norm point, play stops on the Pareto set (1e-14
or below after 1600 steps) with a gap of 1.5e-3 to 0.14 of the start's, more than after 100 steps in five of six games
(its warmup spans the horizon). After 100 steps under ``sum`` the ratio is 2–5 (the gap is then about 1e-5 of the
start's; the gradients are not small). So the ``upgrad`` and ``mgda`` cells' gap to L* measures how near L* play meets
the Pareto set (docs/results/learned.md, K19).

    python docs/sealed/quadratic/pareto.py > docs/sealed/quadratic/pareto.txt
"""

import torch

from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed import _Floors
from mtg_env.bench.sealed_search import SearchPlayers, _game, _train_totals
from mtg_env.consensus.minnorm import min_norm_weights

torch.set_num_threads(1)
MOMENTUM = {
    "baseline": "momentum",
    "lr": 0.004641588833612782,
    "momentum": 0.9,
    "trunk_ratio": 1.0,
    "schedule": "constant",
}
# the mgda 1x cell's tuned heavy ball (K15)
MGDA = {"baseline": "momentum", "lr": 0.046415888336127774, "momentum": 0.9, "trunk_ratio": 0.1, "schedule": "warmup"}
PLAYS = [
    ("upgrad", 100, MOMENTUM),
    ("upgrad", 1600, MOMENTUM),
    ("sum", 100, MOMENTUM),
    ("mgda", 100, MGDA),
    ("mgda", 1600, MGDA),
]
floors = _Floors(None)
print(
    "draw rule steps: (L_T - L*) / (L_0 - L*); |sum_m g_m|, the min-norm point of conv{g_m}, mean |g_m|, "
    "|head gradients|, min cosine(g_i, g_j)"
)
for d, (options, seeds) in enumerate(draw_games("quadratic", "tuning", 6, 1)):
    floor = floors.get("quadratic", options).value
    for consensus, horizon, knobs in PLAYS:
        game = _game("quadratic", options, horizon, consensus=consensus)
        players = SearchPlayers(game, [knobs])
        with torch.no_grad():
            state, _ = engine.reset(game, list(seeds))
            start = _train_totals(game, state.heads, state.trunk).item()
            for _ in range(horizon):
                state, _ = engine.step(game, state, players.act(state.head_grads, state.jacobian))
            final = _train_totals(game, state.heads, state.trunk).item()
        g = state.jacobian[0].to(torch.float64)  # [M, n]
        w = min_norm_weights(g @ g.T)
        cos = torch.nn.functional.cosine_similarity(g[:, None], g[None], dim=-1)
        print(
            f"{d} {consensus:<6} {horizon:>4}: {(final - floor) / (start - floor):.1e}; {g.sum(0).norm():.2e} "
            f"{(w @ g).norm():.2e} {g.norm(dim=1).mean():.2e} {state.head_grads[0].norm():.1e} {cos.min():+.2f}"
        )
