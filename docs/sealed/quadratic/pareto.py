"""Why play under ``upgrad`` stalls on quadratics (twenty-third session, tuning stream; no key).

The six tuning draws of ``plateau.py``, played by the same tuned heavy ball: at the end, the tasks' trunk gradients
g_m (the engine's Jacobian rows, with each head at its own step) measured two ways: ‖Σ_m g_m‖, zero only at the
training objective's minimum L*, and the norm of the min-norm point of their convex hull (the exact solver ``mgda``
plays, :func:`mtg_env.consensus.minnorm.min_norm_weights`), zero at any Pareto-stationary trunk. After 1600 steps under
``upgrad`` the second is 1e-5–7e-5 and the first 0.12–0.72, 6 000–28 000 times as large: play has reached the tasks'
Pareto set, away from L*, where ``upgrad``'s move (which conflicts with no task's gradient) is nearly zero. After 100
steps under ``sum`` the ratio is 2–5 (the heavy ball is then within 1e-5 of the start's gap of L*, and the gradients
are not small). So the ``upgrad`` cells' gap to L* measures how near L* play meets the Pareto set
(docs/results/learned.md, K19).

    python docs/sealed/quadratic/pareto.py > docs/sealed/quadratic/pareto.txt
"""

import torch

from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed_search import SearchPlayers, _game
from mtg_env.consensus.minnorm import min_norm_weights

torch.set_num_threads(1)
MOMENTUM = {"baseline": "momentum", "lr": 0.004641588833612782, "momentum": 0.9, "trunk_ratio": 1.0}
MOMENTUM["schedule"] = "constant"
print("draw rule steps: |sum_m g_m|, min-norm point of conv{g_m}, mean |g_m|, |head gradients|, min cosine(g_i, g_j)")
for d, (options, seeds) in enumerate(draw_games("quadratic", "tuning", 6, 1)):
    for consensus, horizon in [("upgrad", 100), ("upgrad", 1600), ("sum", 100)]:
        game = _game("quadratic", options, horizon, consensus=consensus)
        players = SearchPlayers(game, [MOMENTUM])
        with torch.no_grad():
            state, _ = engine.reset(game, list(seeds))
            for _ in range(horizon):
                state, _ = engine.step(game, state, players.act(state.head_grads, state.jacobian))
        g = state.jacobian[0].to(torch.float64)  # [M, n]
        w = min_norm_weights(g @ g.T)
        cos = torch.nn.functional.cosine_similarity(g[:, None], g[None], dim=-1)
        print(
            f"{d} {consensus:<6} {horizon:>4}: {g.sum(0).norm():.2e} {(w @ g).norm():.2e} {g.norm(dim=1).mean():.2e} "
            f"{state.head_grads[0].norm():.1e} {cos.min():+.2f}"
        )
