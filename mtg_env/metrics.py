"""Metrics of play (more arrive with the equilibrium-analysis work; see DESIGN.md §2)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def min_norm_convex_combination(jacobian: Tensor, exact_up_to: int = 10, iters: int = 20000) -> Tensor:
    """Weights w on the simplex minimising ‖Σ_m w_m g_m‖ over the rows g_m of ``jacobian`` (float64).

    Up to ``exact_up_to`` rows the problem is solved exactly: for every support S the KKT system
    [G_S 1; 1ᵀ 0][w; λ] = [0; 1] is solved and the feasible point satisfying the optimality condition
    (G w)_j ≥ wᵀG w for j ∉ S with the least objective is kept. More rows: Frank-Wolfe with exact line
    search (Sener & Koltun 2018, Alg. 2) for ``iters`` steps, an approximation.
    """
    g = jacobian.detach().to(torch.float64)
    gram = g @ g.T
    m = gram.shape[0]
    if m <= exact_up_to:
        return _exact_min_norm(gram)
    w = torch.full((m,), 1.0 / m, dtype=torch.float64, device=g.device)
    for _ in range(iters):
        grad = gram @ w
        t = int(torch.argmin(grad))
        gap = float(grad @ w - grad[t])
        if gap <= 1e-15:
            break
        d = -w.clone()
        d[t] += 1.0
        curvature = float(d @ gram @ d)
        w = w + (min(1.0, gap / curvature) if curvature > 0 else 1.0) * d
    return w


def _exact_min_norm(gram: Tensor) -> Tensor:
    m = gram.shape[0]
    scale = float(gram.diagonal().max()) or 1.0
    gram_s = (gram / scale).cpu()
    best_w, best_value = None, float("inf")
    for size in range(1, m + 1):
        for support in itertools.combinations(range(m), size):
            idx = list(support)
            kkt = torch.zeros(size + 1, size + 1, dtype=torch.float64)
            kkt[:size, :size] = gram_s[idx][:, idx]
            kkt[:size, size] = 1.0
            kkt[size, :size] = 1.0
            rhs = torch.zeros(size + 1, dtype=torch.float64)
            rhs[size] = 1.0
            sol = torch.linalg.lstsq(kkt, rhs.unsqueeze(1), driver="gelsd").solution[:, 0]
            w_s = sol[:size]
            if (w_s < -1e-12).any() or abs(float(w_s.sum()) - 1.0) > 1e-9:
                continue
            w = torch.zeros(m, dtype=torch.float64)
            w[idx] = w_s.clamp_min(0.0)
            w = w / w.sum()
            grad = gram_s @ w
            value = float(w @ grad)
            if (grad < value - 1e-10).any():  # a vertex outside S would lower the objective
                continue
            if value < best_value - 1e-15:
                best_w, best_value = w, value
    assert best_w is not None  # the global minimiser satisfies the KKT conditions of its own support
    return best_w.to(gram.device)


def pareto_stationarity(jacobian: Tensor) -> float:
    """‖min-norm convex combination of the task gradients‖: zero exactly at Pareto-stationary points."""
    w = min_norm_convex_combination(jacobian)
    return float((w @ jacobian.detach().to(torch.float64)).norm())
