"""Balanced trunk proposals under a min-norm consensus rule (``MLPRuleConfig.balance_min_bounded``).

MGDA's move is the min-norm point of the players' proposals, so it leans toward the shortest: a player whose
gradient stays long (a hard task, or one whose head sharpens) loses its say in the trunk. Balanced, every player's
heavy ball steps as if its gradient were G long, G the mean over the game's players of ‖∇_Ψ ℓ_m‖ (the same for every
player: the env's ``trunk_grad_norm_mean`` info), and its AMSGrad share's direction has RMS 1. The rule then weighs
the players by their directions, not their lengths; the move still vanishes where MGDA's min-norm point does. Where
the curvature guard caps a balanced proposal, its restart steps as if the player's gradient were at least G long
(``restart_floor`` of :func:`agents.learned.guard.apply_guard`).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The state key a caller adds before every call of a balancing rule: ``[B, 1]`` G of this step.
COMMON_KEY = "trunk_grad_norm_mean"


def common_scale(state: dict[str, Tensor], dtype: torch.dtype) -> Tensor:
    """``[B, 1, 1]`` G from ``state`` (added by the caller before the call; refused, naming the key, without it)."""
    if COMMON_KEY not in state:
        raise ValueError(
            f"balance_min_bounded: add state[{COMMON_KEY!r}] ([B, 1], the games' mean ‖∇_Ψ ℓ_m‖, "
            "mtg_env.engine.trunk_grad_norm_mean) before every call; EngineDriver and LearnedAgent do"
        )
    return state[COMMON_KEY].to(dtype).unsqueeze(2)


def balance_heavy_ball(proposal: Tensor, g_t: Tensor, common: Tensor) -> Tensor:
    """``proposal [B, P, n]`` (a heavy ball along player p's own gradients ``g_t [B, P, n]``) times G / ‖g_p‖ where
    the player's gradient is not zero; unchanged where it is."""
    length = torch.linalg.vector_norm(g_t, dim=2, keepdim=True)  # [B, P, 1]
    scaled = proposal * (common / length.clamp_min(torch.finfo(proposal.dtype).tiny))
    return torch.where(length > 0, scaled, proposal)


def unit_rms(direction: Tensor) -> Tensor:
    """``direction [B, P, n]`` scaled to RMS 1 over each player's trunk (a zero direction stays zero)."""
    rms = direction.square().mean(2, keepdim=True).sqrt()
    return torch.where(rms > 0, direction / rms.clamp_min(torch.finfo(direction.dtype).tiny), direction)
