"""Do the learned rules diverge on ill-conditioned quadratics, at long horizons, under other consensus rules?

    python scripts/learned_stability_probe.py [WEIGHTS] [GAMES] [--no-guard]

For each condition number (1e2 … 1e5), consensus rule (sum, mean, mgda, upgrad) and horizon (100, 1000), plays GAMES
quadratic games (3 tasks, heads of 2, a trunk of 8, float64; game seeds 1000, 1001, …) with every player driven by
the rule in WEIGHTS (default: the shipped quadratic MLP rule), and prints how many diverged (the engine's
divergence: a non-finite value or a loss 1000 times its start) and how many ended with a total loss above their
start. ``--no-guard`` plays the rule without its curvature guard (as it was meta-trained). The issue-23 tables of
before and after the guard came from this script (6 games per cell).
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import replace

import torch

from agents.learned import EngineDriver, StepRule
from agents.learned.checkpoint import load_rule
from agents.learned.portfolio import PortfolioRule
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.suites import QuadraticSuite

CONDITIONS = (1e2, 1e3, 1e4, 1e5)
RULES = ("sum", "mean", "mgda", "upgrad")
HORIZONS = (100, 1000)


def probe(weights: str, games: int, guard: bool) -> None:
    _, rule, _ = load_rule(weights)
    if isinstance(rule, PortfolioRule):
        raise SystemExit(f"{weights} is a portfolio: probe each of its experts' files (agents/learned/weights/*.pt)")
    if not guard:
        rule.config = replace(rule.config, guard=False)
    mode = "step_size" if isinstance(rule, StepRule) else "update"
    for cond in CONDITIONS:
        for name in RULES:
            for horizon in HORIZONS:
                diverged = grew = 0
                start = time.perf_counter()
                for g in range(games):
                    suite = QuadraticSuite(
                        num_tasks=3, head_dim=2, trunk_dim=8, condition=cond, game_seed=1000 + g, dtype="float64"
                    )
                    game = Game(suite, consensus_rule(name, num_tasks=3), action_mode=mode, horizon=horizon)
                    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
                    with torch.no_grad():
                        state, out = engine.reset(game, [g])
                        first = float(out.losses.sum())
                        memory = driver.start(out)
                        for _ in range(horizon):
                            actions, memory = driver.act(state, out, memory)
                            state, out = engine.step(game, state, actions)
                            if bool(out.diverged.any()):
                                break
                    if bool(out.diverged.any()):
                        diverged += 1
                    elif float(out.losses.sum()) > first:
                        grew += 1
                seconds = time.perf_counter() - start
                print(
                    f"cond {cond:.0e} {name:7s} T={horizon:5d}: diverged {diverged}/{games}, loss grew {grew}/{games} "
                    f"({seconds:.1f}s)",
                    flush=True,
                )


if __name__ == "__main__":
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # solver remarks of mgda/upgrad on degenerate proposals: the counts are what count
    args = [a for a in sys.argv[1:] if a != "--no-guard"]
    probe(
        args[0] if args else "agents/learned/weights/learned_mlp_quadratic.pt",
        int(args[1]) if len(args) > 1 else 6,
        guard="--no-guard" not in sys.argv[1:],
    )
