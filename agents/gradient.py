"""The paper's gradient players (Definitions 2-3) and their step-size schedules (Assumption 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from agents.base import ObservationReader, ReaderPlayer, check_step_sizes
from mtg_env._args import real_arg

Schedule = Literal["constant", "robbins_monro", "summable"]
SCHEDULES: tuple[str, ...] = ("constant", "robbins_monro", "summable")
_DEFAULT_POWER = {"constant": 0.0, "robbins_monro": 0.75, "summable": 1.5}


def step_size(lr: float, t: int, schedule: Schedule = "constant", power: float | None = None) -> float:
    """α_t under a schedule: ``constant`` α_0; ``robbins_monro`` and ``summable`` α_0 / (1 + t)^p.

    ``robbins_monro`` needs ½ < p ≤ 1 (Σ α_t = ∞, Σ α_t² < ∞); ``summable`` needs p > 1 (Σ α_t < ∞:
    Assumption 2 as printed).

    Raises:
        ValueError: for an unknown schedule or a power outside its schedule's range.
    """
    return _value(lr, t, schedule, _check_schedule(schedule, power))


def _value(lr: float, t: int, schedule: str, power: float) -> float:
    return lr if schedule == "constant" else lr / (1.0 + t) ** power


def _check_schedule(schedule: str, power: float | None) -> float:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; available: {list(SCHEDULES)}")
    p = _DEFAULT_POWER[schedule] if power is None else real_arg("power", power)
    if schedule == "robbins_monro" and not 0.5 < p <= 1.0:
        raise ValueError(f"robbins_monro needs 1/2 < power <= 1 (sum of steps infinite, of squares finite), got {p}")
    if schedule == "summable" and not p > 1.0:
        raise ValueError(f"summable needs power > 1 (a finite sum of steps, Assumption 2), got {p}")
    if schedule == "constant" and power is not None:
        raise ValueError("the constant schedule takes no power")
    return p


class GradientAgent(ReaderPlayer):
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
        self._power = _check_schedule(schedule, power)
        self.schedule: Schedule = schedule
        self.power = power
        self.t = 0
        self._reader = None

    def steps(self, t: int) -> tuple[float, float]:
        """(α_t, β_t)."""
        trunk_lr = self.lr if self.trunk_lr is None else self.trunk_lr
        return _value(self.lr, t, self.schedule, self._power), _value(trunk_lr, t, self.schedule, self._power)

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        self._reader = ObservationReader(info, action_space)
        self.t = 0

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        reader = self._started()
        alpha, beta = self.steps(self.t)
        self.t += 1
        if reader.mode == "step_size":
            return reader.step_action(np.log([alpha, beta]))
        g_head, g_trunk = reader.grads(observation)
        return reader.update_action(-alpha * g_head, -beta * g_trunk, observation)

    def __repr__(self) -> str:
        args = [f"lr={self.lr}"]
        if self.trunk_lr is not None:
            args.append(f"trunk_lr={self.trunk_lr}")
        args.append(f"schedule={self.schedule!r}")
        if self.power is not None:
            args.append(f"power={self.power}")
        return f"GradientAgent({', '.join(args)})"
