"""Closed forms of the consensus rules for two tasks, batched over games: ``[B, 2, n] -> [B, n]``.

With M = 2 the rules' inner problems have closed forms, so B games move in a few tensor operations
instead of B solver calls (torchjd's CAGrad and Nash-MTL call cvxpy once per game and step: 10 and 33 ms
here). Each closed form is the named rule of :data:`mtg_env.consensus.RULE_TABLE` with its default options,
on the same scale convention (every rule homogeneous, so the proposals' scale reaches the trunk), and
``tests/test_two_task.py`` checks each against the named rule on random matrices. The engine uses a rule
built here as it uses ``sum`` and ``mean``: one call for the whole batch.

For rows p_1, p_2 (the proposals; every rule here is odd, C(−P) = −C(P), so it acts on P directly):

- ``mgda``: γp_1 + (1 − γ)p_2, γ = clip(⟨p_2 − p_1, p_2⟩ / ‖p_1 − p_2‖², 0, 1) (Sener & Koltun 2018, Alg. 1);
- ``pcgrad``: when ⟨p_1, p_2⟩ < 0 each row projected off the other, then summed (Yu et al. 2020);
- ``cagrad``: p̄ + (c‖p̄‖/‖p_w‖) p_w, p̄ the mean and p_w = wp_1 + (1 − w)p_2 with w minimising
  ⟨p_w, p̄⟩ + c‖p̄‖‖p_w‖ on [0, 1], a convex problem whose stationary point solves a quadratic (Liu et al. 2021);
- ``imtl_g``: α ∝ G⁺ diag(G)^{1/2} (equal projections onto the unit rows; Liu et al. 2021);
- ``nash_mtl``: the bargaining solution Gα = 1/α has α_m = 1/(‖p_m‖√(1 + cos θ)), so its direction is
  u_1 + u_2 (the unit rows); the step is that direction's unit vector times (‖p_1‖ + ‖p_2‖)/2;
- ``sum``, ``mean``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: The rules with a two-task closed form here.
TWO_TASK_RULES: tuple[str, ...] = ("sum", "mean", "mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl")


def _mgda(p: Tensor) -> Tensor:
    a, b = p[:, 0], p[:, 1]
    diff = a - b
    den = (diff * diff).sum(-1)
    num = ((b - a) * b).sum(-1)
    gamma = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.5).clamp(0.0, 1.0)
    return gamma.unsqueeze(-1) * a + (1 - gamma).unsqueeze(-1) * b


def _pcgrad(p: Tensor) -> Tensor:
    a, b = p[:, 0], p[:, 1]
    dot = (a * b).sum(-1, keepdim=True)
    aa = (a * a).sum(-1, keepdim=True)
    bb = (b * b).sum(-1, keepdim=True)
    conflict = dot < 0
    a_proj = torch.where(conflict, a - dot / torch.where(conflict, bb, 1.0) * b, a)
    b_proj = torch.where(conflict, b - dot / torch.where(conflict, aa, 1.0) * a, b)
    return a_proj + b_proj


def _cagrad(p: Tensor, c: float) -> Tensor:
    a, b = p[:, 0], p[:, 1]
    mean = (a + b) / 2
    phi = c * mean.norm(dim=-1)  # √φ = c‖p̄‖
    e = a - b
    big_a = (e * e).sum(-1)  # ‖p_w‖² = A w² + 2B w + C
    big_b = (e * b).sum(-1)
    big_c = (b * b).sum(-1)
    k = (e * mean).sum(-1)  # d⟨p_w, p̄⟩/dw
    disc = (big_a * big_c - big_b * big_b).clamp_min(0.0)
    denom = phi * phi * big_a - k * k
    # f'(w) = 0 ⇔ φ y = −k √q with y = A w + B, q = (y² + disc)/A: y² = k² disc / (φ²A − k²), sign(y) = −sign(k)
    ok = (denom > 0) & (big_a > 0)
    y = -torch.sign(k) * (k * k * disc / torch.where(ok, denom, 1.0)).sqrt()
    w_star = torch.where(ok, (y - big_b) / torch.where(big_a > 0, big_a, 1.0), 0.5).clamp(0.0, 1.0)
    candidates = torch.stack([w_star, torch.zeros_like(w_star), torch.ones_like(w_star)], dim=-1)  # [B, 3]
    q = (big_a.unsqueeze(-1) * candidates + 2 * big_b.unsqueeze(-1)) * candidates + big_c.unsqueeze(-1)
    # f(w) = ⟨p_w, p̄⟩ + c‖p̄‖‖p_w‖ = ⟨p_2, p̄⟩ + k w + √φ √q(w)
    value = (mean * b).sum(-1, keepdim=True) + k.unsqueeze(-1) * candidates + phi.unsqueeze(-1) * q.clamp_min(0).sqrt()
    w = candidates.gather(-1, value.argmin(-1, keepdim=True))  # the convex objective's minimum on [0, 1]
    p_w = w * a + (1 - w) * b
    norm_w = p_w.norm(dim=-1, keepdim=True)
    lam = torch.where(norm_w > 0, phi.unsqueeze(-1) / torch.where(norm_w > 0, norm_w, 1.0), 0.0)
    return mean + lam * p_w


def _imtl_g(p: Tensor) -> Tensor:
    gram = p @ p.transpose(-1, -2)  # [B, 2, 2]
    d = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    v = (torch.linalg.pinv(gram) @ d.unsqueeze(-1)).squeeze(-1)
    total = v.sum(-1, keepdim=True)
    weights = torch.where(total.abs() < 1e-12, 0.0, v / torch.where(total.abs() < 1e-12, 1.0, total))
    return (weights.unsqueeze(-1) * p).sum(-2)


def _nash_mtl(p: Tensor) -> Tensor:
    norms = p.norm(dim=-1, keepdim=True)  # [B, 2, 1]
    units = torch.where(norms > 0, p / torch.where(norms > 0, norms, 1.0), 0.0)
    direction = units.sum(-2)
    length = direction.norm(dim=-1, keepdim=True)
    # opposed rows (cos θ = −1): no bargaining solution; the step is 0, as Pareto stationarity asks
    return torch.where(length > 0, direction / torch.where(length > 0, length, 1.0), 0.0) * norms.mean(-2)


class TwoTaskRule:
    """A named rule's two-task closed form, batched (``batched = True``: the engine calls it once per step).

    Args:
        name: One of :data:`TWO_TASK_RULES`.
        c: CAGrad's c (default 0.5, the named rule's); only for ``cagrad``.
    """

    batched = True
    differentiable = False

    def __init__(self, name: str, **options: Any):
        if name not in TWO_TASK_RULES:
            raise ValueError(f"no two-task closed form for {name!r}; available: {list(TWO_TASK_RULES)}")
        unknown = sorted(set(options) - ({"c"} if name == "cagrad" else set()))
        if unknown:
            raise ValueError(f"two-task rule {name!r} has no option(s) {unknown}")
        c = options.get("c", 0.5)
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0:
            raise ValueError(f"cagrad's c must be a number >= 0, got {c!r}")
        self.name = name
        self.options = options
        forms: dict[str, Callable[[Tensor], Tensor]] = {
            "sum": lambda p: p.sum(-2),
            "mean": lambda p: p.mean(-2),
            "mgda": _mgda,
            "pcgrad": _pcgrad,
            "cagrad": lambda p: _cagrad(p, float(c)),
            "imtl_g": _imtl_g,
            "nash_mtl": _nash_mtl,
        }
        self._form = forms[name]

    def __call__(self, proposals: Tensor) -> Tensor:
        """C(P) for ``proposals [B, 2, n]`` (or one game's ``[2, n]``): ``[B, n]`` (or ``[n]``)."""
        if proposals.dim() == 2:
            return self(proposals.unsqueeze(0))[0]
        if proposals.dim() != 3 or proposals.shape[1] != 2:
            raise ValueError(f"two-task proposals must have shape [B, 2, n], got {tuple(proposals.shape)}")
        # the named rules' convention: act on P / s, s the largest row norm of each game, and scale back
        scale = proposals.detach().norm(dim=-1).amax(-1, keepdim=True)  # [B, 1]
        safe = torch.where(scale > 0, scale, 1.0)
        return self._form(proposals / safe.unsqueeze(-1)) * safe

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"TwoTaskRule({self.name!r}{opts})"
