"""The ``update``-mode action codec: actions in units of a reference descent step, and back.

With ``update_units="relative"`` (the default since v6) coordinate i of an action is the update of parameter i in
units of its *reference step* d_i: u_i = a_i · d_i, where d_i = −sign(g_i) · 2^k_i points downhill along the
agent's own observed gradient g_i (its head gradient for the head part, its trunk gradient ∇_Ψ ℓ_m for the trunk
proposal) and 2^k_i is ``2^-3 |g_i|`` rounded up to a power of two, and at least ``2^-6``. So a = 1 is a gradient
step of step size 1/8 to 1/4 on a coordinate with |g_i| ≥ 1/8 and a sign step of 2^-6 on one below (on the digits
suite that is every coordinate at the start: a random action there is a sign-descent step), a = 0 is no move, a
negative value goes uphill. The Box is ``[−max_update/4, max_update]``: uphill at most a quarter as far as
downhill, so a random policy (uniform in the Box, what every library's initial policy sends) descends on average.
How long its episodes last depends on the consensus rule: on the default env, 8 of 8 seeds play all 500 steps under
``mean``, ``upgrad`` and ``cagrad``, 6 of 8 under ``sum``, 5 of 8 under ``pcgrad`` and none under ``mgda``
(``scripts/episode_lengths.py``; docs/engine.md). The v5 Box, ±1 per coordinate on ~17 000 parameters, ended every
random game at its first step.

Each d_i is a power of two (and a sign), so the conversion is exact both ways (barring float underflow): a player
that encodes its intended update u with :func:`encode` and lets the env :func:`decode` it plays u bit for bit.
The paper's gradient player (α ≤ 1/8) and Adam (its default lr = 1e-3) fit the Box unclipped. ``"raw"`` units: the
action is the update itself, in the Box ±max_update (v5).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

UpdateUnits = Literal["relative", "raw"]
UPDATE_UNITS: tuple[str, ...] = ("relative", "raw")

#: The reference step is 2^SCALE_EXP |g| rounded up to a power of two: 1/8, the paper's player's α = 0.1 fits.
SCALE_EXP = -3
#: ... and at least 2^FLOOR_EXP (Adam's lr-sized steps on coordinates whose gradient is tiny fit in the Box).
FLOOR_EXP = -6
#: The Box in relative units is [UPHILL · max_update, max_update]: uphill moves at most a quarter of downhill ones.
UPHILL = -0.25


def reference_steps(grads: Tensor) -> Tensor:
    """The reference descent step d of every coordinate of ``grads`` (any shape; the same shape and dtype):
    −sign(g)·2^max(e + SCALE_EXP, FLOOR_EXP), 2^(e−1) ≤ |g| < 2^e; a zero or non-finite gradient gets the floor
    (downhill: −2^FLOOR_EXP for g ≥ 0)."""
    grads = grads.detach()  # a unit, not a path for gradients (piecewise constant anyway)
    usable = torch.where(torch.isfinite(grads), grads, torch.zeros_like(grads))
    _, exponent = torch.frexp(usable.abs())
    exponent = torch.where(usable == 0, torch.full_like(exponent, FLOOR_EXP), exponent + SCALE_EXP)
    magnitude = torch.ldexp(torch.ones_like(grads), exponent.clamp(min=FLOOR_EXP))
    return torch.where(usable < 0, magnitude, -magnitude)


def decode(actions: Tensor, grads: Tensor) -> Tensor:
    """The updates that relative-unit ``actions`` play, given the gradients they were chosen against."""
    return actions * reference_steps(grads).to(actions.dtype)


def encode(updates: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """The relative-unit action (float64) that plays ``updates`` against ``grads`` (numpy arrays of one shape):
    the inverse of :func:`decode`, exact (each reference step is a power of two)."""
    steps = reference_steps(torch.from_numpy(np.ascontiguousarray(grads))).to(torch.float64).numpy()
    return np.asarray(updates, dtype=np.float64) / steps


def decode_numpy(actions: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """:func:`decode` for numpy arrays (float64): the update a relative-unit action plays."""
    steps = reference_steps(torch.from_numpy(np.ascontiguousarray(grads))).to(torch.float64).numpy()
    return np.asarray(actions, dtype=np.float64) * steps
