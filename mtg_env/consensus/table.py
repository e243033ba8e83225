"""The table of built-in consensus rules (:data:`RULE_TABLE`), the paper's own ``sum`` and ``mean``, and the rule type.

See :mod:`mtg_env.consensus` for the conventions (C(P) = −A(−P), homogeneity, state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


class ConsensusWarning(UserWarning):
    """A consensus rule could not do what it promises this step (e.g. Nash-MTL's solver failed)."""


#: A consensus rule: proposals ``P`` of shape ``[M, n]`` (rows = tasks) to one trunk update ``[n]``.
ConsensusRule = Callable[[Tensor], Tensor]
#: One game's state of a stateful rule: tensors by name (see :func:`rule_state_kind`).
RuleState = dict[str, Tensor]


def sum_rule(proposals: Tensor) -> Tensor:
    """Sum of the proposals (Eq. 24); batched: ``[..., M, n] -> [..., n]``."""
    return proposals.sum(-2)


def mean_rule(proposals: Tensor) -> Tensor:
    """Mean of the proposals (Eq. 21); batched: ``[..., M, n] -> [..., n]``."""
    return proposals.mean(-2)


@dataclass(frozen=True)
class RuleSpec:
    """A named consensus rule: what it does, where it comes from, and how to build it."""

    meaning: str
    """One line: what C(P) is."""
    paper: str
    """Where the rule is defined."""
    aggregator: str | None = None
    """The torchjd aggregator class behind it (``None`` for our own sum, mean and exact mgda)."""
    randomized: bool = False
    """Whether the rule draws random numbers (then the env's generator feeds it)."""
    min_tasks: int = 1
    """Fewest tasks the rule is defined for (with its default options)."""
    differentiable: bool = True
    """Whether its output is differentiable in the proposals (a differentiable unroll can pass through it);
    rules solved by quadprog or cvxpy are not, nor are torchjd's aggregators that run under ``no_grad``
    (PCGrad, GradDrop, IMTL-G); tested: a rule marked differentiable returns an output with a graph."""
    homogeneous: bool = False
    """Whether C(s·P) = s·C(P) for every s > 0 (tested for s in [1e-8, 1e8]): the rule is positively
    homogeneous by its paper (or, for ``nash_mtl``, by its step-size convention), and the env calls the torchjd
    aggregator on P / s(P), s(P) its largest row norm, and multiplies back, so torchjd's absolute cut-offs
    (e.g. a squared norm below 1e-4) act on a matrix of unit scale, whatever the agents' step sizes."""


#: Every rule available by name: ``consensus="<name>"`` in the env, or :func:`consensus_rule`.
RULE_TABLE: dict[str, RuleSpec] = {
    "sum": RuleSpec("Σ_m p_m", "Lee 2023, Eq. 24 (Definition 3)", homogeneous=True),
    "mean": RuleSpec("(1/M) Σ_m p_m", "Lee 2023, Eq. 20-21 (pseudo-gradient)", homogeneous=True),
    "mgda": RuleSpec(
        "minimum-norm point of the convex hull of the proposals (exact: Wolfe's min-norm-point algorithm)",
        "Désidéri 2012; Sener & Koltun 2018",
        homogeneous=True,
    ),
    "pcgrad": RuleSpec(
        "each proposal projected off the ones it conflicts with (random order), then summed",
        "Yu et al. 2020 (PCGrad)",
        "PCGrad",
        randomized=True,
        differentiable=False,
        homogeneous=True,
    ),
    "cagrad": RuleSpec(
        "the mean, moved to raise the worst task's improvement within a ball of radius c·‖mean‖ (c=0.5); 0 where the "
        "solve's combination of the Gram-normalised proposals is under 1e-4 long (torchjd's Pareto-front stop: one "
        "task's proposal a few 1e-4 of the others' or shorter stops the trunk)",
        "Liu et al. 2021 (CAGrad)",
        "CAGrad",
        differentiable=False,
        homogeneous=True,
    ),
    "nash_mtl": RuleSpec(
        "the Nash bargaining direction Σ α_m p_m (Gα = 1/α), scaled to the proposals' mean norm (1/M) Σ_m ‖p_m‖",
        "Navon et al. 2022 (Nash-MTL)",
        "NashMTL",
        differentiable=False,
        homogeneous=True,
    ),
    "upgrad": RuleSpec(
        "mean of the proposals each projected onto the dual cone of all of them (never conflicts)",
        "Quinton & Rey 2024 (Jacobian descent, UPGrad)",
        "UPGrad",
        differentiable=False,
        homogeneous=True,
    ),
    "imtl_g": RuleSpec(
        "Σ α_m p_m with equal projections onto every unit proposal",
        "Liu et al. 2021 (IMTL-G)",
        "IMTLG",
        differentiable=False,
        homogeneous=True,
    ),
    "aligned_mtl": RuleSpec(
        "proposals orthonormalised by the Gram eigen-decomposition (condition number 1), then summed",
        "Senushkin et al. 2023 (Aligned-MTL)",
        "AlignedMTL",
        homogeneous=True,
    ),
    "dualproj": RuleSpec(
        "the mean projected onto the dual cone of the proposals",
        "Lopez-Paz & Ranzato 2017 (A-GEM/DualProj)",
        "DualProj",
        differentiable=False,
        homogeneous=True,
    ),
    "graddrop": RuleSpec(
        "per coordinate, keep only the proposals of one sign, drawn by sign purity",
        "Chen et al. 2020 (GradDrop)",
        "GradDrop",
        randomized=True,
        differentiable=False,
        homogeneous=True,
    ),
    "random": RuleSpec(
        "Σ w_m p_m with w = softmax(N(0, I)) drawn every step (random loss weighting)",
        "Lin et al. 2022 (RLW)",
        "Random",
        randomized=True,
        homogeneous=True,
    ),
    "krum": RuleSpec(
        "the proposal closest to its M − f − 2 nearest others (f = n_byzantine, default 1 if M ≥ 4)",
        "Blanchard et al. 2017 (Krum)",
        "Krum",
        min_tasks=3,
        homogeneous=True,
    ),
    "trimmed_mean": RuleSpec(
        "per coordinate, the mean after dropping the trim_number (default 1) largest and smallest",
        "Yin et al. 2018 (trimmed mean)",
        "TrimmedMean",
        min_tasks=3,
        homogeneous=True,
    ),
    # Loss-aware and stateful rules (mtg_env.consensus.loss_rules): they see the current losses and keep state per game.
    "uw": RuleSpec(
        "Σ p_m / (2 e^{s_m}), the log variances s learned on Σ ℓ_m / (2 e^{s_m}) + s_m / 2 (loss-aware)",
        "Kendall et al. 2018 (uncertainty weighting)",
    ),
    "dwa": RuleSpec(
        "Σ w_m p_m, w = M softmax(r / T), r_m = ℓ_m now / ℓ_m a step earlier, T = 2 (loss-aware; losses > 0)",
        "Liu et al. 2019 (DWA)",
    ),
    "famo": RuleSpec(
        "Σ w_m p_m, w ∝ softmax(ξ)_m / ℓ_m, the logits ξ moved by Adam to balance the log-loss decreases "
        "(loss-aware; losses > 0)",
        "Liu et al. 2023 (FAMO)",
    ),
    "gradvac": RuleSpec(
        "each proposal moved towards the others (random order) up to EMA targets of their cosines, then summed",
        "Wang et al. 2021 (GradVac)",
        randomized=True,
    ),
    "fairgrad": RuleSpec(
        "Σ w_m p_m with (P Pᵀ) w = w^{-1/α}, the α-fair allocation; C(βP) = β^{(1-α)/(1+α)} C(P), scale-invariant "
        "at the default α = 1",
        "Ban & Ji 2024 (FairGrad)",
        differentiable=False,
    ),
    "db_mtl": RuleSpec(
        "log-loss proposals p_m / ℓ_m averaged over steps, each scaled to the longest, summed (loss-aware; losses > 0)",
        "Lin et al. 2023 (DB-MTL)",
    ),
    "gls": RuleSpec(
        "the gradient of (Π ℓ_m)^{1/M}: (1/M)(Π ℓ)^{1/M} Σ p_m / ℓ_m (loss-aware; losses > 0)",
        "Chennupati et al. 2019 (geometric loss strategy)",
    ),
    "gradnorm": RuleSpec(
        "Σ w_m p_m, w = M softmax(s), s learned by Adam to equalise ‖w_m p_m‖ up to loss-ratio targets (α = 1.5; "
        "loss-aware; losses > 0)",
        "Chen et al. 2018 (GradNorm)",
    ),
}

#: Names of the built-in consensus rules.
CONSENSUS_RULES: tuple[str, ...] = tuple(RULE_TABLE)

_OWN_RULES: dict[str, ConsensusRule] = {"sum": sum_rule, "mean": mean_rule}
#: Rules built by :mod:`mtg_env.consensus.loss_rules`.
_LOSS_RULES = ("uw", "dwa", "famo", "gradvac", "fairgrad", "db_mtl", "gls", "gradnorm")
