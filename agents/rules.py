"""Each baseline player's rule, written once: B players at once on tensors ``[B, D]``, their state tensors.

A rule turns gradients ``g [B, D]`` into updates ``[B, D]``, with one step size per coordinate (``lrs [B, D]``, the
head's step size on head coordinates and the trunk's on trunk coordinates, in whatever layout its adapter uses:
:func:`coordinate_lrs`). Two kinds of adapter run them, with the same operations in the same order, so both play
the same numbers bit for bit:

* the numpy players (:class:`~agents.GradientAgent`, :class:`~agents.MomentumAgent`, :class:`~agents.AdamAgent`,
  :class:`~agents.RMSpropAgent`): B = 1, the player's own gradient ``[∇_Θ ℓ_m; ∇_Ψ ℓ_m]`` read from its
  observation; they turn the update into an action;
* the batched forms (:class:`agents.batched.BatchedBaseline`): B games on the engine's tensors, every task's
  heads and proposals in one row, for the tuning protocol.

Arithmetic: the gradient rule multiplies in the gradient's dtype (as numpy multiplies a Python float and a
float32 array); the momentum and adaptive rules keep their state and compute in float64 whatever the game's dtype,
and take the correctly rounded square root (:func:`ieee_sqrt`). The adapter casts the update to the game's dtype.

These are the *players'* rules (textbook forms on each player's own gradient, before the consensus). The
optimizer the engine may apply *after* the consensus (:mod:`mtg_env.engine.optim`) is a different rule: it is
``torch.optim``'s, bit for bit (the buffer seeded with the first gradient and the step size outside it, Adam with
``lerp``/``addcmul``, ``√v / √(1 − β2^k)`` and ``torch.sqrt``), so the two round apart and neither can borrow
the other's arithmetic without changing its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, overload

import numpy as np
import torch
from torch import Tensor

from mtg_env._args import real_arg

Schedule = Literal["constant", "robbins_monro", "summable"]
SCHEDULES: tuple[str, ...] = ("constant", "robbins_monro", "summable")
_DEFAULT_POWER = {"constant": 0.0, "robbins_monro": 0.75, "summable": 1.5}


# ------------------------------------------------------------------------------------------ schedules
def step_size(lr: float, t: int, schedule: Schedule = "constant", power: float | None = None) -> float:
    """α_t under a schedule: ``constant`` α_0; ``robbins_monro`` and ``summable`` α_0 / (1 + t)^p.

    ``robbins_monro`` needs ½ < p ≤ 1 (Σ α_t = ∞, Σ α_t² < ∞); ``summable`` needs p > 1 (Σ α_t < ∞:
    Assumption 2 as printed).

    Raises:
        ValueError: for an unknown schedule or a power outside its schedule's range.
    """
    return scheduled(lr, t, schedule, check_schedule(schedule, power))


@overload
def scheduled(lr: float, t: int, schedule: str, power: float) -> float: ...
@overload
def scheduled(lr: Tensor, t: int, schedule: str, power: float) -> Tensor: ...
def scheduled(lr: float | Tensor, t: int, schedule: str, power: float) -> float | Tensor:
    """α_t from α_0 = ``lr`` (a number or a tensor of them) under a validated schedule and power."""
    return lr if schedule == "constant" else lr / (1.0 + t) ** power


def check_schedule(schedule: str, power: float | None) -> float:
    """The schedule's power (its default when ``power`` is None), or an error naming what is wrong."""
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


# ------------------------------------------------------------------------------------------ helpers
def coordinate_lrs(
    head_lr: Sequence[float], trunk_lr: Sequence[float], head: int, trunk: int, device: torch.device | None = None
) -> Tensor:
    """``[B, head + trunk]`` float64 step sizes: ``head_lr [B]`` on the first ``head`` coordinates, ``trunk_lr [B]``
    on the ``trunk`` others."""
    rows = [torch.as_tensor(lr, dtype=torch.float64, device=device)[:, None] for lr in (head_lr, trunk_lr)]
    return torch.cat([rows[0].expand(-1, head), rows[1].expand(-1, trunk)], 1)


