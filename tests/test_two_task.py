"""The two-task closed forms (batched) against the named rules they stand for."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from mtg_env.consensus import AggregatorRule, consensus_rule
from mtg_env.consensus.two_task import TWO_TASK_RULES, TwoTaskRule


def pairs(seed: int, b: int = 60, n: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(b, 2, n, generator=gen, dtype=torch.float64)
    p[: b // 3, 1] = -0.8 * p[: b // 3, 0] + 0.2 * torch.randn(b // 3, n, generator=gen, dtype=torch.float64)
    p[b // 3 : b // 3 + 3, 1] = 2.0 * p[b // 3 : b // 3 + 3, 0]  # collinear, same direction
    return p * torch.rand(b, 2, 1, generator=gen, dtype=torch.float64).add(0.05) * 1e-3  # unequal, small


@pytest.mark.parametrize("name", [n for n in TWO_TASK_RULES if n not in ("cagrad", "nash_mtl")])
def test_closed_forms_equal_the_named_rules(name: str) -> None:
    p = pairs(0)
    batched = TwoTaskRule(name)(p)
    for b in range(p.shape[0]):
        torch.testing.assert_close(batched[b], consensus_rule(name, num_tasks=2)(p[b]), rtol=1e-10, atol=1e-18)


def test_cagrad_closed_form_matches_the_solver_and_an_independent_solve() -> None:
    # torchjd solves the same one-dimensional problem with cvxpy (to its tolerance): the closed form must agree
    # to that tolerance, and with an independent scalar solve to 1e-6.
    p = pairs(1)
    for c in (0.4, 0.5):
        batched = TwoTaskRule("cagrad", c=c)(p)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
            named = torch.stack([consensus_rule("cagrad", num_tasks=2, c=c)(p[b]) for b in range(p.shape[0])])
        assert ((batched - named).norm(dim=-1) <= 2e-3 * named.norm(dim=-1)).all()
        # an independent solve of the inner problem min_w ⟨p_w, p̄⟩ + c‖p̄‖‖p_w‖ on [0, 1] (scipy's bounded Brent)
        for b in range(p.shape[0]):
            a, q = p[b, 0].numpy(), p[b, 1].numpy()
            mean = (a + q) / 2
            phi = c * np.linalg.norm(mean)

            def objective(w: float, a=a, q=q, mean=mean, phi=phi) -> float:
                p_w = w * a + (1 - w) * q
                return float(p_w @ mean + phi * np.linalg.norm(p_w))

            w = minimize_scalar(objective, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-14}).x
            w = min((w, 0.0, 1.0), key=objective)
            p_w = w * a + (1 - w) * q
            reference = mean + phi / np.linalg.norm(p_w) * p_w
            np.testing.assert_allclose(batched[b].numpy(), reference, rtol=1e-6, atol=1e-6 * np.abs(reference).max())


def test_nash_mtl_closed_form_is_the_bargaining_solution() -> None:
    p = pairs(2)
    d = TwoTaskRule("nash_mtl")(p)
    # Gα = 1/α: α = 1/⟨p_m, d⟩ > 0 and d ∥ Σ α_m p_m, and the step's norm is the mean proposal norm
    alpha = 1.0 / torch.einsum("bmn,bn->bm", p, d)
    assert (alpha > 0).all()
    combination = torch.einsum("bm,bmn->bn", alpha, p)
    cos = (combination * d).sum(-1) / (combination.norm(dim=-1) * d.norm(dim=-1))
    assert (cos > 1 - 1e-12).all()
    torch.testing.assert_close(d.norm(dim=-1), p.norm(dim=-1).mean(-1), rtol=1e-12, atol=0.0)
    agree = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ECOS's remarks, and the named rule's failure warnings
        for b in range(p.shape[0]):
            rule = consensus_rule("nash_mtl", num_tasks=2)
            out = rule(p[b])
            assert isinstance(rule, AggregatorRule)
            if rule.failures == 0:  # where torchjd's solve succeeded it finds the same step
                torch.testing.assert_close(out, d[b], rtol=1e-3, atol=1e-12)
                agree += 1
    assert agree >= p.shape[0] // 2


@pytest.mark.parametrize("name", TWO_TASK_RULES)
def test_closed_forms_are_homogeneous_and_zero_at_zero(name: str) -> None:
    p = pairs(3, b=8)
    base = TwoTaskRule(name)(p)
    for s in (1e-8, 1e-3, 1e8):
        torch.testing.assert_close(TwoTaskRule(name)(s * p), s * base, rtol=1e-9, atol=0.0)
    assert torch.equal(TwoTaskRule(name)(torch.zeros(3, 2, 4)), torch.zeros(3, 4))
    torch.testing.assert_close(TwoTaskRule(name)(p[0]), base[0])


def test_bad_names_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no two-task closed form for 'upgrad'; available: \['sum', 'mean'"):
        TwoTaskRule("upgrad")
    with pytest.raises(ValueError, match=r"two-task rule 'mgda' has no option\(s\) \['c'\]"):
        TwoTaskRule("mgda", c=0.4)
    with pytest.raises(ValueError, match="cagrad's c must be a number >= 0, got True"):
        TwoTaskRule("cagrad", c=True)
    with pytest.raises(ValueError, match=r"two-task proposals must have shape \[B, 2, n\], got \(4, 3, 5\)"):
        TwoTaskRule("mean")(torch.zeros(4, 3, 5))
    assert repr(TwoTaskRule("cagrad", c=0.4)) == "TwoTaskRule('cagrad', c=0.4)"
