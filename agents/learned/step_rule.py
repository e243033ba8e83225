"""The ``step_size`` mode's learned rule: a head step from each task's features and one shared trunk step (one of the
rules of :mod:`agents.learned.rules`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agents.learned.guard import apply_norm_guard, norm_guard_state
from agents.learned.rule_base import MOVE, STEP_FEATURES, RuleState, seeded_init, zero_init
from agents.learned.rule_configs import StepRuleConfig

__all__ = ["StepRule"]


class StepRule(nn.Module):
    """Step-size controller: features ``[B, M, 8]`` (it reads :data:`STEP_FEATURES`) -> log step sizes ``[B, M, 2]``
    (log α, log β), clamped into the env's ``log_step_range``: a task's head step α from one network of its features,
    shared by every task; the
    trunk step β one learned constant, the same for every player (a per-player β moves the fixed point of
    ``sum``/``mean`` consensus away from the minimiser of Σ_m ℓ_m: see :class:`MLPRule`)."""

    def __init__(self, config: StepRuleConfig | None = None):
        super().__init__()
        self.config = config = config or StepRuleConfig()
        if config.guard_hold_unplayed:
            raise ValueError(
                "guard_hold_unplayed holds a trunk proposal's curvature estimate, and the step rule's guard keeps one "
                "per step size, not per proposal: leave it False for learned_step"
            )
        self.net = nn.Sequential(nn.Linear(len(STEP_FEATURES), config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))
        seeded_init(self, config.seed)
        zero_init(self.net[-1])
        self.base = nn.Parameter(torch.full((2,), float(config.init_log_step)))

    def scale_trunk_step(self, factor: float) -> None:
        """Multiply the trunk step (the same for every player) by ``factor``, in place."""
        with torch.no_grad():
            self.base[1] += math.log(factor)

    def scale_head_step(self, factor: float) -> None:
        """Multiply every head's step by ``factor``, in place."""
        with torch.no_grad():
            self.base[0] += math.log(factor)

    def forward(self, features: Tensor, log_step_range: tuple[float, float]) -> Tensor:
        """Log step sizes ``[B, M, 2]`` for features ``[B, M, 8]``, inside ``log_step_range`` (unguarded)."""
        lo, hi = log_step_range
        head = self.base[0] + self.net(features.detach()[..., list(STEP_FEATURES)].to(self.base.dtype))  # [B, M, 1]
        raw = torch.cat([head, self.base[1].expand_as(head)], dim=-1)
        return raw.clamp(lo, hi)

    def init_state(self, batch: int, num_tasks: int = 1) -> RuleState:
        """The guard's fresh state for ``batch`` games of ``num_tasks`` players (none without the guard)."""
        if not self.config.guard:
            return {}
        return norm_guard_state(batch, 2 * num_tasks, self.base.dtype, self.base.device)

    def play(
        self, features: Tensor, log_step_range: tuple[float, float], sizes: Tensor, state: RuleState
    ) -> tuple[Tensor, RuleState]:
        """:meth:`forward` with the guard (:func:`~agents.learned.guard.apply_norm_guard`, when ``config.guard``):
        log step sizes ``[B, M, 2]`` and the next state. ``sizes [M, 2]``: each task's head and trunk sizes. The
        guard reads the gradient norms and the trunk move from the features (all a ``step_size`` player sees)."""
        log_steps = self(features, log_step_range)
        cfg = self.config
        if not cfg.guard:
            return log_steps, state
        b, m, _ = log_steps.shape
        dtype = log_steps.dtype
        norms = torch.expm1(features[:, :, 2:4].to(dtype)).reshape(b, 2 * m)  # ‖∇_Θm ℓ_m‖, ‖∇_Ψ ℓ_m‖ per block
        move = torch.expm1(features[:, 0, MOVE].to(dtype))
        trunk_block = torch.tensor([False, True], device=log_steps.device).repeat(m)
        blocks, sizes = log_steps.reshape(b, 2 * m), sizes.reshape(2 * m)
        # The player's loss change beyond a doubling, Δℓ − |ℓ_{t−1}| (symlog undone): > 0 on an overshoot's jump.
        loss, change = (torch.sign(x) * torch.expm1(x.abs()) for x in features[:, :, :2].to(dtype).unbind(2))
        rise = (change - (loss - change).abs()).repeat_interleave(2, dim=1)
        guarded, guard = apply_norm_guard(blocks, norms, rise, trunk_block, sizes, move, state, cfg, cfg.guard_raise)
        return guarded.clamp(*log_step_range).view(b, m, 2), guard
