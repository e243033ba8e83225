"""Heavy-ball momentum (Polyak 1964) on the agent's own gradient: the paper's rule (Eq. 23) with a velocity.

The rule itself is :class:`agents.rules.MomentumRule`; this module is its numpy player.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.base import ObservationReader, RulePlayer, check_step_sizes
from agents.rules import MomentumRule
from mtg_env._args import real_arg


class MomentumAgent(RulePlayer):
    """Heavy-ball player: u_t = μ u_{t−1} − α g_t on [∇_Θ ℓ_m; ∇_Ψ ℓ_m], with u_{−1} = 0.

    The head part of u_t is the head update, the trunk part (with step β) the player's trunk proposal; with
    μ = 0 it is :class:`~agents.GradientAgent` with a constant schedule (Eq. 23 and the proposal of Eq. 24).
    It is ``torch.optim.SGD(momentum=μ)`` (no dampening, no Nesterov) run on the player's own gradient. The
    velocity is the player's own: it remembers its *intended* moves (before any clipping by the action space),
    not the trunk's consensus move. It needs ``update`` mode: in ``step_size`` mode the env fixes the direction
    to −g, so a velocity cannot be played.

    Args:
        lr: α, the head step size.
        momentum: μ in [0, 1).
        trunk_lr: β, the trunk step size (default: ``lr``).
    """

    def __init__(self, lr: float = 0.1, momentum: float = 0.9, trunk_lr: float | None = None):
        self.lr, self.trunk_lr = check_step_sizes(lr, trunk_lr)
        self.momentum = real_arg("momentum", momentum, 0.0, 1.0, high_open=True, hint="the heavy-ball coefficient")
        self._reader = None
        self._rule = None

    def make_rule(self, lrs: torch.Tensor) -> MomentumRule:
        return MomentumRule(lrs, self.momentum)

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        reader = ObservationReader(info, action_space)
        if reader.mode != "update":
            raise ValueError(
                f"MomentumAgent needs action_mode='update' (got {reader.mode!r}): in step_size mode the env fixes "
                "the direction to -g, so a velocity cannot be played; use GradientAgent or AdamAgent there"
            )
        self._start(reader)

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        return self._update_action(observation)

    def __repr__(self) -> str:
        trunk = "" if self.trunk_lr is None else f", trunk_lr={self.trunk_lr}"
        return f"MomentumAgent(lr={self.lr}, momentum={self.momentum}{trunk})"