def ieee_sqrt(x: Tensor) -> Tensor:
    """√x correctly rounded (IEEE 754), as ``numpy.sqrt``, on every device (not differentiable).

    On the CPU ``torch.sqrt`` is MKL's vector math: within an ulp but not correctly rounded (about 0.8 % of
    float64 inputs come out one ulp low, and which ones depends on the MKL_CBWR code path), so numpy's is used
    there; CUDA's ``sqrt`` is correctly rounded."""
    if x.device.type != "cpu":
        return x.sqrt()
    return torch.from_numpy(np.sqrt(x.detach().numpy()))


class Rule(Protocol):
    """A baseline's rule: B players' updates from their gradients, keeping their state."""

    t: int
    """Steps played."""

    def step(self, g: Tensor) -> Tensor:
        """The updates ``[B, D]`` for the gradients ``g [B, D]``; the state advances one step."""
        ...


# ------------------------------------------------------------------------------------------ rules
class GradientRule:
    """The paper's player (Definitions 2-3): u = −α_t g, head update of Eq. 23 and trunk proposal of Eq. 24, with
    α_t the step sizes ``lrs`` under a schedule (:func:`step_size`)."""

    def __init__(self, lrs: Tensor, schedule: Schedule = "constant", power: float | None = None):
        self.lrs = lrs.to(torch.float64)
        self.schedule = schedule
        self.power = check_schedule(schedule, power)
        self.t = 0

    def next_rates(self) -> Tensor:
        """``[B, D]`` α_t (float64) of this step; the step count advances."""
        rates = scheduled(self.lrs, self.t, self.schedule, self.power)
        self.t += 1
        return rates

    def step(self, g: Tensor) -> Tensor:
        # α_t rounded to g's dtype, then the product in that dtype: numpy's Python-float × float32 array.
        return -self.next_rates().to(g.dtype) * g


class MomentumRule:
    """Heavy ball (Polyak 1964): u_t = μ u_{t−1} − α g_t, u_{−1} = 0, in float64. The velocity is the update the
    player intends (before any clipping by the action space)."""

    def __init__(self, lrs: Tensor, momentum: float):
        self.lrs = lrs.to(torch.float64)
        self.momentum = momentum
        self.u = torch.zeros_like(self.lrs)
        self.t = 0

    def step(self, g: Tensor) -> Tensor:
        self.t += 1
        self.u = self.momentum * self.u - self.lrs * g.to(torch.float64)
        return self.u


class AdaptiveRule:
    """Adam (Kingma & Ba; ``beta1 > 0``, bias-corrected) and RMSprop (``beta1 = 0``, no bias correction), in
    float64: m ← β1 m + (1 − β1) g, v ← β2 v + (1 − β2) g², u = −α (m / c1) / (√(v / c2) + ε) with
    c_i = 1 − β_i^t (1 without bias correction).

    :meth:`norm_step` is the same rule in norm form, for a player that can only choose a step size per block (the
    env's ``step_size`` mode fixes the direction to −g): v tracks the mean squared coordinate ‖g‖² / dim, and the
    step is α / (√(v / c2) + ε), no first moment.
    """

    def __init__(self, lrs: Tensor, beta1: float, beta2: float, eps: float, bias_correction: bool = True):
        self.lrs = lrs.to(torch.float64)
        self.beta1, self.beta2, self.eps, self.bias_correction = beta1, beta2, eps, bias_correction
        self.m = torch.zeros_like(self.lrs)
        self.v = torch.zeros_like(self.lrs)
        self.t = 0

    def _corrections(self) -> tuple[float, float]:
        if not self.bias_correction:
            return 1.0, 1.0
        return 1.0 - self.beta1**self.t, 1.0 - self.beta2**self.t

    def step(self, g: Tensor) -> Tensor:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = self._corrections()
        g = g.to(torch.float64)
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        return -self.lrs * (self.m / c1) / (ieee_sqrt(self.v / c2) + self.eps)

    def norm_step(self, norms: Tensor, dims: Tensor) -> Tensor:
        """Step sizes ``[B, K]`` of K blocks with gradient norms ``norms [B, K]`` over ``dims [B, K]`` coordinates
        (float64); the state advances one step."""
        self.t += 1
        b2 = self.beta2
        _, c2 = self._corrections()
        self.v = b2 * self.v + (1 - b2) * norms.to(torch.float64) ** 2 / dims.to(torch.float64)
        return self.lrs / (ieee_sqrt(self.v / c2) + self.eps)
