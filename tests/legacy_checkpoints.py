"""Checkpoints written before the house was layered (commit 756ea33, env v6), with what follows them.

``python -m tests.legacy_checkpoints OUT`` writes, for each case, a mid-episode ``state_dict`` (after 4 steps of
fixed actions) and the next 4 steps' observations and rewards, played by the code on ``PYTHONPATH``. The file
``tests/data/checkpoints_756ea33.pt`` was written so from a checkout of 756ea33 (before ``mtg_env/env.py`` became
``mtg_env/envs/parallel.py`` and the consensus, rng and checkpoint modules moved); ``tests/test_legacy_checkpoints.py``
loads each into today's env and checks that it continues exactly as the old code did. It uses only the public
API (``mtg_env.parallel_env``, ``state_dict``, ``load_state_dict``), which the move kept.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch

import mtg_env
from tests.pins import platform_tag

#: name -> (env options, seed): a stateful loss-aware rule (float64), Nash-MTL's warm start, an optimizer's state.
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "regression_famo_f64": (
        {"suite": "regression", "trunk": "mlp", "hidden": 8, "consensus": "famo", "dtype": "float64",
         "action_mode": "step_size"},
        3,
    ),
    "quadratic_nash_mtl": ({"suite": "quadratic", "consensus": "nash_mtl", "action_mode": "step_size"}, 5),
    "regression_adam_update": (
        {"suite": "regression", "consensus": "mean", "trunk_optimizer": "adam",
         "trunk_optimizer_kwargs": {"lr": 0.01}, "action_mode": "update"},
        7,
    ),
}  # fmt: skip
STEPS = 4


def actions(env: Any, k: int) -> dict[str, np.ndarray]:
    """Fixed actions inside each Box (a deterministic pattern over coordinates, agents and steps)."""
    out = {}
    for i, agent in enumerate(env.agents):
        space = env.action_space(agent)
        lo = np.maximum(np.asarray(space.low, dtype=np.float64), -1.0)
        hi = np.minimum(np.asarray(space.high, dtype=np.float64), 1.0)
        frac = (np.arange(space.shape[0]) * 0.37 + 0.11 * (i + 1) + 0.05 * k) % 1.0
        out[agent] = (lo + frac * (hi - lo) * 0.5 + (hi - lo) * 0.25).astype(space.dtype)
    return out


def continuation(env: Any) -> list[torch.Tensor]:
    """The next ``STEPS`` steps from where ``env`` stands: each step's observations [M, d] and rewards [M]."""
    played = []
    for k in range(STEPS, 2 * STEPS):
        obs, rewards, *_ = env.step(actions(env, k))
        played.append(torch.from_numpy(np.stack([obs[a] for a in sorted(obs)])))
        played.append(torch.tensor([float(rewards[a]) for a in sorted(rewards)], dtype=torch.float64))
    return played


def new_env(name: str) -> Any:
    config, seed = CASES[name]
    env = mtg_env.parallel_env(max_cycles=50, **config)
    env.reset(seed=seed)
    return env


def write(path: str) -> None:
    torch.set_num_threads(1)
    data: dict[str, Any] = {"platform": platform_tag(), "cases": {}}
    for name in CASES:
        env = new_env(name)
        for k in range(STEPS):
            env.step(actions(env, k))
        data["cases"][name] = {"checkpoint": env.state_dict(), "after": continuation(env)}
    torch.save(data, path)


if __name__ == "__main__":
    write(sys.argv[1])
