"""The pure core of one game step: losses, gradients and parameter updates on flat tensors.

No numpy, no Python loop over parameters, no global state: these functions take tensors and return
tensors, so they can be batched and differentiated with ``torch.func``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: ``losses(heads, trunk, batch) -> Tensor[M]``: every task's loss in one forward.
LossFn = Callable[[Tensor, Tensor, Any], Tensor]


def losses_and_grads(loss_fn: LossFn, heads: Tensor, trunk: Tensor, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
    """All task losses, every head's own gradient, and the trunk Jacobian, in one batched backward.

    Args:
        loss_fn: The suite's per-task losses.
        heads: Flat vector of all heads (head m is a contiguous slice), shape ``[H]``.
        trunk: Flat trunk Ψ, shape ``[n]``.
        batch: The suite's batch.

    Returns:
        ``losses [M]``; ``head_grads [H]`` whose slice m is ∇_{Θ_m} ℓ_m (Eq. 23); ``jacobian [M, n]``
        whose row m is ∇_Ψ ℓ_m (the rows the consensus rules combine). All detached.
    """
    heads = heads.detach().requires_grad_(True)
    trunk = trunk.detach().requires_grad_(True)
    with torch.enable_grad():
        losses = loss_fn(heads, trunk, batch)
        eye = torch.eye(losses.shape[0], dtype=losses.dtype, device=losses.device)
        # One vmapped backward over the M basis vectors: row m of each result is ∂ℓ_m/∂(·).
        head_jac, jac = torch.autograd.grad(
            losses, (heads, trunk), grad_outputs=eye, is_grads_batched=True, allow_unused=True, materialize_grads=True
        )
    # ℓ_m depends on head m only, so row m of head_jac is zero outside slice m: the sum over rows
    # places each head's own gradient in its slice. (Empty heads, as in toy2d, have no gradient.)
    head_grads = head_jac.sum(0) if heads.numel() else heads.detach()
    return losses.detach(), head_grads, jac


def step_size_updates(
    log_steps: Tensor, head_grads: Tensor, jacobian: Tensor, head_index: Tensor
) -> tuple[Tensor, Tensor]:
    """Updates of the ``step_size`` action mode: u = −exp(a)·g.

    Args:
        log_steps: ``[M, 2]`` natural-log step sizes (head, trunk) per task.
        head_grads: ``[H]`` each head's own gradient.
        jacobian: ``[M, n]`` per-task trunk gradients.
        head_index: ``[H]`` the task that owns each head coordinate.

    Returns:
        ``head_updates [H]`` (−α_m ∇_{Θ_m} ℓ_m, Eq. 23) and ``proposals [M, n]`` (−β_m ∇_Ψ ℓ_m).
    """
    steps = log_steps.exp()
    return -steps[head_index, 0] * head_grads, -steps[:, 1:] * jacobian
