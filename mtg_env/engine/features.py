"""The observation features of every task of B games, from the gradients and losses (one set of tensor ops)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtg_env.engine.game import Game


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1 + |x|): keeps sign and order, bounded for finite floats."""
    return torch.copysign(torch.log1p(x.abs()), x)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """A cosine from a dot product and a norm product; 0 where a vector is zero (no direction)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, 1.0), 0.0)


def features(
    game: Game, losses: Tensor, prev_losses: Tensor, head_grads: Tensor, jacobian: Tensor, last_move: Tensor, t: Tensor
) -> Tensor:
    """``[B, M, 7]`` features (see :data:`~mtg_env.engine.game.FEATURES`), clipped into their bounds.

    0 symlog ℓ_m; 1 symlog(ℓ_m − previous ℓ_m); 2 symlog ‖∇_Θm ℓ_m‖; 3 symlog ‖∇_Ψ ℓ_m‖;
    4 cos(∇_Ψ ℓ_m, mean_j ∇_Ψ ℓ_j); 5 cos(−∇_Ψ ℓ_m, last trunk move); 6 progress t / horizon.
    NaN (only after a divergence) becomes 0; everything is clipped into the bounds (round-off can leave a
    cosine a hair above 1; a change between two huge finite losses can exceed the dtype's range).
    Computed from detached values: features are observations, not part of a differentiable unroll.
    """
    losses, prev_losses, head_grads = losses.detach(), prev_losses.detach(), head_grads.detach()
    jacobian, last_move = jacobian.detach(), last_move.detach()
    gram = jacobian @ jacobian.transpose(1, 2)  # [B, M, M]
    trunk_norm = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(0).sqrt()
    head_norm = (head_grads.square() @ game.head_indicator).sqrt()
    mean_norm = gram.mean((1, 2)).clamp_min(0).sqrt().unsqueeze(1)
    move_norm = last_move.square().sum(1).sqrt().unsqueeze(1)
    along_move = (jacobian @ last_move.unsqueeze(2)).squeeze(2)
    progress = (t.to(losses.dtype) / game.horizon).clamp(max=1.0).unsqueeze(1).expand_as(losses)
    feats = torch.stack(
        [
            symlog(losses),
            symlog(losses - prev_losses),
            symlog(head_norm),
            symlog(trunk_norm),
            _ratio(gram.mean(2), trunk_norm * mean_norm),
            _ratio(-along_move, trunk_norm * move_norm),
            progress,
        ],
        dim=2,
    )
    return torch.minimum(torch.maximum(feats.nan_to_num(nan=0.0), game.feature_low), game.feature_high)
