"""Pinned trajectories of every baseline player, in every form it has (a table of known-good values).

``python -m tests.agent_pins`` writes ``tests/data/agent_pins.pt`` (run it only when a change of results is
intended, and say so); ``tests/test_agent_pins.py`` replays every case and compares. Two kinds of case:

* ``env/...``: one player per agent (:func:`agents.make_agents`, or :class:`agents.SelfishAgent` around one)
  plays the public parallel env through :func:`agents.run_episode`, in every action mode the player supports,
  float32 and float64, on the quadratic and regression suites; the pins are each step's actions, the losses,
  rewards, clipped steps and the final parameters.
* ``batched/...``: :class:`agents.batched.BatchedBaseline` plays B games of the engine at once, one step size per
  game; the pins are each step's head updates, trunk and losses and the final heads (in the game's dtype).
  ``tuning/...`` plays a mixed population (a selfish deviator among them) through the batched path of
  :func:`mtg_env.tuning.play`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mtg_env
from agents import AGENTS, SelfishAgent, make_agents, run_episode
from agents.batched import BatchedBaseline
from mtg_env import engine
from mtg_env.tuning import Baseline, Selfish, Workload, play
from tests.pins import write_pins

PIN_FILE = Path(__file__).resolve().parent / "data" / "agent_pins.pt"

STEPS = 10
SUITES: dict[str, dict[str, Any]] = {
    "quadratic": {"suite": "quadratic", "max_update": 100.0},
    "regression": {"suite": "regression", "trunk": "mlp", "hidden": 4, "consensus": "mean", "max_update": 10.0},
}
DTYPES = ("float32", "float64")

#: Env players: case stem -> (agent name, its arguments, action modes it plays). ``selfish_*`` wraps the named
#: player in a SelfishAgent (its ``scale`` among the arguments); ``*_clipped`` plays a narrow action space.
PLAYERS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "gradient": ("gradient", {"lr": 0.05}, ("update", "step_size")),
    "gradient_trunk_lr": ("gradient", {"lr": 0.05, "trunk_lr": 0.02}, ("update", "step_size")),
    "gradient_robbins_monro": ("gradient", {"lr": 0.1, "schedule": "robbins_monro"}, ("update", "step_size")),
    "gradient_robbins_monro_p1": (
        "gradient",
        {"lr": 0.1, "schedule": "robbins_monro", "power": 1.0},
        ("update", "step_size"),
    ),
    "gradient_summable": ("gradient", {"lr": 0.2, "schedule": "summable"}, ("update", "step_size")),
    "gradient_summable_p2": (
        "gradient",
        {"lr": 0.2, "trunk_lr": 0.3, "schedule": "summable", "power": 2.0},
        ("update", "step_size"),
    ),
    "momentum": ("momentum", {"lr": 0.02, "momentum": 0.8}, ("update",)),
    "momentum_trunk_lr": ("momentum", {"lr": 0.02, "trunk_lr": 0.005}, ("update",)),
    "adam": ("adam", {"lr": 0.01}, ("update", "step_size")),
    "adam_betas": (
        "adam",
        {"lr": 0.02, "trunk_lr": 0.005, "betas": (0.5, 0.9), "eps": 1e-6},
        ("update", "step_size"),
    ),
    "rmsprop": ("rmsprop", {"lr": 0.005}, ("update", "step_size")),
    "rmsprop_alpha": ("rmsprop", {"lr": 0.01, "trunk_lr": 0.002, "alpha": 0.9, "eps": 1e-6}, ("update", "step_size")),
    "momentum_clipped": ("momentum", {"lr": 0.05}, ("update",)),
    "adam_clipped": ("adam", {"lr": 0.05}, ("update", "step_size")),
    "selfish_gradient": ("gradient", {"lr": 0.05, "scale": 3.0}, ("update",)),
    "selfish_adam": ("adam", {"lr": 0.01, "betas": (0.8, 0.99), "scale": 2.0}, ("update",)),
}

#: Batched players: case stem -> (agent name, its arguments, trunk ratio), each over :data:`BATCH_LRS`.
BATCHED: dict[str, tuple[str, dict[str, Any], float | None]] = {
    "gradient": ("gradient", {}, None),
    "gradient_robbins_monro": ("gradient", {"schedule": "robbins_monro"}, 0.5),
    "gradient_summable_p2": ("gradient", {"schedule": "summable", "power": 2.0}, None),
    "momentum": ("momentum", {"momentum": 0.8}, None),
    "momentum_ratio": ("momentum", {}, 0.25),
    "adam": ("adam", {}, None),
    "adam_betas": ("adam", {"betas": (0.5, 0.9), "eps": 1e-6}, 0.25),
    "rmsprop": ("rmsprop", {}, None),
    "rmsprop_alpha": ("rmsprop", {"alpha": 0.9, "eps": 1e-6}, 2.0),
}
BATCH_LRS = (0.005, 0.02, 0.08)
BATCH_SEEDS = [3, 4, 5]


#: The narrow action space of the ``*_clipped`` players: most of their steps are clipped.
CLIPPED: dict[str, Any] = {"max_update": 0.5, "log_step_range": (-5.0, -1.0)}


def _env_options(suite: str, dtype: str, mode: str, clipped: bool = False) -> dict[str, Any]:
    """The env of a case: float64 games play raw update units and log step sizes, float32 ones the defaults
    (relative units, unit step sizes), so both codecs are pinned."""
    units = {"update_units": "raw", "step_size_units": "log"} if dtype == "float64" else {}
    return {
        **SUITES[suite],
        "dtype": dtype,
        "action_mode": mode,
        "max_cycles": STEPS,
        "device": "cpu",
        "log_step_range": (-10.0, 1.0),
        **units,
        **(CLIPPED if clipped else {}),
    }


def _cases() -> dict[str, tuple[str, ...]]:
    cases: dict[str, tuple[str, ...]] = {}
    for stem, (_, _, modes) in PLAYERS.items():
        for suite in SUITES:
            for dtype in DTYPES:
                for mode in modes:
                    cases[f"env/{stem}/{suite}/{dtype}/{mode}"] = ("env", stem, suite, dtype, mode)
    for stem in BATCHED:
        for suite in SUITES:
            for dtype in DTYPES:
                cases[f"batched/{stem}/{suite}/{dtype}"] = ("batched", stem, suite, dtype)
    for suite in SUITES:
        cases[f"tuning/mixed/{suite}"] = ("tuning", suite)
    return cases


#: Case name -> its description (kind first).
CASES: dict[str, tuple[str, ...]] = _cases()


class _Recorder:
    """A policy that plays ``inner`` and keeps every action it returns (as float64)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.actions: list[np.ndarray] = []

    def reset(self, observation: np.ndarray, info: Any, action_space: Any) -> None:
        self.inner.reset(observation, info, action_space)

    def act(self, observation: np.ndarray, info: Any) -> np.ndarray:
        action = self.inner.act(observation, info)
        self.actions.append(np.array(action))
        return action

    @property
    def clipped_steps(self) -> int:
        return int(self.inner.clipped_steps)


