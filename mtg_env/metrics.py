"""How far play is from an equilibrium (DESIGN.md §2): Nash gap, stationarity, Pareto stationarity, V.

Pure functions of the game's tensors; the env exposes them as ``env.metrics()`` and, every
``metrics_every`` steps, as ``infos[agent]["metrics"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtg_env import _copy
from mtg_env.consensus import AggregatorRule, ConsensusRule, consensus_rule, rule_state_kind
from mtg_env.consensus.minnorm import min_norm_convex_combination, pareto_stationarity
from mtg_env.suites.base import Split, TaskSuite

__all__ = ["game_metrics", "lyapunov", "min_norm_convex_combination", "pareto_stationarity"]


def game_metrics(
    suite: TaskSuite,
    heads: Tensor,
    trunk: Tensor,
    rule: ConsensusRule,
    split: Split = "eval",
    equilibrium: tuple[Tensor, Tensor] | None = None,
    rule_state: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Every equilibrium metric of the game at ``(heads, trunk)``, on the whole ``split`` objective.

    Returns a dict with, per task (lists in task order):
        ``loss``; ``nash_gap`` (Definition 1, ℓ_m(Θ_m, Ψ) − min_Θ ℓ_m(Θ, Ψ)); ``stationarity``
        ‖∇_Θm ℓ_m‖ (Eq. 19);
    and for the whole game:
        ``nash_gap_total`` (Σ_m); ``nash_gap_exact`` (False when the best response is approximate);
        ``consensus_residual`` ‖C(−∇_Ψ ℓ_1, …, −∇_Ψ ℓ_M)‖, the trunk's step under the rule with unit step
        sizes (zero at a fixed point of the consensus dynamics; a torchjd rule is called on a fresh copy, a
        stateful rule of :mod:`mtg_env.consensus.loss_rules` on ``rule_state`` (one game's state; else its own) without
        losses, which moves nothing, a callable of your own on a copy); ``pareto_stationarity``; and, where the
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
        residual = float(_measure(rule, suite.num_tasks, -jacobian, rule_state).to(torch.float64).norm())
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


def _measure(rule: ConsensusRule, num_tasks: int, proposals: Tensor, rule_state: Mapping[str, Tensor] | None) -> Tensor:
    """C(P) measured without changing the game: a torchjd rule on a fresh copy with its own generator (Nash-MTL's
    warm start, a randomized rule's draws); a stateful rule of :mod:`mtg_env.consensus.loss_rules` on the game's state
    without losses (a randomized one drawing from a generator seeded 0, as a fresh torchjd rule does); any other
    callable on a copy."""
    if isinstance(rule, AggregatorRule):
        return consensus_rule(rule.name, num_tasks=num_tasks, **rule.options)(proposals)
    if rule_state is not None and rule_state_kind(rule) == "tensors":
        move, _ = rule.step(dict(rule_state), proposals, None, torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
        return move  # type: ignore[no-any-return]
    if rule_state_kind(rule) == "object":
        return _copy.deepcopy(rule)(proposals)
    return rule(proposals)


def lyapunov(heads: Tensor, trunk: Tensor, heads_star: Tensor, trunk_star: Tensor) -> float:
    """V = Σ_m ‖Θ_m − Θ_m*‖² + ‖Ψ − Ψ*‖² (Eq. 28), in float64."""
    dh = heads.detach().to(torch.float64) - heads_star.detach().to(torch.float64)
    dt = trunk.detach().to(torch.float64) - trunk_star.detach().to(torch.float64)
    return float(dh.square().sum() + dt.square().sum())
