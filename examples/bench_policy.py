"""A policy to benchmark: sign descent (signSGD), u = −lr · sign(g), written against the Policy protocol.

Enter it in a benchmark by import path (``bench_policy:sign_descent``, with ``examples/`` on ``PYTHONPATH``):
``examples/bench_sign_descent.toml`` tunes it like the baselines and plays it against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from agents import ObservationReader


class SignDescent:
    """Head update and trunk proposal −lr · sign(∇ℓ_m) (update mode)."""

    def __init__(self, lr: float):
        self.lr = float(lr)
        self._reader: ObservationReader | None = None

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        self._reader = ObservationReader(info, action_space)

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        assert self._reader is not None, "reset() first"
        g_head, g_trunk = self._reader.grads(observation)
        return self._reader.update_action(-self.lr * np.sign(g_head), -self.lr * np.sign(g_trunk), observation)

    def __repr__(self) -> str:
        return f"SignDescent(lr={self.lr})"


def sign_descent(lr: float) -> SignDescent:
    """The factory the bench calls: ``lr -> Policy`` (one fresh player per task and game)."""
    return SignDescent(lr)
