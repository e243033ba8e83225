"""Aggregators written here rather than taken from torchjd: exact MGDA (min-norm point), Nash-MTL's bargaining
solution, IMTL-G by SVD, and Krum with exact pairwise distances (see each class for why)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtg_env.consensus.minnorm import min_norm_weights


class MinNormAggregator:
    """MGDA's aggregator, exact: the minimum-norm point Σ_m w_m g_m of the convex hull of the rows of G
    (Désidéri 2012; Sener & Koltun 2018, Eq. 3), the weights from Wolfe's algorithm on the Gram matrix
    (:func:`mtg_env.consensus.minnorm.min_norm_weights`), computed outside autograd; the combination keeps the graph."""

    def __call__(self, gradients: Tensor) -> Tensor:
        weights = min_norm_weights(gradients.detach() @ gradients.detach().T)
        return weights.to(gradients.dtype) @ gradients

    def __repr__(self) -> str:
        return "MinNormAggregator()"


def bargaining_weights(gram: Tensor, start: Tensor | None = None, max_iter: int = 100) -> Tensor | None:
    """The Nash bargaining weights α > 0 with Kα = 1/α (elementwise) for a Gram matrix K = G Gᵀ (Navon et al.
    2022, Eq. 4: ⟨g_m, d⟩ = 1/α_m for d = Σ α_m g_m), in float64; ``None`` when there is none.

    Kα = 1/α is the stationarity condition of φ(α) = ½ αᵀKα − Σ_m log α_m, strictly convex and self-concordant
    on α > 0, so damped Newton steps (α − Δ/(1 + λ), λ the Newton decrement; full steps once λ < 0.25) stay
    positive and converge to its unique minimiser whenever one exists, quadratically near it. φ has no
    minimiser exactly when 0 is in the convex hull of the rows (then Newton's iterates run off and the
    iteration cap ends the search).

    Args:
        gram: ``[M, M]`` symmetric positive semi-definite.
        start: Optional positive ``[M]`` starting point (e.g. an approximate solver's answer).
        max_iter: Newton steps at most.
    """
    k = gram.detach().to(torch.float64).cpu()
    diag = k.diagonal()
    if not bool(torch.isfinite(k).all()) or not bool((diag > 0).all()):
        return None
    alpha = 1.0 / diag.sqrt()  # the solution when the rows are orthogonal
    if start is not None:
        start = start.detach().to(torch.float64).cpu()
        if start.shape == alpha.shape and bool(torch.isfinite(start).all()) and bool((start > 0).all()):
            alpha = start
    for _ in range(max_iter):
        grad = k @ alpha - 1.0 / alpha
        hess = k + torch.diag(alpha.pow(-2))
        delta, info = torch.linalg.solve_ex(hess, grad)
        if int(info) != 0 or not bool(torch.isfinite(delta).all()):
            return None  # the iterates ran off towards a direction with Kα = 0: no minimiser
        decrement = max(float(grad @ delta), 0.0) ** 0.5
        alpha = alpha - delta if decrement < 0.25 else alpha - delta / (1.0 + decrement)
        if decrement < 1e-9:  # quadratic convergence: the next error is far below round-off
            break
    else:
        return None
    return alpha if _meets_bargaining(k, alpha) else None


def _meets_bargaining(gram: Tensor, alpha: Tensor, rtol: float = 1e-9) -> bool:
    """Whether α > 0 solves Kα = 1/α to ``rtol`` (relative to 1/α)."""
    if not bool(torch.isfinite(alpha).all()) or not bool((alpha > 0).all()):
        return False
    inverse = 1.0 / alpha
    return float((gram @ alpha - inverse).norm()) <= rtol * float(inverse.norm())


def _near_bargaining(gram: Tensor, alpha: Tensor) -> bool:
    """Whether d = Σ α_m g_m is a bargaining direction to the accuracy torchjd's solve aims at: every
    ⟨g_m, d⟩ > 0 and Σ_m g_m / ⟨g_m, d⟩ within 1 − 1e-3 in cosine of d (the optimality condition up to scale)."""
    dots = gram @ alpha
    if not bool(torch.isfinite(dots).all()) or not bool((dots > 0).all()):
        return False
    inverse = 1.0 / dots
    cos = float(inverse @ gram @ alpha) / (float(inverse @ gram @ inverse) * float(alpha @ gram @ alpha)) ** 0.5
    return cos > 1 - 1e-3


class IMTLGAggregator:
    """IMTL-G's aggregator (Liu et al. 2021; torchjd's generalisation to linearly dependent rows): the
    combination d = Σ_m α_m g_m with Σα = 1 whose projections onto every unit row g_m/‖g_m‖ are equal,
    α = (G Gᵀ)⁺ diag(G Gᵀ)^½ normalised.

    torchjd forms the pseudo-inverse of the Gram matrix, whose condition number is the square of G's: on
    near-duplicate rows the answer was 1e-2 off. Here the same quantities come from the SVD of G itself,
    G = U Σ Vᵀ: v = (G Gᵀ)⁺ s = U Σ⁻² Uᵀ s and Gᵀv = V Σ⁻¹ Uᵀ s, s the row norms, singular values below
    max(M, n)·eps·σ_max dropped (the pseudo-inverse's cut, on G's scale), all in float64. Non-differentiable
    (as torchjd's)."""

    def __call__(self, gradients: Tensor) -> Tensor:
        g = gradients.detach().to(torch.float64)
        norms = g.norm(dim=1)
        u, sigma, vh = torch.linalg.svd(g, full_matrices=False)
        keep = sigma > max(g.shape) * torch.finfo(torch.float64).eps * sigma.max()
        u, sigma, vh = u[:, keep], sigma[keep], vh[keep]
        coords = u.T @ norms
        total = float((coords / sigma.square()) @ u.sum(0))  # Σ_m v_m
        if abs(total) < 1e-12:  # torchjd's cut: no combination with Σα = 1 (the rows cancel)
            return gradients.sum(0) * 0.0
        direction = vh.T @ (coords / sigma) / total
        return direction.to(gradients.dtype)

    def __repr__(self) -> str:
        return "IMTLGAggregator()"


class KrumAggregator:
    """Krum (Blanchard et al. 2017) and Multi-Krum: the mean of the ``n_selected`` rows with the least score,
    a row's score the sum of its distances to its M − f − 2 nearest other rows (f = ``n_byzantine``); torchjd's
    ``Krum`` options and weights.

    The distances are ‖g_i − g_j‖ computed from the differences, the same operations for (i, j) and (j, i), and
    equal scores go to the lowest index (a stable sort). torchjd's take them from the Gram matrix
    (‖g_i‖² + ‖g_j‖² − 2⟨g_i, g_j⟩: cancellation for close rows, and a GEMM not symmetric to the bit), so with
    M − f − 2 = 1, where the two closest rows always tie, rounding picked the row, and the pick changed with the
    scale of the proposals and with MKL's code path."""

    def __init__(self, n_byzantine: int, n_selected: int = 1) -> None:
        self.n_byzantine = n_byzantine
        self.n_selected = n_selected

    def __call__(self, gradients: Tensor) -> Tensor:
        m = gradients.shape[0]
        if m < self.n_byzantine + 3 or m < self.n_selected:
            raise ValueError(
                f"krum with n_byzantine={self.n_byzantine}, n_selected={self.n_selected} needs at least "
                f"{max(self.n_byzantine + 3, self.n_selected)} proposals, got {m}"
            )
        g = gradients.detach()
        # [M, M], exactly symmetric (g_j − g_i and g_i − g_j have the same magnitudes), zero diagonal; a row at a
        # time, so memory stays M·n
        distances = torch.stack([(g - row).norm(dim=1) for row in g])
        nearest = torch.sort(distances, dim=1, stable=True).values[:, 1 : m - self.n_byzantine - 1]
        scores = nearest.sum(dim=1)
        chosen = torch.sort(scores, stable=True).indices[: self.n_selected]
        weights = torch.zeros(m, dtype=gradients.dtype, device=gradients.device)
        weights[chosen] = 1.0 / self.n_selected
        return weights @ gradients

    def __repr__(self) -> str:
        return f"KrumAggregator(n_byzantine={self.n_byzantine}, n_selected={self.n_selected})"
