"""The exact minimum-norm point of a convex hull, shared by the `mgda` rule and the Pareto-stationarity metric.

A leaf module (it imports only torch), so :mod:`mtg_env.consensus` and :mod:`mtg_env.metrics` both use it
without importing each other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def min_norm_weights(gram: Tensor, tol: float = 1e-12) -> Tensor:
    """Weights w on the simplex minimising wᵀGw for a Gram matrix G = JJᵀ (float64, on G's device).

    Wolfe's minimum-norm-point algorithm (Wolfe 1976) on the Gram matrix, exact for any number of rows M:
    a corral S of affinely independent rows is kept; each major cycle adds the row j with the least
    ⟨g_j, x⟩ while that is below ‖x‖² (the optimality condition (Gw)_j ≥ wᵀGw for every j fails), and minor
    cycles move to the affine minimum-norm point of S, dropping rows whose weight reaches zero on the way.
    It ends in finitely many steps at a point meeting the KKT conditions, which for this convex problem is
    the minimum. Duplicate rows, rank-deficient and zero rows are handled (a duplicate never enters S; a zero
    row gives w = its unit vector).

    Args:
        gram: ``[M, M]`` symmetric positive semi-definite.
        tol: Relative tolerance of the optimality test, in units of the largest squared row norm.

    Returns:
        ``[M]`` float64 weights, non-negative, summing to 1.
    """
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square matrix [M, M], got shape {tuple(gram.shape)}")
    device = gram.device
    g = gram.detach().to(torch.float64).cpu()
    m = g.shape[0]
    # Before any solve: an infinite diagonal (rows whose norms overflow) would scale G to NaN, and LAPACK's gelsd
    # prints an error of its own on NaN input.
    if not torch.isfinite(g).all():
        raise ValueError("gram has non-finite entries (NaN, or rows whose squared norms overflow float64)")
    scale = float(g.diagonal().max())
    if not scale > 0.0:  # every row is zero: every weighting is a minimiser
        w = torch.zeros(m, dtype=torch.float64)
        w[0] = 1.0
        return w.to(device)
    g = g / scale  # the largest squared norm is 1, so ``tol`` is relative
    corral = [int(torch.argmin(g.diagonal()))]
    w = torch.zeros(m, dtype=torch.float64)
    w[corral[0]] = 1.0
    for _ in range(50 * m + 100):  # Wolfe's algorithm terminates; the cap only guards against round-off cycling
        grad = g @ w  # ⟨g_j, x⟩ for x = Σ w_i g_i
        value = float(w @ grad)  # ‖x‖²
        j = int(torch.argmin(grad))
        if float(grad[j]) >= value - tol or j in corral:
            break
        corral.append(j)
        while True:  # minor cycles: the affine minimum-norm point of the corral, kept inside the simplex
            v = _affine_min_norm(g, corral)
            if bool((v > tol).all()):
                w.zero_()
                w[corral] = v
                break
            current = w[corral]
            shrink = current - v
            blocking = [k for k in range(len(corral)) if float(v[k]) <= tol and float(shrink[k]) > 0]
            theta = min(float(current[k] / shrink[k]) for k in blocking) if blocking else 1.0
            moved = current + theta * (v - current)
            keep = [k for k in range(len(corral)) if float(moved[k]) > tol]
            w.zero_()
            w[[corral[k] for k in keep]] = moved[keep] / moved[keep].sum()
            corral = [corral[k] for k in keep]
            if len(corral) == 1:
                break
    return w.to(device)


def _affine_min_norm(g: Tensor, corral: list[int]) -> Tensor:
    """Weights v (summing to 1, any sign) of the minimum-norm point of the affine hull of the corral's rows:
    the KKT system [G_S 1; 1ᵀ 0][v; λ] = [0; 1], solved by least squares so that a numerically dependent
    corral still gives its minimum-norm solution."""
    k = len(corral)
    kkt = torch.zeros(k + 1, k + 1, dtype=torch.float64)
    kkt[:k, :k] = g[corral][:, corral]
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = torch.zeros(k + 1, 1, dtype=torch.float64)
    rhs[k] = 1.0
    v = torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution[:k, 0]
    return v / v.sum()


def min_norm_convex_combination(jacobian: Tensor) -> Tensor:
    """Weights w on the simplex minimising ‖Σ_m w_m g_m‖ over the rows g_m of ``jacobian`` ``[M, n]`` (float64),
    exact for any M (see :func:`min_norm_weights`)."""
    g = jacobian.detach().to(torch.float64)
    # The weights do not depend on the rows' common scale: divide it out, so that finite rows whose squared norms
    # would overflow (a game far out, not yet diverged) still have a finite Gram matrix. By a power of two, which is
    # exact: the weights are those of the rows as given, bit for bit (min_norm_weights scales G to its largest
    # diagonal entry itself). Non-finite rows stay so, and min_norm_weights refuses them.
    top = g.abs().max() if g.numel() else g.new_zeros(())
    if bool(torch.isfinite(top)) and float(top) > 0.0:
        g = torch.ldexp(g, -torch.frexp(top).exponent)
    return min_norm_weights(g @ g.T)


def pareto_stationarity(jacobian: Tensor) -> float:
    """‖min-norm convex combination of the task gradients‖: zero exactly at Pareto-stationary points."""
    w = min_norm_convex_combination(jacobian)
    x = w @ jacobian.detach().to(torch.float64).to(w.device)
    norm = float(x.norm())
    if math.isinf(norm) and bool(torch.isfinite(x).all()):  # finite entries whose squares overflow
        exponent = torch.frexp(x.abs().max()).exponent
        norm = math.ldexp(float(torch.ldexp(x, -exponent).norm()), int(exponent))
    return norm
