"""Rule properties on the inputs where implementations have failed: every scale from 1e-6 to 1e-1 (and beyond),
near-duplicate proposals, and 5-task matrices with a common descent direction but no shared component.

Each property is the one its paper proves; tolerances are round-off bounds of the float64 computation, not
figures fitted to one machine.
"""

from __future__ import annotations

import itertools
import warnings

import mpmath
import pytest
import torch

from mtg_env.consensus import RULE_TABLE, bargaining_weights, consensus_rule
from mtg_env.metrics import pareto_stationarity

SMALL_SCALES = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def five_task_matrix(seed: int, n: int = 12) -> torch.Tensor:
    """Five Gaussian rows of unequal norms in R^n (n ≥ 5): generic, so a common descent direction exists (0 is
    not in their hull, Pareto stationarity > 0) while no component is shared by construction."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(5, n, generator=g, dtype=torch.float64)
    return rows * torch.rand(5, 1, generator=g, dtype=torch.float64).add(0.1)


def near_duplicates(seed: int, gap: float) -> torch.Tensor:
    """Four proposals of which the first two differ by ``gap`` relative to their norm."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(4, 9, generator=g, dtype=torch.float64)
    p[1] = p[0] + gap * p[0].norm() * torch.randn(9, generator=g, dtype=torch.float64) / 3.0
    return p


@pytest.mark.parametrize("seed", range(40))
def test_nash_mtl_meets_the_bargaining_condition_on_five_task_matrices(seed: int) -> None:
    # Navon et al. 2022, Eq. 4: d = Σ α_m g_m with ⟨g_m, d⟩ = 1/α_m, so ⟨g_m, d⟩ > 0 and Σ_m g_m / ⟨g_m, d⟩ ∥ d.
    # torchjd's ECOS solve missed this on about 1 in 5 such matrices; the rule refines it by Newton's method.
    g = five_task_matrix(seed)
    assert pareto_stationarity(g) > 1e-3
    r = consensus_rule("nash_mtl", num_tasks=5)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)  # ECOS's remark
        d = -r(-g)  # proposals are descent steps p = −g
    assert r.failures == 0
    dots = g @ d
    assert (dots > 0).all(), f"seed {seed}: ⟨g_m, d⟩ = {dots.tolist()}"
    combination = (1.0 / dots) @ g
    assert float(combination @ d / (combination.norm() * d.norm())) > 1 - 1e-12


def test_nash_mtl_misses_are_counted_where_a_user_sees_them() -> None:
    # Over 40 matrices, torchjd's solve misses some (the issue measured about 1 in 5); every one is repaired,
    # and counted in rule.refinements, which the main job writes to summary.json.
    misses = 0
    for seed in range(40):
        r = consensus_rule("nash_mtl", num_tasks=5)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
            r(-five_task_matrix(seed))
        assert r.failures == 0
        misses += r.refinements
    assert 1 <= misses <= 20


def test_bargaining_weights_solve_the_equation_or_say_there_is_none() -> None:
    g = five_task_matrix(0)
    gram = g @ g.T
    alpha = bargaining_weights(gram)
    assert alpha is not None
    torch.testing.assert_close(gram @ alpha, 1.0 / alpha, rtol=1e-12, atol=0.0)
    opposed = torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=torch.float64)  # 0 is in the hull: no solution
    assert bargaining_weights(opposed @ opposed.T) is None


@pytest.mark.parametrize(("name", "seed"), list(itertools.product(["nash_mtl", "imtl_g", "mgda", "upgrad"], range(3))))
def test_rules_are_equivariant_at_small_scales_on_five_task_matrices(name: str, seed: int) -> None:
    p = -five_task_matrix(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        base = consensus_rule(name, num_tasks=5)(p)
        for s in SMALL_SCALES:
            scaled = consensus_rule(name, num_tasks=5)(s * p)
            torch.testing.assert_close(scaled, s * base, rtol=1e-9, atol=0.0, msg=lambda m, s=s: f"s={s}: {m}")


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_fairgrad_scales_as_its_equation_says_at_every_scale(alpha: float, seed: int) -> None:
    # (P Pᵀ) w = w^{-1/α} gives w(sP) = s^{-2α/(α+1)} w(P), so C(sP) = s^{(1−α)/(1+α)} C(P): scale-invariant at
    # α = 1. Before, scipy's absolute tolerances broke this below s = 1e-3 (99 % off at 1e-6).
    p = -five_task_matrix(seed)
    rule = consensus_rule("fairgrad", alpha=alpha)
    base = rule(p)
    for s in [*SMALL_SCALES, 1e3, 1e6]:
        expected = s ** ((1 - alpha) / (1 + alpha)) * base
        torch.testing.assert_close(rule(s * p), expected, rtol=1e-9, atol=0.0, msg=lambda m, s=s: f"s={s}: {m}")


def imtl_g_exact(p: torch.Tensor, digits: int = 60) -> torch.Tensor:
    """IMTL-G's direction Σ α_m p_m (Σα = 1, equal projections onto every unit row), in mpmath at ``digits``."""
    with mpmath.workdps(digits):
        rows = mpmath.matrix(p.tolist())
        m = rows.rows
        gram = rows * rows.T
        norms = mpmath.matrix([mpmath.sqrt(gram[i, i]) for i in range(m)])
        v = mpmath.lu_solve(gram, norms)
        v = v / sum(v)
        d = rows.T * v
        return torch.tensor([float(d[i]) for i in range(d.rows)], dtype=torch.float64)


@pytest.mark.parametrize(("gap", "seed"), list(itertools.product([1e-2, 1e-4, 1e-6], range(3))))
def test_imtl_g_is_exact_on_near_duplicate_proposals(gap: float, seed: int) -> None:
    # The Gram matrix squares the rows' condition number (≈ 1/gap); the rule works on the SVD of P, so its
    # error is about cond(P)·eps ≈ eps/gap. torchjd's pinv of the Gram was 9.5e-3 off at gap 1e-6.
    p = near_duplicates(seed, gap)
    d = consensus_rule("imtl_g")(p)
    exact = imtl_g_exact(p)
    error = float((d - exact).norm() / exact.norm())
    assert error < 100 * torch.finfo(torch.float64).eps / gap, f"relative error {error:.3g}"
    units = p / p.norm(dim=1, keepdim=True)
    projections = units @ d
    torch.testing.assert_close(projections, projections.mean().expand(4), rtol=100 * 2.2e-16 / gap, atol=0.0)


@pytest.mark.parametrize("name", [n for n, spec in RULE_TABLE.items() if n not in {"sum", "mean"}])
def test_a_rule_marked_differentiable_returns_a_graph_and_one_marked_not_is_refused_in_an_unroll(name: str) -> None:
    # pcgrad, graddrop and imtl_g were marked differentiable, but torchjd runs them under no_grad: an unroll
    # through them silently lost the trunk move's gradient.
    from mtg_env.consensus import apply_rule, rule_differentiable

    r = consensus_rule(name, num_tasks=4)
    p = (-five_task_matrix(1)[:4]).requires_grad_(True)
    losses = torch.rand(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        out = apply_rule(r, p, 3, losses)
    if rule_differentiable(r):
        assert out.requires_grad, f"{name} is marked differentiable but its output has no graph"
        (grad,) = torch.autograd.grad(out.sum(), p)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
