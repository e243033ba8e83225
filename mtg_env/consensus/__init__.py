"""Consensus rules: how the shared trunk turns the players' proposals into one update.

Each agent m proposes a trunk update p_m (a row of the proposal matrix P ∈ R^{M×n}); the trunk moves by
Ψ ← Ψ + C(P). A rule is any callable ``C(P: Tensor[M, n]) -> Tensor[n]``; a rule that draws random
numbers may define ``bind(generator)``, which the engine calls before every call with a CPU
``torch.Generator`` seeded from the game's (seed, episode, step), so the seed decides every draw, on every
device alike (a rule on a CUDA game draws on the CPU and moves its draws to ``P.device``). A rule with
``loss_aware = True`` is called as ``C(P, losses)`` with the game's current
losses ``[M]``: the loss-based methods of :mod:`mtg_env.consensus.loss_rules` (FAMO, uncertainty weighting, DWA, DB-MTL,
GLS, GradNorm, and GradVac and FairGrad, which LibMTL ships and torchjd lacks).

State. The engine is pure (a step never modifies the state it is given), so a rule that keeps state across
steps gives it to the engine as tensors: ``init_state(M, n, dtype, device) -> dict[str, Tensor]`` (one game's
state at reset) and ``step(state, P, losses, generator) -> (C(P), new state)``, a pure function; the engine
carries every game's state in :attr:`mtg_env.engine.GameState.rule_state` and the env's checkpoints store it as
tensors. The rules of :mod:`mtg_env.consensus.loss_rules` and Nash-MTL (its warm start) work so. A callable that keeps
state on itself and defines ``reset()`` still works: every game gets its own reset copy, and each step moves a
copy of it (its state then cannot be checkpointed). See :func:`rule_state_kind`.

The rules of the multi-task learning literature come from `torchjd <https://torchjd.org>`_, whose
aggregators act on *gradients* (rows g_m, the trunk then moving by −A(G)). Proposals are descent steps,
p_m = −β g_m, so a torchjd aggregator A becomes the consensus rule

    C(P) = −A(−P),

the rows −P being the gradients scaled by β > 0. Every rule of the table is positively homogeneous,
C(s·P) = s·C(P) for s > 0 (:attr:`RuleSpec.homogeneous`), so C(P) = −β A(G): the agents' step sizes reach
the trunk. torchjd's cut-offs are absolute (e.g. CAGrad and UPGrad treat a squared norm below 1e-4 as
zero), and proposals carry the step sizes, so the aggregator is called on P / s with s the largest row norm
and its answer multiplied by s: the rule then holds C(s·P) = s·C(P) from s = 1e-8 to 1e8. Nash-MTL's
bargaining direction is scale-invariant by design (degree 0: Gα = 1/α fixes the step's size, which the
paper then sets with the optimizer's learning rate); here its step is the unit bargaining direction times
the proposals' mean norm (1/M) Σ_m ‖p_m‖, the agents' mean step, so it too is homogeneous; its
``max_norm`` option (default 0: none) caps the step. ``mgda`` is solved exactly (Wolfe's min-norm-point
algorithm, :mod:`mtg_env.consensus.minnorm`) for any number of tasks. See :data:`RULE_TABLE`.

The package: :mod:`~mtg_env.consensus.table` (the rule table and the type), :mod:`~mtg_env.consensus.rule`
(resolving a rule, torchjd's aggregators as rules, what the engine asks of a rule),
:mod:`~mtg_env.consensus.aggregators` (exact MGDA, Nash-MTL's bargaining solution, IMTL-G, Krum),
:mod:`~mtg_env.consensus.loss_base`, :mod:`~mtg_env.consensus.loss_weighting` and
:mod:`~mtg_env.consensus.loss_rules` (the loss-aware rules), :mod:`~mtg_env.consensus.gain` (the unanimity gain,
what a rule does to proposals every player makes alike, and whether a rule is linear),
:mod:`~mtg_env.consensus.two_task` (closed forms for two tasks) and :mod:`~mtg_env.consensus.minnorm` (Wolfe's
min-norm point). It imports only :mod:`mtg_env.rng`-level helpers below it; the engine imports it.
"""

from mtg_env.consensus.aggregators import IMTLGAggregator, KrumAggregator, MinNormAggregator, bargaining_weights
from mtg_env.consensus.gain import is_linear, is_min_bounded, unanimity_gain
from mtg_env.consensus.loss_base import LossRule
from mtg_env.consensus.loss_rules import LOSS_RULES, make_loss_rule
from mtg_env.consensus.rule import (
    AggregatorRule,
    apply_rule,
    consensus_rule,
    is_batched_rule,
    rule_config,
    rule_differentiable,
    rule_is_stateful,
    rule_loss_floor,
    rule_name,
    rule_state_kind,
    step_rule,
)
from mtg_env.consensus.table import (
    CONSENSUS_RULES,
    RULE_TABLE,
    ConsensusRule,
    ConsensusWarning,
    RuleSpec,
    RuleState,
    mean_rule,
    sum_rule,
)

__all__ = [
    "CONSENSUS_RULES",
    "LOSS_RULES",
    "RULE_TABLE",
    "AggregatorRule",
    "ConsensusRule",
    "ConsensusWarning",
    "IMTLGAggregator",
    "KrumAggregator",
    "LossRule",
    "MinNormAggregator",
    "RuleSpec",
    "RuleState",
    "apply_rule",
    "bargaining_weights",
    "consensus_rule",
    "is_batched_rule",
    "is_linear",
    "is_min_bounded",
    "make_loss_rule",
    "mean_rule",
    "rule_config",
    "rule_differentiable",
    "rule_is_stateful",
    "rule_loss_floor",
    "rule_name",
    "rule_state_kind",
    "step_rule",
    "sum_rule",
    "unanimity_gain",
]
