"""How far play is from an equilibrium (DESIGN.md §2): Nash gap, stationarity, Pareto stationarity, V.

Pure functions of the game's tensors; the env exposes them as ``env.metrics()`` and, every
``metrics_every`` steps, as ``infos[agent]["metrics"]``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import Tensor

from mtg_env.consensus import AggregatorRule, ConsensusRule, consensus_rule
from mtg_env.suites.base import Split, TaskSuite


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


def game_metrics(
    suite: TaskSuite,
    heads: Tensor,
    trunk: Tensor,
    rule: ConsensusRule,
    split: Split = "eval",
    equilibrium: tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """Every equilibrium metric of the game at ``(heads, trunk)``, on the whole ``split`` objective.

    Returns a dict with, per task (lists in task order):
        ``loss``; ``nash_gap`` (Definition 1, ℓ_m(Θ_m, Ψ) − min_Θ ℓ_m(Θ, Ψ)); ``stationarity``
        ‖∇_Θm ℓ_m‖ (Eq. 19);
    and for the whole game:
        ``nash_gap_total`` (Σ_m); ``nash_gap_exact`` (False when the best response is approximate);
        ``consensus_residual`` ‖C(−∇_Ψ ℓ_1, …, −∇_Ψ ℓ_M)‖, the trunk's step under the rule with unit step
        sizes (zero at a fixed point of the consensus dynamics; a named rule is called on a fresh copy, a
        callable once as it is); ``pareto_stationarity``; and, where the
        equilibrium is known (argument, or the suite's closed form), ``lyapunov`` V (Eq. 28) and
        ``distance`` √V to it.
    """
    batch = suite.batch_for(split)
    from mtg_env.engine.core import losses_and_grads

    losses, head_grads, jacobian = (
        x[0] for x in losses_and_grads(suite, heads.detach().unsqueeze(0), trunk.detach().unsqueeze(0), batch)
    )
    out: dict[str, Any]
    if all(bool(torch.isfinite(x).all()) for x in (heads, trunk, losses, head_grads, jacobian)):
        sq = torch.zeros(suite.num_tasks, dtype=torch.float64, device=head_grads.device)
        sq.index_add_(0, suite.head_task_index(), head_grads.to(torch.float64).square())
        gaps = suite.nash_gaps(heads, trunk, split)
        residual = float(_without_side_effects(rule, suite.num_tasks)(-jacobian).to(torch.float64).norm())
        out = {
            "loss": losses.tolist(),
            "nash_gap": gaps.tolist(),
            "stationarity": sq.sqrt().tolist(),
            "nash_gap_total": float(gaps.sum()),
            "nash_gap_exact": bool(suite.exact_best_response),
            "consensus_residual": residual,
            "pareto_stationarity": pareto_stationarity(jacobian),
        }
    else:
        out = _undefined_metrics(suite.num_tasks, losses)
    star = equilibrium if equilibrium is not None else suite.equilibrium()
    if star is not None:
        v = lyapunov(heads, trunk, *star)
        out["lyapunov"] = v
        out["distance"] = v**0.5
    return out


def _undefined_metrics(num_tasks: int, losses: Tensor) -> dict[str, Any]:
    """The metrics of a state whose parameters, losses or gradients are not finite (a diverged game): the losses
    as they are and NaN for every equilibrium measure, which is undefined there (the solvers behind them would
    fail on inf or NaN input)."""
    nan = float("nan")
    return {
        "loss": losses.tolist(),
        "nash_gap": [nan] * num_tasks,
        "stationarity": [nan] * num_tasks,
        "nash_gap_total": nan,
        "nash_gap_exact": False,
        "consensus_residual": nan,
        "pareto_stationarity": nan,
    }


def _without_side_effects(rule: ConsensusRule, num_tasks: int) -> ConsensusRule:
    """A copy of a named rule with its own state and generator, so measuring does not change the game
    (Nash-MTL's warm start, a randomized rule's draws from the env's generator)."""
    if isinstance(rule, AggregatorRule):
        return consensus_rule(rule.name, num_tasks=num_tasks, **rule.options)
    return rule


def lyapunov(heads: Tensor, trunk: Tensor, heads_star: Tensor, trunk_star: Tensor) -> float:
    """V = Σ_m ‖Θ_m − Θ_m*‖² + ‖Ψ − Ψ*‖² (Eq. 28), in float64."""
    dh = heads.detach().to(torch.float64) - heads_star.detach().to(torch.float64)
    dt = trunk.detach().to(torch.float64) - trunk_star.detach().to(torch.float64)
    return float(dh.square().sum() + dt.square().sum())
