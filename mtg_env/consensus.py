"""Consensus rules: how the shared trunk turns the players' proposals into one update.

Each agent m proposes a trunk update p_m (a row of the proposal matrix P ∈ R^{M×n}); the trunk moves by
Ψ ← Ψ + C(P). A rule is any callable ``C(P: Tensor[M, n]) -> Tensor[n]``; a rule that keeps state
across steps may define ``reset()``, which the env calls on every ``reset``.

| name   | C(P)          | paper                                                        |
|--------|---------------|--------------------------------------------------------------|
| `sum`  | Σ_m p_m       | Eq. 24 (Def. 3): with p_m = −β_t ∇_Ψ ℓ_m, Ψ ← Ψ − β_t Σ_m ∇_Ψ ℓ_m |
| `mean` | (1/M) Σ_m p_m | Eq. 20-21: the trunk block of the pseudo-gradient            |
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: A consensus rule: proposals ``P`` of shape ``[M, n]`` (rows = tasks) to one trunk update ``[n]``.
ConsensusRule = Callable[[Tensor], Tensor]


def sum_rule(proposals: Tensor) -> Tensor:
    """Sum of the proposals (Eq. 24)."""
    return proposals.sum(0)


def mean_rule(proposals: Tensor) -> Tensor:
    """Mean of the proposals (Eq. 21)."""
    return proposals.mean(0)


#: Built-in consensus rules by name.
CONSENSUS_RULES: dict[str, ConsensusRule] = {"sum": sum_rule, "mean": mean_rule}


def consensus_rule(rule: str | ConsensusRule) -> ConsensusRule:
    """Resolve a rule given by name (see :data:`CONSENSUS_RULES`) or pass a callable through.

    Raises:
        ValueError: for an unknown name; the message lists the available rules.
        TypeError: for anything that is neither a name nor a callable.
    """
    if isinstance(rule, str):
        try:
            return CONSENSUS_RULES[rule]
        except KeyError:
            raise ValueError(
                f"unknown consensus rule {rule!r}; available: {sorted(CONSENSUS_RULES)}, "
                "or pass a callable f(P: Tensor[M, n]) -> Tensor[n]"
            ) from None
    if callable(rule):
        return rule
    raise TypeError(f"consensus must be a rule name or a callable, got {type(rule).__name__}")


def rule_name(rule: ConsensusRule) -> str:
    """A short name for a rule, for reports: its registry name, else its repr."""
    for name, fn in CONSENSUS_RULES.items():
        if fn is rule:
            return name
    return getattr(rule, "__name__", repr(rule))
