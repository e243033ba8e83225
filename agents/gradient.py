"""The paper's gradient players (Definitions 2-3) and their step-size schedules (Assumption 2).

The rule itself (and the schedules) is :class:`agents.rules.GradientRule`; this module is its numpy player.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.base import ObservationReader, RulePlayer, check_step_sizes
from agents.rules import SCHEDULES, GradientRule, Schedule, check_schedule, scheduled, step_size

__all__ = ["SCHEDULES", "GradientAgent", "Schedule", "step_size"]


class GradientAgent(RulePlayer):
    """The paper's player: head update −α_t ∇_{Θ_m} ℓ_m (Eq. 23), trunk proposal −β_t ∇_Ψ ℓ_m.

    With `sum` consensus the trunk then moves by −β_t Σ_m ∇_Ψ ℓ_m (Eq. 24). In ``update`` mode the
    action is that update (clipped to the action space); in ``step_size`` mode it is (log α_t, log β_t).

    Args:
        lr: α_0, the head step size.
        trunk_lr: β_0, the trunk step size (default: ``lr``).
        schedule: ``constant``, ``robbins_monro`` or ``summable``.
        power: The schedule's exponent p (default 0.75 for robbins_monro, 1.5 for summable).
    """

    def __init__(
        self,
        lr: float = 0.1,
        trunk_lr: float | None = None,
        schedule: Schedule = "constant",
        power: float | None = None,
    ):
        self.lr, self.trunk_lr = check_step_sizes(lr, trunk_lr)
        self._power = check_schedule(schedule, power)
        self.schedule: Schedule = schedule
        self.power = power
        self._reader = None
        self._rule = None

    def steps(self, t: int) -> tuple[float, float]:
        """(α_t, β_t)."""
        trunk_lr = self.lr if self.trunk_lr is None else self.trunk_lr
        return scheduled(self.lr, t, self.schedule, self._power), scheduled(trunk_lr, t, self.schedule, self._power)

    def make_rule(self, lrs: torch.Tensor) -> GradientRule:
        return GradientRule(lrs, self.schedule, self.power)

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        reader = ObservationReader(info, action_space)
        self._start(reader, per_block=reader.mode == "step_size")

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        reader, rule = self._rule_started()
        if reader.mode == "step_size":
            assert isinstance(rule, GradientRule)
            return reader.step_action(np.log(rule.next_rates()[0].numpy()))
        return self._update_action(observation)

    def __repr__(self) -> str:
        args = [f"lr={self.lr}"]
        if self.trunk_lr is not None:
            args.append(f"trunk_lr={self.trunk_lr}")
        args.append(f"schedule={self.schedule!r}")
        if self.power is not None:
            args.append(f"power={self.power}")
        return f"GradientAgent({', '.join(args)})"
