"""Coalitions (Example 1 of Lee 2023): the multi-task game as a cooperative game, measured on the engine.

Tasks can form coalitions: the tasks of a coalition S share one trunk, which moves by the consensus of their
proposals only; each other task plays in its own coalition with its own copy of the trunk. A coalition
structure (a partition of the tasks) is then a set of independent sub-games, one per block, and a block's
worth depends only on its own members, so the game has a characteristic function.

**The characteristic function.** ℓ_m^S is task m's loss on the suite's ``split`` objective after ``horizon``
steps of the sub-game of S (only the members of S move: heads by −α ∇_Θm ℓ_m (Eq. 23), the trunk by the
consensus C of their proposals −β ∇_Ψ ℓ_m, Eq. 24 for ``sum``), every coalition from the same start (the same
seed: the same initial parameters and batches). Then

    v(S) = Σ_{m ∈ S} (ℓ_m^{{m}} − ℓ_m^S),      v(∅) = 0,  v({m}) = 0,

the loss the members of S save, after the same training, by sharing a trunk instead of each training alone,
averaged over the seeds. It is in the suite's loss units; the game is 0-normalised, so a positive Shapley value
means a task gains from cooperating. v differs from −Σ_{m∈S} ℓ_m^S by the additive game Σ_{m∈S} ℓ_m^{{m}}:
the two are strategically equivalent (the same best partition and core, Shapley values shifted by
ℓ_m^{{m}}), and this one is comparable across suites whose losses have different offsets (the quadratic suite's
losses are negative).

**All coalitions in one batch.** The engine plays B games of one :class:`~mtg_env.engine.Game` at once. Game b
plays coalition S_b: :class:`CoalitionRule` is a batched consensus rule (``[B, M, n] -> [B, n]``) holding the
membership mask ``[B, M]``, so game b's trunk moves by the consensus of its members' proposals only, and the
non-members' head updates are zero. With R seeds, the 2^M − 1 coalitions are R·(2^M − 1) games of one
``engine.step`` per step.

**What is computed** (:func:`analyse`): v(S) for every coalition (M ≤ :data:`MAX_EXHAUSTIVE_TASKS`), the exact
Shapley values, the core (empty or not, by linear programming: the least core's ε and a point of it), the best
partition into coalitions (exhaustive over set partitions for M ≤ :data:`MAX_PARTITION_TASKS`, greedy merging
beyond), and two groupings from the multi-task literature on the same game: the inter-task affinities of
Fifty et al. 2021 (TAG) and the network selection of Standley et al. 2020. ``method="greedy"`` plays only the
coalitions greedy merging visits (any M; no Shapley values, core or network selection).

**What to expect.** In a deterministic convex game (the quadratic suite) a shared trunk is a constraint: at
convergence no coalition beats its members training alone (v(S) ≤ 0 as T → ∞). A coalition is then worth
something only through the *speed* of training: under ``sum`` the members' trunk gradients add up, so tasks
whose trunk optima agree move their trunk faster together. With data (the regression and digits suites, the
``eval`` split) sharing also pools statistical strength. See ``docs/open_directions.md``.
"""

from __future__ import annotations

from mtg_env.coalitions.analysis import MAX_EXHAUSTIVE_TASKS, analyse
from mtg_env.coalitions.figures import write_figures
from mtg_env.coalitions.groupings import (
    NetworkSelection,
    loss_floors,
    select_networks,
    tag_affinities,
    tag_group_values,
)
from mtg_env.coalitions.masks import coalition_mask, members
from mtg_env.coalitions.play import (
    COALITION_RULES,
    CURVE_POINTS,
    DIVERGENCE,
    CoalitionConfig,
    CoalitionPlay,
    CoalitionRule,
    block_quadratic,
    curve_steps,
    default_lr,
    play_coalitions,
    values_from_losses,
)
from mtg_env.coalitions.report import CoalitionAnalysis
from mtg_env.coalitions.theory import (
    MAX_PARTITION_TASKS,
    CoreResult,
    Partition,
    best_partition,
    core,
    greedy_partition,
    in_core,
    rand_index,
    set_partitions,
    shapley_values,
)

__all__ = [
    "COALITION_RULES",
    "CURVE_POINTS",
    "DIVERGENCE",
    "MAX_EXHAUSTIVE_TASKS",
    "MAX_PARTITION_TASKS",
    "CoalitionAnalysis",
    "CoalitionConfig",
    "CoalitionPlay",
    "CoalitionRule",
    "CoreResult",
    "NetworkSelection",
    "Partition",
    "analyse",
    "best_partition",
    "block_quadratic",
    "coalition_mask",
    "core",
    "curve_steps",
    "default_lr",
    "greedy_partition",
    "in_core",
    "loss_floors",
    "members",
    "play_coalitions",
    "rand_index",
    "select_networks",
    "set_partitions",
    "shapley_values",
    "tag_affinities",
    "tag_group_values",
    "values_from_losses",
    "write_figures",
]
