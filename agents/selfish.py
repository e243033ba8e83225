"""A deliberately selfish deviator: it plays another player's rule but inflates its trunk proposal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.base import ObservationReader, Policy, ReaderPlayer


class SelfishAgent(ReaderPlayer):
    """Plays ``inner``'s head update as is and ``scale`` times its trunk proposal.

    Under `sum` or `mean` consensus a proposal scaled by k > 1 pulls the trunk k times harder towards this
    player's own descent direction: its own loss falls faster, at the other tasks' expense (the mixed
    populations of the bench measure by how much, per consensus rule). Rules that normalise or bound the
    proposals' contribution resist it. ``update`` mode only.

    Args:
        inner: The rule it pretends to play (any update-mode policy).
        scale: k > 0, the factor on the trunk part of the inner action.
    """

    def __init__(self, inner: Policy, scale: float = 4.0):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.inner = inner
        self.scale = float(scale)
        self._reader: ObservationReader | None = None

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        reader = ObservationReader(info, action_space)
        if reader.mode != "update":
            raise ValueError(f"{type(self).__name__} needs action_mode='update', got {reader.mode!r}")
        self.inner.reset(observation, info, action_space)
        self._reader = reader

    @property
    def clipped_steps(self) -> int:
        """Steps whose action (inner's or its own scaling) was clipped into the action space."""
        return super().clipped_steps + int(getattr(self.inner, "clipped_steps", 0))

    def scales(self, observation: np.ndarray) -> tuple[float, float]:
        """(trunk factor, head factor) for this observation: ``(scale, 1)``; a subclass may read the observation."""
        return self.scale, 1.0

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        reader = self._started()
        trunk, head = self.scales(observation)
        update = reader.update_of(self.inner.act(observation, info), observation)  # in the env's units: decode
        return reader.update_action(head * update[: reader.head_size], trunk * update[reader.head_slot :], observation)

    def __repr__(self) -> str:
        return f"SelfishAgent({self.inner!r}, scale={self.scale})"
