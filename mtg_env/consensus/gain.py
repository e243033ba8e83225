"""A consensus rule's unanimity gain: what it does to proposals every player makes alike (:func:`unanimity_gain`)."""

from __future__ import annotations

import math

import torch

from mtg_env._args import int_arg
from mtg_env._copy import deepcopy
from mtg_env.consensus.rule import apply_rule, is_batched_rule, rule_name, rule_state_kind, step_rule
from mtg_env.consensus.table import ConsensusRule


def unanimity_gain(rule: ConsensusRule, num_tasks: int) -> float:
    """γ with C(P) = γ·p when each of the ``num_tasks`` rows of P is one proposal p, every player proposing the same
    move: M for ``sum``, 1 for ``mean``, ``mgda``, ``upgrad`` and the other averaging rules. Measured once, in float64
    on the CPU, at the rule's fresh state (a stateful rule's ``init_state``, a copy of an object rule after
    ``reset()``), with seed 0 for a randomized rule and equal losses of 1 for a loss-aware one; γ = ⟨C(P), p⟩ on
    p = (1, −1, 1, −1)/2 (unit norm, so ``sum``'s γ is M exactly; a rule that moves every coordinate alike fails).

    M / γ is the scale at which unanimous proposals move the trunk as their sum would (what a rule trained under
    ``sum`` plays with ``sum_scaled``; see :class:`agents.learned.MLPRuleConfig`).

    Raises:
        ValueError: naming the rule, if ``num_tasks`` is not a positive int or C(P) is not a positive multiple of p
            (within a cosine of 1 − 1e-6): such a rule does not follow its players when they all agree.
    """
    m = int_arg("num_tasks", num_tasks, low=1)
    n = 4
    p = torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=torch.float64)  # unit norm, exact sums: sum's γ is M exactly
    proposals = p.expand(m, n).clone()
    losses = torch.ones(m, dtype=torch.float64)
    kind = rule_state_kind(rule)
    if is_batched_rule(rule):
        target = _copy_rule(rule) if kind == "object" else rule
        move = target(proposals.unsqueeze(0))[0]
    elif kind == "tensors":
        state = rule.init_state(m, n, torch.float64, "cpu")  # type: ignore[attr-defined]
        move, _ = step_rule(rule, state, proposals, 0, losses)
    else:
        move = apply_rule(_copy_rule(rule) if kind == "object" else rule, proposals, 0, losses)
    move = torch.as_tensor(move).detach().to(torch.float64)
    gain = float(move @ p) if move.shape == (n,) else math.nan
    if not (math.isfinite(gain) and gain > 0 and gain >= (1 - 1e-6) * float(move.norm())):
        raise ValueError(
            f"consensus rule {rule_name(rule)!r} moves unanimous proposals p [{m}, {n}] to {move.tolist()}, not to "
            f"a positive multiple of p = {p.tolist()}: its unanimity gain is undefined (a rule that follows its "
            "players when they all agree is needed to scale proposals as under sum)"
        )
    return gain


def _copy_rule(rule: ConsensusRule) -> ConsensusRule:
    """A fresh copy of a rule that keeps state on itself (the original is not touched)."""
    copy = deepcopy(rule)
    copy.reset()  # type: ignore[attr-defined]
    return copy
