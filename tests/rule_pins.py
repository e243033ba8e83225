"""Pinned trajectories of every stateful consensus rule, through the public env API (a table of known-good values).

``python -m tests.rule_pins`` writes ``tests/data/rule_pins.pt`` (run it only when a change of results is
intended, and say so); ``tests/test_rule_pins.py`` replays every case and compares. The cases play the lone env
(the rule's state in one game), the vector env (three games, autoresets) and a measurement (the consensus
residual, which reads the rule's state without moving it).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mtg_env
from tests.pins import write_pins

PIN_FILE = Path(__file__).resolve().parent / "data" / "rule_pins.pt"

_REGRESSION: dict[str, Any] = {"suite": "regression", "trunk": "mlp", "hidden": 8}
_QUADRATIC: dict[str, Any] = {"suite": "quadratic"}
_DB_MTL: dict[str, Any] = {"beta": 0.9, "beta_sigma": 0.5}

#: name -> (env config, steps): every stateful rule (FairGrad is stateless), float64 or float32 (``_f32``).
CASES: dict[str, tuple[dict[str, Any], int]] = {
    **{
        name: ({**_REGRESSION, "consensus": name, "dtype": "float64"}, 8)
        for name in ("uw", "dwa", "famo", "gradvac", "gls", "gradnorm")
    },
    # DB-MTL with beta_sigma = 0.5 (the default is LibMTL's 0 since env v5): the pins exercise the k^sigma schedule.
    "db_mtl": ({**_REGRESSION, "consensus": "db_mtl", "consensus_kwargs": _DB_MTL, "dtype": "float64"}, 8),
    "uw_sgd_f32": ({**_REGRESSION, "consensus": "uw", "consensus_kwargs": {"optimizer": "sgd", "lr": 0.1}}, 8),
    "famo_min_losses_f32": (
        {**_REGRESSION, "consensus": "famo", "consensus_kwargs": {"min_losses": [-0.5, -0.25, -1.0], "w_lr": 0.2}},
        8,
    ),
    "famo_adam_f32": (
        {
            **_REGRESSION,
            "consensus": "famo",
            "consensus_kwargs": {"w_lr": 0.1},
            "trunk_optimizer": "adam",
            "trunk_optimizer_kwargs": {"lr": 0.01},
            "head_optimizer": "momentum",
            "head_optimizer_kwargs": {"lr": 0.01},
        },
        8,
    ),
    "gradvac_vaccinated_f32": ({**_REGRESSION, "consensus": "gradvac", "consensus_kwargs": {"ema": "vaccinated"}}, 8),
    "gradnorm_f32": ({**_REGRESSION, "consensus": "gradnorm", "consensus_kwargs": {"lr": 0.05}}, 8),
    "db_mtl_f32": ({**_REGRESSION, "consensus": "db_mtl", "consensus_kwargs": _DB_MTL}, 8),
    "nash_mtl": ({**_QUADRATIC, "consensus": "nash_mtl", "dtype": "float64"}, 6),
    "nash_mtl_every2_f32": (
        {**_QUADRATIC, "consensus": "nash_mtl", "consensus_kwargs": {"update_weights_every": 2}},
        6,
    ),
    "pcgrad": ({**_REGRESSION, "consensus": "pcgrad", "dtype": "float64"}, 6),
}


def _env(config: dict[str, Any], num_games: int | None = None) -> Any:
    full = {"action_mode": "step_size", "step_size_units": "log", "log_step_range": (-6.0, 0.0), **config}
    if num_games is None:
        return mtg_env.parallel_env(max_cycles=50, **full)
    return mtg_env.vector_env(num_games=num_games, max_cycles=4, **full)


def lone_trajectory(config: dict[str, Any], steps: int) -> dict[str, torch.Tensor]:
    """Rewards, trunks and heads of a lone env after each step, with actions that read the observation; then the
    consensus residual (a measurement of the rule at the last state)."""
    env = _env(config)
    obs, _ = env.reset(seed=11)
    rewards, trunks, heads = [], [], []
    for _ in range(steps):
        actions = {a: np.clip(-2.5 - 0.05 * o[:2], -6.0, 0.0) for a, o in obs.items()}
        obs, r, *_ = env.step(actions)
        rewards.append(torch.tensor(list(r.values()), dtype=torch.float64))
        h, t = env.get_parameters()
        heads.append(h.to(torch.float64).cpu())
        trunks.append(t.to(torch.float64).cpu())
    residual = torch.tensor([env.metrics("train")["game"]["consensus_residual"]], dtype=torch.float64)
    return {
        "rewards": torch.stack(rewards),
        "heads": torch.stack(heads),
        "trunk": torch.stack(trunks),
        "residual": residual,
    }


def vector_trajectory(config: dict[str, Any], steps: int) -> dict[str, torch.Tensor]:
    """Rewards of three games of the vector env over ``steps + 2`` steps (horizon 4: autoresets included)."""
    venv = _env(config, num_games=3)
    venv.reset(seed=40)
    rewards = []
    for t in range(steps + 2):
        actions = torch.full((3, venv.num_tasks, 2), -2.0 - 0.3 * (t % 3), dtype=venv.dtype)
        actions[1] -= 0.5
        _, r, *_ = venv.step(actions)
        rewards.append(r.to(torch.float64).cpu())
    return {"vector_rewards": torch.stack(rewards)}


def trajectory(name: str) -> dict[str, torch.Tensor]:
    config, steps = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Nash-MTL's solver remarks: the pinned numbers are what counts
        return {**lone_trajectory(config, steps), **vector_trajectory(config, steps)}


def write() -> None:
    write_pins(PIN_FILE, CASES, trajectory)


if __name__ == "__main__":
    write()
