"""What every player shares: the policy protocol and reading an observation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from mtg_env.env import FEATURES

_HEAD_NORM = FEATURES.index("symlog_head_grad_norm")
_TRUNK_NORM = FEATURES.index("symlog_trunk_grad_norm")


@runtime_checkable
class Policy(Protocol):
    """A player: sees its observation and info, returns its action (as any MARL library's policy)."""

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        """Start an episode; ``info`` is the one ``env.reset`` returned (it has the sizes and mode)."""

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """The action for this step."""


class ObservationReader:
    """Splits an observation into the parts a gradient-based player needs, from the reset info alone."""

    def __init__(self, info: Mapping[str, Any], action_space: spaces.Box):
        missing = [k for k in ("head_size", "trunk_size", "action_mode") if k not in info]
        if missing:
            raise ValueError(f"agent.reset needs the info returned by env.reset (it lacks {missing})")
        self.head_size = int(info["head_size"])
        self.trunk_size = int(info["trunk_size"])
        self.mode = str(info["action_mode"])
        self.low = action_space.low
        self.high = action_space.high
        self.dtype = action_space.dtype

    def grads(self, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∇_Θ ℓ, ∇_Ψ ℓ) from an ``update``-mode observation (views, no copy)."""
        h, n = self.head_size, self.trunk_size
        return observation[:h], observation[h : h + n]

    def grad_norms(self, observation: np.ndarray) -> tuple[float, float]:
        """(‖∇_Θ ℓ‖, ‖∇_Ψ ℓ‖) from the features (either mode): the inverse of symlog."""
        feats = observation[-len(FEATURES) :]
        return float(np.expm1(feats[_HEAD_NORM])), float(np.expm1(feats[_TRUNK_NORM]))

    def clip(self, action: np.ndarray) -> np.ndarray:
        """The action as the env's dtype, clipped into the action space (as MARL libraries do)."""
        return np.clip(action, self.low, self.high).astype(self.dtype, copy=False)
