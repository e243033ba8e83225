"""The curvature guard every learned rule plays with: stability by construction, from the rule's own memory.

A learned rule's step is tuned on its training family; on a game whose curvature is far beyond it (an
ill-conditioned quadratic, condition 1e4–1e5) its step is far above 2/L and the game blows up within a few steps.
The guard needs no knowledge of the game. Per block (a player's head, or its trunk proposal) it keeps a secant
estimate of the curvature along the block's last move,

    L̂ = ‖g_t − g_{t−1}‖ / ‖s‖,

s the block's last update (a head) or, for a trunk proposal, the shorter of the player's last proposal and the
consensus's last move ΔΨ (‖ΔΨ‖ is every player's feature ``symlog_trunk_move_norm``): the trunk gradient changes
by the consensus move, which under ``sum`` adds up every player's proposal, so the gradient change per unit of the
player's own proposal is the curvature the player's step meets. It caps the block's update u at

    ‖u‖ ≤ c·‖d‖ / L̂,

d the update's direction (the gradient for a gradient step, the heavy ball's (1 + β)·momentum for a heavy ball):
an effective step of at most c / L̂, stable along the estimated direction for c < 2 (c < 2(1 + β) for the heavy
ball). A growing mode dominates the moves within a step or two, so L̂ then measures its curvature and the cap stops
it. Before a block has moved (the first step) its update is at most ``radius``·√K (K its coordinates), a trust
region in the parameters' units: no secant is known yet, and an unbounded gradient step on a stiff game is what
blows it up on its first move.

The cap only ever shrinks an update, and it leaves one that is within it bit for bit: where the rule's step is
already safe the guarded rule plays exactly the unguarded one. Everything is per coordinate or per block, so a
player's :class:`~agents.learned.policy.LearnedAgent` and the batched :class:`~agents.learned.batched.EngineDriver`
apply it alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The guard's state keys (kept beside the rule's own).
GUARD_KEYS: tuple[str, ...] = ("guard_g", "guard_u", "guard_l", "guard_seen")


def guard_state(g: Tensor, num_groups: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """The guard's fresh state for gradients ``g [B, K]`` in ``num_groups`` blocks: no move made, no estimate."""
    b, k = g.shape
    blocks = torch.zeros(b, num_groups, dtype=dtype, device=g.device)
    coords = torch.zeros(b, k, dtype=dtype, device=g.device)
    return {"guard_g": coords, "guard_u": coords, "guard_l": blocks, "guard_seen": blocks}


def block_norms(x: Tensor, groups: Tensor, num_groups: int) -> Tensor:
    """``[B, G]`` the Euclidean norm of each block of ``x [B, K]`` (coordinate k in block ``groups[k]``)."""
    zeros = x.new_zeros(x.shape[0], num_groups)
    return zeros.index_add(1, groups, x.square()).sqrt()


def apply_guard(
    update: Tensor,
    direction: Tensor,
    g: Tensor,
    groups: Tensor,
    is_trunk: Tensor,
    move: Tensor,
    state: dict[str, Tensor],
    step: float,
    radius: float,
    memory: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The guarded update ``[B, K]`` and the guard's next state (see the module docstring).

    Args:
        update: ``[B, K]`` the rule's update (head updates and trunk proposals).
        direction: ``[B, K]`` d: the update is a step of some size along it (the gradient; the heavy ball's
            (1 + β)·momentum), so ‖u‖ / ‖d‖ is the block's effective step.
        g: ``[B, K]`` this step's gradients.
        groups: ``[K]`` the block of each coordinate.
        is_trunk: ``[K]`` bool: the coordinate is a trunk proposal's.
        move: ``[B]`` ‖ΔΨ‖, the consensus's last trunk move (the same for every player).
        state: The guard's state (:func:`guard_state`, or the last call's).
        step: c, the largest effective step times L̂.
        radius: The bound of a block's first update, per √coordinate.
        memory: The factor by which an estimate fades per step when the newest secant is smaller.
    """
    num_groups = state["guard_l"].shape[1]
    dtype = update.dtype
    # Which blocks are trunk proposals, and how many coordinates each block has (the same in both forms).
    blocks = torch.zeros(num_groups, dtype=dtype, device=g.device)
    trunk_block = blocks.index_add(0, groups, is_trunk.to(dtype)) > 0
    sizes = blocks.index_add(0, groups, torch.ones(groups.shape, dtype=dtype, device=g.device))
    with torch.no_grad():
        moved = block_norms(state["guard_u"], groups, num_groups)  # ‖s‖ per block (0 before the first move)
        moved = torch.where(trunk_block, torch.minimum(moved, move.to(dtype).unsqueeze(1)), moved)
        changed = block_norms(g - state["guard_g"], groups, num_groups)
        fresh = moved > 0
        # The newest secant, or the last estimate fading by ``memory`` per step if that is larger: a secant along a
        # flat direction does not lift the cap at once (a stiff direction the last move missed may come back).
        secant = changed / torch.where(fresh, moved, 1.0)
        curvature = torch.where(fresh, torch.maximum(secant, memory * state["guard_l"]), state["guard_l"])
        seen = torch.maximum(state["guard_seen"], fresh.to(dtype))
    size = block_norms(update, groups, num_groups)
    reach = block_norms(direction.detach(), groups, num_groups)
    # The cap: c·‖d‖ / L̂ once a secant is known (none where the gradient did not change), else the trust radius.
    flat = curvature <= 0
    limit = torch.where(
        seen > 0,
        torch.where(flat, math.inf, step * reach / torch.where(flat, 1.0, curvature)),
        radius * sizes.sqrt(),
    )
    over = size > limit
    scale = torch.where(over, limit / torch.where(over, size, 1.0), 1.0)  # [B, G]
    guarded = torch.where(over[:, groups], update * scale[:, groups], update)
    return guarded, {"guard_g": g, "guard_u": guarded.detach(), "guard_l": curvature, "guard_seen": seen}
