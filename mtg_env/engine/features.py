"""The observation features of every task of B games, from the gradients and losses (one set of tensor ops)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtg_env.engine.game import Game


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1 + |x|): keeps sign and order, bounded for finite floats."""
    return torch.copysign(torch.log1p(x.abs()), x)


def _plain(x: Tensor) -> Tensor:
    """``x`` cut from autograd (a no-op, without the call, for the usual tensor that needs no gradient)."""
    return x.detach() if x.requires_grad else x


def trunk_grad_norm_mean(jacobian: Tensor) -> Tensor:
    """``[B]`` the mean over each game's players of ‖∇_Ψ ℓ_m‖ (``jacobian [B, M, n]``, detached, its dtype): the
    common gradient scale the env's ``trunk_grad_norm_mean`` info reports and a rule that balances its trunk proposal
    reads (``MLPRuleConfig.balance_min_bounded``)."""
    return torch.linalg.vector_norm(_plain(jacobian), dim=2).mean(1)


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
    losses, prev_losses, head_grads = _plain(losses), _plain(prev_losses), _plain(head_grads)
    jacobian, last_move = _plain(jacobian), _plain(last_move)
    # At small B a step is dominated by per-op overhead, not by arithmetic, so every elementwise stage runs once
    # on one row per game ([B, 6M + 3], the layout of :attr:`Game.feature_index`) and a gather places the values.
    bsz, m = losses.shape
    gram = torch.bmm(jacobian, jacobian.transpose(1, 2))  # [B, M, M]
    # ‖∇_Θm ℓ_m‖², ‖∇_Ψ ℓ_m‖², ‖mean_j ∇_Ψ ℓ_j‖², ‖ΔΨ‖², then their square roots: [B, 2M + 2].
    norms = torch.cat(
        [
            torch.mm(head_grads.square(), game.head_indicator),
            torch.diagonal(gram, dim1=1, dim2=2),
            gram.mean((1, 2)).unsqueeze(1),
            last_move.square().sum(1, keepdim=True),
        ],
        1,
    )
    norms = norms.clamp_min(0).sqrt()
    # ⟨∇_Ψ ℓ_m, mean_j ∇_Ψ ℓ_j⟩ and −⟨∇_Ψ ℓ_m, ΔΨ⟩, against the norms of the mean and of ΔΨ: [B, M, 2].
    dots = torch.stack([gram.mean(2), torch.bmm(jacobian, last_move.unsqueeze(2)).view(bsz, m).neg()], 2)
    dens = norms.narrow(1, m, m).unsqueeze(2) * norms.narrow(1, 2 * m, 2).unsqueeze(1)
    cosines = torch.where(dens > 0, dots / dens, 0.0)
    progress = (t.to(losses.dtype) / game.horizon).unsqueeze(1)  # >= 0; the bounds below cap it at 1
    symlogs = symlog(torch.cat([losses, losses - prev_losses, norms], 1))
    row = torch.cat([symlogs, cosines.view(bsz, 2 * m), progress], 1)
    row = torch.clamp(row.nan_to_num(nan=0.0), game.feature_row_low, game.feature_row_high)
    return row.index_select(1, game.feature_index).view(bsz, m, -1)