def env_trajectory(stem: str, suite: str, dtype: str, mode: str) -> dict[str, torch.Tensor]:
    name, kwargs, _ = PLAYERS[stem]
    env = mtg_env.parallel_env(**_env_options(suite, dtype, mode, stem.endswith("_clipped")))
    if stem.startswith("selfish_"):
        own = dict(kwargs)
        scale = own.pop("scale")
        players: dict[str, Any] = {a: SelfishAgent(AGENTS[name](**own), scale) for a in env.possible_agents}
    else:
        players = make_agents(name, env, **kwargs)
    recorders = {a: _Recorder(p) for a, p in players.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipped actions warn: the pinned numbers are what counts
        history = run_episode(env, recorders, seed=7, evaluate=False)
    heads, trunk = env.get_parameters()
    agents = list(env.possible_agents)
    return {
        "actions": torch.as_tensor(np.stack([np.stack(recorders[a].actions) for a in agents], 1)),
        "losses": torch.as_tensor(history.losses),
        "rewards": torch.as_tensor(history.rewards),
        "clipped_steps": torch.tensor([history.clipped_steps[a] for a in agents], dtype=torch.float64),
        "heads": heads,
        "trunk": trunk,
    }


def batched_trajectory(stem: str, suite: str, dtype: str) -> dict[str, torch.Tensor]:
    name, kwargs, ratio = BATCHED[stem]
    env = mtg_env.parallel_env(**_env_options(suite, dtype, "update"))
    game = env.game
    player = BatchedBaseline(name, game, torch.tensor(BATCH_LRS), ratio, **kwargs)
    state, out = engine.reset(game, BATCH_SEEDS)
    head_updates, trunks, losses = [], [], [out.losses]
    with torch.no_grad():
        for _ in range(STEPS):
            h_up, props = player.act(state.head_grads, state.jacobian)
            head_updates.append(h_up)
            state, out = engine.step(game, state, (h_up, props))
            trunks.append(state.trunk)  # the consensus of the proposals, each step
            losses.append(out.losses)
    return {
        "head_updates": torch.stack(head_updates, 1),
        "trunks": torch.stack(trunks, 1),
        "losses": torch.stack(losses, 1),
        "heads": state.heads,
    }


def tuning_trajectory(suite: str) -> dict[str, torch.Tensor]:
    options = tuple((k, v) for k, v in SUITES[suite].items() if k not in ("suite", "consensus", "max_update"))
    workload = Workload(suite, SUITES[suite].get("consensus", "sum"), horizon=STEPS, suite_options=options)
    players: list[Any] = [
        Selfish(Baseline("adam", betas=(0.8, 0.99)), 3.0),
        Baseline("momentum", trunk_ratio=0.5, momentum=0.5),
        Baseline("rmsprop"),
    ]
    lrs = [[0.02, 0.01, 0.005], [0.05, 0.002, 0.01]]
    results = play(workload, players, lrs, [1, 2], batched=True)
    return {
        "curves": torch.tensor([r.task_curves for r in results], dtype=torch.float64),
        "final_train_loss": torch.tensor([r.final_train_loss or [] for r in results], dtype=torch.float64),
    }


def trajectory(name: str) -> dict[str, torch.Tensor]:
    kind, *rest = CASES[name]
    if kind == "env":
        return env_trajectory(*rest)
    if kind == "batched":
        return batched_trajectory(*rest)
    return tuning_trajectory(*rest)


def case_dtype(name: str) -> torch.dtype:
    """The game dtype of a case (the tuning cases play the workload's default, float32)."""
    return torch.float64 if "/float64" in name else torch.float32


def write() -> None:
    write_pins(PIN_FILE, CASES, trajectory)


if __name__ == "__main__":
    write()
