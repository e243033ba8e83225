"""The exact minimum-norm solver shared by `mgda` and the Pareto-stationarity metric, against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtg_env.consensus.minnorm import min_norm_convex_combination, min_norm_weights, pareto_stationarity


def scipy_min_norm(gram: np.ndarray) -> float:
    """min wᵀGw on the simplex by SLSQP from M + 1 starts (an independent solver); the best value."""
    m = gram.shape[0]
    best = np.inf
    for x0 in [np.full(m, 1.0 / m), *np.eye(m)]:
        res = minimize(
            lambda w: w @ gram @ w,
            x0,
            jac=lambda w: 2 * gram @ w,
            bounds=[(0.0, None)] * m,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(m)}],
            method="SLSQP",
            options={"ftol": 1e-16, "maxiter": 1000},
        )
        best = min(best, float(res.fun))
    return best


def jacobian(seed: int, m: int, n: int, kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(m, n, generator=gen, dtype=torch.float64)
    if kind == "duplicate":
        j[-1] = j[0]
    elif kind == "rank2":
        j = torch.randn(m, 2, generator=gen, dtype=torch.float64) @ torch.randn(
            2, n, generator=gen, dtype=torch.float64
        )
    elif kind == "zero_row":
        j[m // 2] = 0.0
    return j * torch.rand(m, 1, generator=gen, dtype=torch.float64).add(0.1)  # unequal norms


CASES = [(seed, m, n, kind) for seed, (m, n) in enumerate([(2, 3), (3, 2), (4, 7), (6, 3), (8, 20), (10, 4), (10, 30)])
         for kind in ("plain", "duplicate", "rank2", "zero_row")]  # fmt: skip


@pytest.mark.parametrize(("seed", "m", "n", "kind"), CASES)
def test_min_norm_matches_an_independent_solver(seed: int, m: int, n: int, kind: str) -> None:
    j = jacobian(seed, m, n, kind)
    w = min_norm_convex_combination(j)
    assert w.dtype == torch.float64 and (w >= 0).all() and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    gram = (j @ j.T).numpy()
    value = float(w.numpy() @ gram @ w.numpy())
    scale = float(np.diag(gram).max())
    assert value <= scipy_min_norm(gram) + 1e-10 * scale  # never worse than SLSQP's best of M + 1 starts
    # the KKT conditions: no vertex lies below the supporting plane at x = Σ w_m g_m
    assert (gram @ w.numpy() >= value - 1e-10 * scale).all()
    if kind == "zero_row":
        assert value == 0.0


def test_min_norm_edge_cases_and_bad_input() -> None:
    assert torch.equal(min_norm_weights(torch.zeros(3, 3, dtype=torch.float64)), torch.tensor([1.0, 0.0, 0.0]).double())
    assert torch.equal(min_norm_weights(torch.tensor([[4.0]])), torch.tensor([1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"gram must be a non-empty square matrix \[M, M\], got shape \(2, 3\)"):
        min_norm_weights(torch.ones(2, 3))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_gram_is_refused_before_any_solve(bad: float, capfd: pytest.CaptureFixture[str]) -> None:
    """An infinite diagonal (a diverged game's rows, norms overflowing) or a NaN is refused by name; before, an infinite
    diagonal scaled G to NaN and LAPACK printed "Intel oneMKL ERROR: Parameter 4 was incorrect" to stderr."""
    gram = torch.tensor([[1.0, 0.5, 0.0], [0.5, bad, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="gram has non-finite entries"):
        min_norm_weights(gram)
    with pytest.raises(ValueError, match="gram has non-finite entries"):
        min_norm_convex_combination(torch.tensor([[1.0, 0.0], [bad, 1.0]], dtype=torch.float64))
    assert capfd.readouterr().err == ""


def test_finite_rows_whose_gram_would_overflow_keep_their_weights() -> None:
    """The weights do not depend on the rows' common scale, so rows of norm 1e200 (a float64 game far out, its
    squared norms past float64's range) get the weights of the same rows at norm 1, and the metric stays finite."""
    rows = torch.tensor([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.4, 1.0]], dtype=torch.float64)
    assert torch.allclose(min_norm_convex_combination(rows * 1e200), min_norm_convex_combination(rows), atol=1e-12)
    assert math.isfinite(pareto_stationarity(rows * 1e200))
    g = rows * 3.7  # where nothing overflows, the scaling (by a power of two) changes no bit
    assert torch.equal(min_norm_convex_combination(g), min_norm_weights(g @ g.T))
    assert pareto_stationarity(rows * 1e200) == pytest.approx(1e200 * pareto_stationarity(rows), rel=1e-9)
