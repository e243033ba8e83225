"""Informal transfer check, not the sealed protocol: multidigits (a ModuleSuite no file was trained on, 2 000 training
pairs), 100 steps under CONSENSUS (sum or mgda). Adam and heavy ball tuned over a small grid on two tuning seeds (the
learned files played as shipped now: a tool, whose figures move with the shipped files); all reported on seeds 0-7 as
L_T / L_0 (the suite has no known floor).

    python docs/sealed/portfolio/transfer_multidigits.py CONSENSUS
"""

import itertools
import sys
import time

import torch

from agents.learned import EngineDriver
from agents.learned.checkpoint import load_rule, pretrained_path
from mtg_env import engine
from mtg_env.bench.sealed_search import _train_totals, play_candidates
from mtg_env.consensus import consensus_rule
from mtg_env.suites import make_suite

torch.set_num_threads(1)
consensus = sys.argv[1] if len(sys.argv) > 1 else "sum"
suite = make_suite("multidigits", n_train=2000, n_test=500)
game = engine.Game(suite, consensus_rule(consensus, num_tasks=suite.num_tasks), horizon=100)
tune_seeds, test_seeds = [1000, 1001], list(range(8))
grid = [
    {"baseline": "adam", "lr": lr, "beta1": 0.9, "beta2": 0.999, "trunk_ratio": ratio, "schedule": schedule}
    for lr, ratio, schedule in itertools.product(
        [0.001, 0.003, 0.01, 0.03, 0.1], [0.1, 1.0], ["constant", "cosine", "warmup"]
    )
] + [
    {"baseline": "momentum", "lr": lr, "momentum": 0.9, "trunk_ratio": ratio, "schedule": schedule}
    for lr, ratio, schedule in itertools.product([0.01, 0.03, 0.1, 0.3], [0.1, 1.0], ["constant", "cosine"])
]
began = time.time()
start, final = play_candidates(game, [c for c in grid for _ in tune_seeds], tune_seeds * len(grid))
score = (final / start).view(len(grid), len(tune_seeds)).mean(1)
best = {
    b: grid[min((i for i, c in enumerate(grid) if c["baseline"] == b), key=lambda i: float(score[i]))]
    for b in ("adam", "momentum")
}
print("tuned", best, f"{time.time() - began:.0f}s", flush=True)
ratios = {}
for b, knobs in best.items():
    start, final = play_candidates(game, [knobs] * len(test_seeds), test_seeds)
    ratios[b] = final / start
files = {
    "portfolio": ("learned_portfolio", "general"),
    "mlp_general": ("learned_mlp", "general"),
    "digits_spec": ("learned_mlp", "digits"),
}
for label, tag in files.items():
    driver = EngineDriver(load_rule(pretrained_path(*tag))[1], game, log_step_range=(-12.0, 2.0))
    with torch.no_grad():
        state, out = engine.reset(game, test_seeds)
        first = _train_totals(game, state.heads, state.trunk)
        memory = driver.start(out)
        for _ in range(game.horizon):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
        ratios[label] = _train_totals(game, state.heads, state.trunk) / first
for label, ratio in ratios.items():
    print(f"{consensus} {label:<12} L_T/L_0 mean {float(ratio.mean()):.4f} median {float(ratio.median()):.4f}")
