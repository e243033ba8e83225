"""Distributions of games to meta-train and evaluate learned agents on: one family per suite, and a shifted one.

Each draw is a dict of suite options (:func:`mtg_env.suites.make_suite` keyword arguments), decided by a
numpy ``Generator`` the caller seeds (no global randomness). The *shifted* family moves every draw out of
the training range: 3× the dimensions, 10× the conditioning, twice the tasks (quadratic, regression), wider
trunks (digits).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mtg_env.suites import TaskSuite, make_suite

#: Suites with a game family.
FAMILIES: tuple[str, ...] = ("quadratic", "regression", "digits")


def sample_config(suite: str, rng: np.random.Generator, shifted: bool = False) -> dict[str, Any]:
    """Suite options of one game of ``suite``'s family (or of its shifted family).

    * quadratic: 2–4 tasks, heads of 1–3, trunk of 5–15, condition log-uniform in [10, 300];
      shifted: 3× trunk and heads, 10× condition, 2× tasks.
    * regression: 2–4 tasks, inputs of 4–12, relatedness uniform in [0, 1], a linear or MLP trunk of width 2–6;
      shifted: 2× tasks, 3× inputs and width.
    * digits: trunk widths (16,), (32,) or (32, 16), batches of 64; shifted: the default trunk (128, 64).
    """
    if suite not in FAMILIES:
        raise ValueError(f"no game family for suite {suite!r}; available: {list(FAMILIES)}")
    seed = int(rng.integers(0, 2**31))
    if suite == "quadratic":
        tasks, head, trunk = int(rng.integers(2, 5)), int(rng.integers(1, 4)), int(rng.integers(5, 16))
        condition = float(math.exp(rng.uniform(math.log(10.0), math.log(300.0))))
        if shifted:
            tasks, head, trunk, condition = 2 * tasks, 3 * head, 3 * trunk, 10 * condition
        return {"num_tasks": tasks, "head_dim": head, "trunk_dim": trunk, "condition": condition, "game_seed": seed}
    if suite == "regression":
        tasks, inputs, width = int(rng.integers(2, 5)), int(rng.integers(4, 13)), int(rng.integers(2, 7))
        kind = "mlp" if rng.uniform() < 0.5 else "linear"
        relatedness = float(rng.uniform(0.0, 1.0))
        if shifted:
            tasks, inputs, width = 2 * tasks, 3 * inputs, 3 * width
        return {
            "num_tasks": tasks,
            "input_dim": inputs,
            "trunk_width": width,
            "trunk": kind,
            "hidden": 16,
            "relatedness": relatedness,
            "data_seed": seed,
        }
    widths = [(16,), (32,), (32, 16)]
    hidden = (128, 64) if shifted else widths[int(rng.integers(0, len(widths)))]
    return {"hidden": hidden, "batch_size": 64, "split_seed": seed % 1000}


def build_suite(
    suite: str, config: dict[str, Any], device: str | torch.device = "cpu", dtype: str = "float32"
) -> TaskSuite:
    """The suite of one drawn game."""
    return make_suite(suite, device=device, dtype=dtype, **config)


def loss_floor(suite: TaskSuite) -> float:
    """A lower bound of the total training loss Σ_m ℓ_m that the meta-loss and the result tables measure from:
    the quadratic game's L_MT at its equilibrium (its minimum; the losses themselves can be negative), else 0
    (losses are MSE or cross-entropy)."""
    if suite.name != "quadratic":
        return 0.0
    equilibrium = suite.equilibrium()
    assert equilibrium is not None  # the quadratic game has a closed-form one
    heads, trunk = equilibrium
    with torch.no_grad():
        total = float(suite.losses(heads.to(suite.dtype), trunk.to(suite.dtype)).sum())
    # Less a hair, so that round-off never puts a reached loss below the floor (its log stays finite).
    return total - 1e-9 * max(1.0, abs(total))
