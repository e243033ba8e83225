"""What a learned policy's numbers mean: the same episodes played by a random policy and by the paper's agent.

A return is −Σ_t Σ_m ℓ_m over one episode (every agent's rewards summed, RLlib's episode return); higher is better.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import mtg_env
from agents import make_agents


def episode(game: dict[str, Any], seed: int, act: Callable[[str, np.ndarray], np.ndarray]) -> tuple[float, float]:
    """(return, mean final loss) of one episode of ``parallel_env(**game)`` where ``act(agent, obs)`` plays."""
    env = mtg_env.parallel_env(**game)
    obs, infos = env.reset(seed=seed)
    total = 0.0
    while env.agents:
        obs, rewards, _, _, infos = env.step({a: act(a, obs[a]) for a in env.agents})
        total += float(sum(rewards.values()))
    return total, float(np.mean([i["loss"] for i in infos.values()]))


def references(game: dict[str, Any], seeds: list[int], lr: float = 0.1) -> dict[str, tuple[float, float]]:
    """Mean (return, final loss) over ``seeds`` of a random policy (uniform in the Box) and of the paper's
    GradientAgent(lr) (Eq. 23-24), on the game ``game``."""
    out: dict[str, tuple[float, float]] = {}
    rng = np.random.default_rng(0)
    probe = mtg_env.parallel_env(**game)
    space = {a: probe.action_space(a) for a in probe.possible_agents}
    random = [
        episode(game, s, lambda a, o: rng.uniform(space[a].low, space[a].high).astype(space[a].dtype)) for s in seeds
    ]
    out["random policy"] = tuple(np.mean(random, axis=0))  # type: ignore[assignment]
    played = []
    for s in seeds:
        env = mtg_env.parallel_env(**game)
        players = make_agents("gradient", env, lr=lr)
        obs, infos = env.reset(seed=s)
        for a, p in players.items():
            p.reset(obs[a], infos[a], env.action_space(a))
        total = 0.0
        while env.agents:
            obs, rewards, _, _, infos = env.step({a: players[a].act(obs[a], infos[a]) for a in env.agents})
            total += float(sum(rewards.values()))
        played.append((total, float(np.mean([i["loss"] for i in infos.values()]))))
    out[f"paper's GradientAgent(lr={lr:g})"] = tuple(np.mean(played, axis=0))  # type: ignore[assignment]
    return out


def print_table(rows: dict[str, tuple[float, float]], what: str) -> None:
    """One line per policy: mean episode return and mean final loss."""
    print(f"{what}")
    print(f"  {'policy':<34}{'return':>12}{'final loss':>12}")
    for name, (ret, loss) in rows.items():
        print(f"  {name:<34}{ret:>12.3f}{loss:>12.4f}")
