"""The sealed protocol's tuning players, grouped by baseline against the one formula, measured in one run.

Rung 0 of a cell's tuning plays every candidate of every baseline (2 400 under the shipped search space) as one batch
of games, one tuning draw at a time. Each step the players turn the games' gradients into actions:
``SearchPlayers(grouped=True)`` (the default) updates each run of one baseline with only its own state and branch,
``grouped=False`` is the one formula over every game in plain PyTorch (the reference; both give the same bits,
tests/test_sealed.py). This prints milliseconds a step of each, their ratio, and the engine's own step on the same
batch for scale (CPU time, one torch thread, interleaved rounds, glibc's allocator held steady).
Run: ``python benchmarks/tuning_players.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _timing import median_seconds_per_step, steady_allocator  # benchmarks/ is on sys.path when run as a script

from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed import BASELINE_CONTROLS, SearchPlayers, SearchSpace, _game


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["quadratic", "regression", "digits"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steady_allocator()
    space = SearchSpace()
    candidates = [c for b in BASELINE_CONTROLS for c in space.candidates(b)]
    print(f"{'family':<12}{'games':>6}{'one formula ms':>16}{'grouped ms':>12}{'speed-up':>10}{'engine ms':>11}")
    for family in args.families:
        sec = _seconds(family, candidates, args.steps, args.rounds)
        ms = {name: 1e3 * value for name, value in sec.items()}
        print(f"{family:<12}{len(candidates):>6}{ms['one']:>16.2f}{ms['grouped']:>12.2f}"
              f"{ms['one'] / ms['grouped']:>10.2f}{ms['engine']:>11.2f}")  # fmt: skip


def _seconds(family: str, candidates: list[dict[str, Any]], steps: int, rounds: int) -> dict[str, float]:
    """Seconds a step of each player and of the engine, every candidate on the family's first tuning draw."""
    options, seeds = draw_games(family, "tuning", 1, 1)[0]
    game = _game(family, options, 100)
    with torch.no_grad():
        state, _ = engine.reset(game, [seeds[0]] * len(candidates))
        one, grouped = SearchPlayers(game, candidates, grouped=False), SearchPlayers(game, candidates)
        actions = grouped.act(state.head_grads, state.jacobian)
        runners = {
            "one": lambda: one.act(state.head_grads, state.jacobian),
            "grouped": lambda: grouped.act(state.head_grads, state.jacobian),
            "engine": lambda: engine.step(game, state, actions),
        }
        return median_seconds_per_step(runners, steps=steps, rounds=rounds, warmup=1)


if __name__ == "__main__":
    main()
