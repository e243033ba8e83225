"""The observation features of every task of B games, from the gradients and losses (one set of tensor ops)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtg_env.engine.game import Game


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1 + |x|): keeps sign and order, bounded for finite floats."""
    return torch.copysign(torch.log1p(x.abs()), x)


def features(
    game: Game, losses: Tensor, prev_losses: Tensor, head_grads: Tensor, jacobian: Tensor, last_move: Tensor, t: Tensor
) -> Tensor:
    """``[B, M, 8]`` features (see :data:`~mtg_env.engine.layout.FEATURES`), clipped into their bounds.

    0 symlog ℓ_m; 1 symlog(ℓ_m − previous ℓ_m); 2 symlog ‖∇_Θm ℓ_m‖; 3 symlog ‖∇_Ψ ℓ_m‖;
    4 cos(∇_Ψ ℓ_m, mean_j ∇_Ψ ℓ_j); 5 cos(−∇_Ψ ℓ_m, last trunk move); 6 progress t / horizon;
    7 symlog ‖last trunk move‖ (the same for every task).
    NaN (only after a divergence) becomes 0; everything is clipped into the bounds (round-off can leave a
    cosine a hair above 1; a change between two huge finite losses can exceed the dtype's range).
    Computed from detached values: features are observations, not part of a differentiable unroll.
    """
    losses, prev_losses, head_grads = losses.detach(), prev_losses.detach(), head_grads.detach()
    jacobian, last_move = jacobian.detach(), last_move.detach()
    # Few, batched ops: at B = 1 a step is dominated by per-op overhead, not by arithmetic.
    gram = jacobian @ jacobian.transpose(1, 2)  # [B, M, M]
    squares = torch.stack(
        [head_grads.square() @ game.head_indicator, torch.diagonal(gram, dim1=1, dim2=2)], dim=2
    )  # [B, M, 2]: ‖∇_Θm ℓ_m‖², ‖∇_Ψ ℓ_m‖²
    norms = squares.clamp_min(0).sqrt()
    trunk_norm = norms[:, :, 1:]
    # ⟨∇_Ψ ℓ_m, mean_j ∇_Ψ ℓ_j⟩ and −⟨∇_Ψ ℓ_m, ΔΨ⟩, against the norms of the mean and of ΔΨ.
    dots = torch.cat([gram.mean(2, keepdim=True), -(jacobian @ last_move.unsqueeze(2))], dim=2)  # [B, M, 2]
    others = torch.stack([gram.mean((1, 2)), last_move.square().sum(1)], dim=1).clamp_min(0).sqrt()  # [B, 2]
    dens = trunk_norm * others.unsqueeze(1)
    positive = dens > 0
    cosines = torch.where(positive, dots / torch.where(positive, dens, 1.0), 0.0)
    m = losses.shape[1]
    progress = (t.to(losses.dtype) / game.horizon).clamp(max=1.0).view(-1, 1, 1).expand(-1, m, 1)
    move = symlog(others[:, 1:]).unsqueeze(1).expand(-1, m, 1)  # [B, M, 1]: ‖ΔΨ‖, common to every task
    feats = torch.cat([symlog(torch.cat([losses.unsqueeze(2), (losses - prev_losses).unsqueeze(2), norms], 2)),
                       cosines, progress, move], dim=2)  # fmt: skip
    return torch.minimum(torch.maximum(feats.nan_to_num(nan=0.0), game.feature_low), game.feature_high)
