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

import functools
import itertools
import math
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env._args import choice_arg, int_arg, real_arg
from mtg_env._io import dump_json, write_atomic
from mtg_env.consensus import apply_rule, consensus_rule
from mtg_env.engine import Game, GameRNG, reset, step
from mtg_env.rng import check_seed
from mtg_env.suites import QuadraticSuite, TaskSuite, make_suite

#: Most tasks for which :func:`analyse` plays every coalition (2^12 − 1 = 4095 per seed) and computes exact
#: Shapley values and the core.
MAX_EXHAUSTIVE_TASKS = 12
#: Most tasks for which the best partition is found by enumerating every set partition (Bell(8) = 4140);
#: greedy merging beyond.
MAX_PARTITION_TASKS = 8
#: Consensus rules a coalition can play: the batched ``sum`` (Eq. 24) and ``mean`` (Eq. 21), and the
#: deterministic rules defined for any number of proposals (applied to each game's members, game by game).
COALITION_RULES = ("sum", "mean", "mgda", "upgrad", "dualproj", "cagrad", "imtl_g", "aligned_mtl")
#: A member's loss beyond this many times max(1, |its start|) means the coalition diverged (the engine's default).
DIVERGENCE = 1e3
#: Points of the convergence trajectories (evaluations of the split objective for every game).
CURVE_POINTS = 21
#: Most set-of-networks combinations the network selection of Standley et al. enumerates.
_MAX_SELECTIONS = 5_000_000


# ----------------------------------------------------------------------------------------- coalitions as bits
def coalition_mask(tasks: Iterable[int]) -> int:
    """The bitmask of a coalition (bit k set for player k): ``coalition_mask([0, 2]) == 5``."""
    mask = 0
    for k in tasks:
        mask |= 1 << int(k)
    return mask


def members(mask: int) -> tuple[int, ...]:
    """The players of a coalition bitmask, in increasing order: ``members(5) == (0, 2)``."""
    return tuple(k for k in range(int(mask).bit_length()) if mask >> k & 1)


def _label(mask: int, names: Sequence[str] | None = None) -> str:
    shown = members(mask) if names is None else tuple(names[k] for k in members(mask))
    return "{" + ", ".join(str(k) for k in shown) + "}"


# ---------------------------------------------------------------------------------------------- the rule
class CoalitionRule:
    """A batched consensus rule for B games, game b played by coalition S_b: ``[B, M, n] -> [B, n]``.

    Game b's trunk moves by ``rule`` applied to the proposals of S_b's members only (the rows of the other
    tasks are ignored, whatever they hold). ``sum`` and ``mean`` run on the whole batch at once; the other
    rules of :data:`COALITION_RULES` game by game, on the members' rows.

    Args:
        members: ``[B, M]`` bool, ``members[b, m]``: task m is in game b's coalition (each row non-empty).
        rule: A name from :data:`COALITION_RULES`.
    """

    batched = True

    def __init__(self, members: Tensor, rule: str = "sum"):
        self.rule = choice_arg("rule", rule, COALITION_RULES)
        if not isinstance(members, Tensor) or members.dim() != 2 or members.dtype != torch.bool:
            raise ValueError("members must be a [B, M] bool tensor (game b's coalition in row b)")
        if members.shape[0] and not bool(members.any(1).all()):
            raise ValueError("members: every game's coalition must have at least one task")
        self.members = members
        self._sizes = members.sum(1, keepdim=True)
        self._inner = None if rule in ("sum", "mean") else consensus_rule(rule)

    def __call__(self, proposals: Tensor) -> Tensor:
        mask = self.members.to(proposals.device)
        if proposals.shape[:2] != mask.shape:
            raise ValueError(
                f"proposals have shape {tuple(proposals.shape)}, expected ({mask.shape[0]}, {mask.shape[1]}, n): "
                "one row per game and task"
            )
        if self._inner is None:
            # torch.where, not a product: a non-member's row may hold inf or NaN, and inf·0 is NaN.
            total = torch.where(mask.unsqueeze(-1), proposals, torch.zeros((), dtype=proposals.dtype)).sum(1)
            return total / self._sizes.to(total) if self.rule == "mean" else total
        return torch.stack([apply_rule(self._inner, p[m], 0) for p, m in zip(proposals, mask, strict=True)])

    def __repr__(self) -> str:
        games, tasks = self.members.shape
        return f"CoalitionRule(members=<bool tensor ({games}, {tasks})>, rule={self.rule!r})"


# -------------------------------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class CoalitionConfig:
    """How every coalition is trained (the same for all of them); checked when built."""

    horizon: int = 100
    """T: training steps of every coalition's sub-game (v is read after step T)."""
    lr: float = 0.1
    """α: the members' head step size (constant)."""
    trunk_lr: float | None = None
    """β: the trunk step size in the proposals −β ∇_Ψ ℓ_m (default: ``lr``)."""
    rule: str = "sum"
    """The consensus rule of a coalition's members (:data:`COALITION_RULES`; ``sum`` is Eq. 24)."""
    seeds: Sequence[int] = (0,)
    """Seeds of the start and the batches; v is the mean over them (every coalition sees the same seeds)."""
    split: str = "eval"
    """The objective v reads at the end: ``eval`` (held-out) or ``train`` (the whole training set)."""
    tag_every: int = 1
    """TAG's affinities are averaged over the steps 0, k, 2k, … < T of the grand coalition's training."""

    def __post_init__(self) -> None:
        int_arg("horizon", self.horizon, low=1, hint="training steps of each coalition")
        real_arg("lr", self.lr, low=0.0, low_open=True, hint="the head step size")
        if self.trunk_lr is not None:
            real_arg("trunk_lr", self.trunk_lr, low=0.0, low_open=True, hint="the trunk step size")
        choice_arg("rule", self.rule, COALITION_RULES)
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Sequence) or not self.seeds:
            raise ValueError(f"seeds must be a non-empty list of seeds, got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(check_seed(s, f"seeds[{i}]") for i, s in enumerate(self.seeds)))
        choice_arg("split", self.split, ("eval", "train"))
        int_arg("tag_every", self.tag_every, low=1, hint="steps between TAG lookaheads")

    @property
    def beta(self) -> float:
        return self.lr if self.trunk_lr is None else float(self.trunk_lr)


# ---------------------------------------------------------------------------------------- playing coalitions
@dataclass(frozen=True)
class CoalitionPlay:
    """The coalitions of one batch, played: per seed, coalition and player, the final losses."""

    masks: tuple[int, ...]
    """The coalitions (bitmasks over the players), one per column of the arrays below."""
    losses: np.ndarray
    """``[R, C, P]`` ℓ_m^S on the config's split after T steps (NaN where m ∉ S)."""
    curves: np.ndarray
    """``[R, C, K]`` Σ_{m ∈ S} ℓ_m on the config's split at the steps :func:`curve_steps` (the trajectory)."""
    games: int
    """Games in the batch (R · C)."""
    seconds: float
    """Wall time of the batched play (reset, T steps, final losses)."""


def _check_players(suite: TaskSuite, tasks: Sequence[int] | None) -> tuple[int, ...]:
    if tasks is None:
        players = tuple(range(suite.num_tasks))
    else:
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise TypeError(f"tasks must be a list of task indices, got {type(tasks).__name__} {tasks!r}")
        players = tuple(int_arg(f"tasks[{i}]", t, 0, suite.num_tasks - 1) for i, t in enumerate(tasks))
        if len(set(players)) != len(players):
            raise ValueError(f"tasks must not repeat a task, got {list(tasks)}")
    if not players:
        raise ValueError("tasks is empty: a coalition game needs at least one task (player)")
    return players


def _coalition_game(suite: TaskSuite, member: Tensor, config: Any) -> tuple[Game, Tensor]:
    """The game whose game b plays the coalition ``member[b]``, and the member mask of every head coordinate. No
    divergence threshold: a non-member's loss may wander (its head is frozen while the trunk moves)."""
    game = Game(
        suite,
        CoalitionRule(member, config.rule),
        action_mode="update",
        horizon=config.horizon,
        divergence_threshold=None,
    )
    return game, member[:, game.head_index]


def play_coalitions(
    suite: TaskSuite, masks: Sequence[int], config: CoalitionConfig, players: Sequence[int] | None = None
) -> CoalitionPlay:
    """Play every coalition of ``masks`` (bitmasks over ``players``) for every seed: one batch of R·C games.

    Args:
        suite: The tasks.
        masks: Non-empty coalitions, bit k for player k.
        config: Horizon, step sizes, rule, seeds and split.
        players: The suite's tasks that play (default all); the others never move and never count.

    Raises:
        ValueError: for an empty or out-of-range coalition, or when a coalition diverges (lower the steps).
    """
    players = _check_players(suite, players)
    p, m_all = len(players), suite.num_tasks
    masks = tuple(int(s) for s in masks)
    for s in masks:
        if s <= 0 or s >= 1 << p:
            raise ValueError(f"coalition mask {s} is not a non-empty coalition of the {p} players")
    seeds, c = config.seeds, len(masks)
    device = suite.device
    bits = torch.tensor([[s >> k & 1 for k in range(p)] for s in masks], dtype=torch.bool, device=device)
    member = torch.zeros(c, m_all, dtype=torch.bool, device=device)
    member[:, list(players)] = bits
    member = member.repeat(len(seeds), 1)  # game b = r·C + c: seed r, coalition c
    seed_t = torch.tensor(seeds, dtype=torch.int64, device=device).repeat_interleave(c)
    # The members' losses are checked below.
    game, head_member = _coalition_game(suite, member, config)
    start = time.perf_counter()
    curves = []
    marks = set(curve_steps(config.horizon))
    objective = suite.batch_for(config.split)  # type: ignore[arg-type]
    with torch.no_grad():
        state, _ = reset(game, seed_t)
        zero = torch.zeros((), dtype=suite.dtype, device=device)
        for t in range(config.horizon + 1):
            if t in marks:
                final = suite.batched_losses(state.heads, state.trunk, objective)
                curves.append(_member_sum(final, member))
            if t < config.horizon:
                heads = torch.where(head_member, -config.lr * state.head_grads, zero)
                state, _ = step(game, state, (heads, -config.beta * state.jacobian))
    seconds = time.perf_counter() - start
    # The engine's divergence rule, on the members only: a loss not finite, or beyond DIVERGENCE x its start.
    bound = DIVERGENCE * state.start_losses.abs().clamp_min(1.0)
    blown = ~torch.isfinite(final) | ~torch.isfinite(state.losses) | (state.losses.abs() > bound)
    bad = (blown & member).any(1)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise ValueError(
            f"coalition {_label(masks[b % c])} (seed {seeds[b // c]}) diverged (a member's loss left "
            f"{DIVERGENCE:g} x its start or stopped being finite within {config.horizon} steps); lower lr "
            f"({config.lr}) or trunk_lr ({config.beta})"
        )
    final = torch.where(member, final, torch.full_like(final, math.nan))[:, list(players)]
    losses = final.double().cpu().numpy().reshape(len(seeds), c, p)
    curve = torch.stack(curves, 1).double().cpu().numpy().reshape(len(seeds), c, len(marks))
    return CoalitionPlay(masks, losses, curve, int(seed_t.numel()), seconds)


def curve_steps(horizon: int) -> list[int]:
    """The steps at which the trajectories are read: 0, ``horizon`` and evenly spaced ones between, 21 at most (each
    costs a pass over the split for every game, as much as several training steps)."""
    return sorted({round(x) for x in np.linspace(0, horizon, min(horizon, CURVE_POINTS - 1) + 1)})


def _member_sum(losses: Tensor, member: Tensor) -> Tensor:
    return torch.where(member, losses, torch.zeros((), dtype=losses.dtype)).sum(1)


def values_from_losses(masks: Sequence[int], losses: np.ndarray, num_players: int) -> np.ndarray:
    """v of every coalition (one per mask, per seed ``[R, C]``) from ℓ_m^S ``[R, C, P]``: Σ_{m∈S} (ℓ_m^{{m}} −
    ℓ_m^S). Every singleton must be among ``masks``."""
    index = {s: i for i, s in enumerate(masks)}
    missing = [k for k in range(num_players) if 1 << k not in index]
    if missing:
        raise ValueError(f"the singletons of players {missing} are needed (their alone losses) and were not played")
    alone = np.stack([losses[:, index[1 << k], k] for k in range(num_players)], 1)  # [R, P]
    saved = alone[:, None, :] - losses
    return np.nansum(saved, axis=2)


# ------------------------------------------------------------------------------- cooperative game theory
def _check_game(values: Any) -> tuple[np.ndarray, int]:
    """A characteristic function as a float array of length 2^M indexed by coalition bitmask, v(∅) = 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2 or v.size & (v.size - 1):
        raise ValueError(
            f"values must list v(S) for every coalition bitmask S = 0 .. 2^M - 1 (a length that is a power of 2 "
            f">= 2), got shape {v.shape}"
        )
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    if v[0] != 0.0:
        raise ValueError(f"values[0] is v(empty set) and must be 0, got {v[0]!r}")
    return v, v.size.bit_length() - 1


def shapley_values(values: Any) -> np.ndarray:
    """Exact Shapley values φ_m = Σ_{S ∌ m} |S|!(M−|S|−1)!/M! (v(S ∪ {m}) − v(S)) of a characteristic function
    given for every coalition bitmask (``values[0] = 0``). They sum to v(all players) (efficiency)."""
    v, m = _check_game(values)
    if m > 20:
        raise ValueError(f"exact Shapley values enumerate 2^M coalitions; M = {m} is too many (at most 20)")
    masks = np.arange(v.size)
    sizes = np.array([bin(s).count("1") for s in range(v.size)])
    weight = np.array([math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)])
    phi = np.zeros(m)
    for k in range(m):
        without = masks[(masks >> k & 1) == 0]
        phi[k] = float(np.sum(weight[sizes[without]] * (v[without | (1 << k)] - v[without])))
    return phi


@dataclass(frozen=True)
class CoreResult:
    """The core of a game for a coalition structure: the allocations x that give each block exactly its worth,
    Σ_{m∈B} x_m = v(B), and every coalition at least its own, Σ_{m∈S} x_m ≥ v(S) (Aumann & Drèze 1974; for the
    grand coalition alone, the classical core: Σ_m x_m = v(N))."""

    structure: tuple[int, ...]
    """The blocks (bitmasks) whose worths are shared out: ``(N,)`` for the classical core."""
    nonempty: bool
    """Whether the core holds a point (the least core's ε ≥ −tolerance)."""
    epsilon: float
    """The least core's ε: the largest e with x(S) ≥ v(S) + e for every coalition S that is not a block (∞ when
    there is none). The core is non-empty iff ε ≥ 0; when negative, −ε is how short of its worth some coalition
    must be left, whatever the allocation."""
    point: tuple[float, ...]
    """A point of the least core (in the core when ``nonempty``)."""
    tolerance: float
    """The round-off allowance used for ``nonempty``."""


def core(values: Any, tol: float | None = None, structure: Sequence[int] | None = None) -> CoreResult:
    """Whether the core of a characteristic function is empty, and a point of its least core, by one LP
    (``scipy.optimize.linprog``, HiGHS): maximise ε subject to x(S) ≥ v(S) + ε for every non-empty coalition S
    that is not a block, and x(B) = v(B) for every block B of ``structure``.

    Args:
        values: v(S) for every coalition bitmask (``values[0] = 0``).
        tol: ε ≥ −tol counts as non-empty (default 1e-9 · max(1, max |v|)).
        structure: A partition of the players into blocks (bitmasks); default the grand coalition (the
            classical core).
    """
    v, m = _check_game(values)
    tol = _tolerance(v) if tol is None else real_arg("tol", tol, low=0.0)
    full = v.size - 1
    blocks = (full,) if structure is None else tuple(int(b) for b in structure)
    if any(b <= 0 for b in blocks) or sum(blocks) != full or functools.reduce(operator.or_, blocks, 0) != full:
        raise ValueError(f"structure must be a partition of the {m} players into non-empty blocks, got {list(blocks)}")
    others = np.array([s for s in range(1, full + 1) if s not in blocks], dtype=np.int64)
    if others.size == 0:  # one player: x = v(N)
        return CoreResult(blocks, True, math.inf, tuple(float(v[b]) for b in blocks), tol)
    from scipy.optimize import linprog

    def bits(masks: np.ndarray) -> np.ndarray:
        return ((masks[:, None] >> np.arange(m)) & 1).astype(np.float64)

    # variables (x_1..x_M, ε); minimise −ε; −x(S) + ε ≤ −v(S) for the others; x(B) = v(B) for the blocks
    cost = np.zeros(m + 1)
    cost[-1] = -1.0
    a_ub = np.hstack([-bits(others), np.ones((others.size, 1))])
    block_masks = np.array(blocks, dtype=np.int64)
    a_eq = np.hstack([bits(block_masks), np.zeros((block_masks.size, 1))])
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=-v[others],
        A_eq=a_eq,
        b_eq=v[block_masks],
        bounds=[(None, None)] * (m + 1),
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - feasible (the blocks are disjoint) and bounded (ε ≤ x(S) − v(S))
        raise RuntimeError(f"the least-core LP failed: {res.message}")
    eps = float(res.x[-1])
    return CoreResult(blocks, eps >= -tol, eps, tuple(float(x) for x in res.x[:m]), tol)


def in_core(values: Any, point: Any, tol: float = 1e-9, structure: Sequence[int] | None = None) -> bool:
    """Whether ``point`` is in the core: each block B of ``structure`` (default: the grand coalition) gets exactly
    v(B), and no coalition S gets less than v(S) (up to ``tol``)."""
    v, m = _check_game(values)
    x = np.asarray(point, dtype=np.float64)
    if x.shape != (m,):
        raise ValueError(f"point must have one entry per player ({m}), got shape {x.shape}")
    blocks = [v.size - 1] if structure is None else [int(b) for b in structure]
    sums = (((np.arange(v.size)[:, None] >> np.arange(m)) & 1) * x).sum(1)
    return bool(all(abs(sums[b] - v[b]) <= tol for b in blocks) and (sums >= v - tol).all())


@dataclass(frozen=True)
class Partition:
    """A coalition structure: disjoint blocks covering every player, and its worth Σ_blocks v(block)."""

    blocks: tuple[int, ...]
    """The blocks as bitmasks, in increasing order of their lowest player."""
    value: float
    """Σ_blocks v(block)."""
    method: str
    """``exhaustive`` (every set partition), ``greedy`` (merging) or ``dynamic`` (not used here)."""
    ties: int = 1
    """Partitions within the tolerance of the best (exhaustive only; the one with fewest blocks is reported)."""

    def labels(self, names: Sequence[str] | None = None) -> list[str]:
        return [_label(b, names) for b in self.blocks]


@cache
def set_partitions(num_players: int) -> tuple[tuple[int, ...], ...]:
    """Every partition of ``num_players`` players into non-empty blocks (bitmasks), each block list ordered by
    lowest player: Bell(M) of them (restricted growth strings)."""
    int_arg("num_players", num_players, 1, MAX_PARTITION_TASKS, hint="Bell(M) partitions are enumerated")
    out: list[tuple[int, ...]] = []

    def grow(k: int, blocks: list[int]) -> None:
        if k == num_players:
            out.append(tuple(blocks))
            return
        for i in range(len(blocks)):
            blocks[i] |= 1 << k
            grow(k + 1, blocks)
            blocks[i] &= ~(1 << k)
        blocks.append(1 << k)
        grow(k + 1, blocks)
        blocks.pop()

    grow(0, [])
    return tuple(out)


def _tolerance(v: np.ndarray) -> float:
    return 1e-9 * max(1.0, float(np.abs(v).max()))


def best_partition(values: Any, num_blocks: int | None = None, tol: float | None = None) -> Partition:
    """The partition maximising Σ_blocks v(block), over every set partition (M ≤ :data:`MAX_PARTITION_TASKS`).

    Partitions within ``tol`` of the best tie; the one with fewest blocks (fewest trunks to train) is reported,
    and ``ties`` counts them.

    Args:
        values: v(S) for every coalition bitmask (``values[0] = 0``).
        num_blocks: Only partitions into exactly this many blocks (default: any).
        tol: Default 1e-9 · max(1, max |v|).
    """
    v, m = _check_game(values)
    if m > MAX_PARTITION_TASKS:
        raise ValueError(
            f"the exhaustive partition search enumerates Bell(M) partitions and is limited to M <= "
            f"{MAX_PARTITION_TASKS} players, got M = {m}; use greedy_partition"
        )
    if num_blocks is not None:
        int_arg("num_blocks", num_blocks, 1, m)
    tol = _tolerance(v) if tol is None else real_arg("tol", tol, low=0.0)
    parts = [p for p in set_partitions(m) if num_blocks is None or len(p) == num_blocks]
    worth = np.array([sum(v[b] for b in p) for p in parts])
    best = float(worth.max())
    tied = [i for i in np.flatnonzero(worth >= best - tol)]
    pick = min(tied, key=lambda i: (len(parts[i]), -worth[i]))
    return Partition(parts[pick], float(worth[pick]), "exhaustive", len(tied))


def greedy_partition(
    value: Callable[[Sequence[int]], Sequence[float]], num_players: int, tol: float = 0.0
) -> Partition:
    """Greedy merging: from singletons, merge the two blocks whose union gains most, v(A ∪ B) − v(A) − v(B), while
    a merge gains more than ``tol``.

    Args:
        value: Maps a list of coalition bitmasks to their values (called once per round with every candidate
            union, so an engine-backed v plays each round as one batch; singletons are worth v({m})).
        num_players: M.
        tol: A merge must gain more than this.
    """
    m = int_arg("num_players", num_players, low=1)
    blocks = [1 << k for k in range(m)]
    worth = dict(zip(blocks, (float(x) for x in value(blocks)), strict=True))
    while len(blocks) > 1:
        pairs = list(itertools.combinations(range(len(blocks)), 2))
        unions = [blocks[i] | blocks[j] for i, j in pairs]
        missing = [u for u in unions if u not in worth]
        if missing:
            worth.update(zip(missing, (float(x) for x in value(missing)), strict=True))
        gains = [worth[u] - worth[blocks[i]] - worth[blocks[j]] for u, (i, j) in zip(unions, pairs, strict=True)]
        best = int(np.argmax(gains))
        if not gains[best] > tol:
            break
        i, j = pairs[best]
        blocks = [b for k, b in enumerate(blocks) if k not in (i, j)] + [unions[best]]
    blocks.sort(key=lambda b: b & -b)
    return Partition(tuple(blocks), float(sum(worth[b] for b in blocks)), "greedy")


def rand_index(a: Sequence[int], b: Sequence[int], num_players: int) -> float:
    """The share of player pairs on which two partitions (block bitmasks) agree: together in both or apart in
    both (1 for the same partition; 1 for M = 1)."""

    def together(blocks: Sequence[int]) -> set[tuple[int, int]]:
        return {pair for blk in blocks for pair in itertools.combinations(members(blk), 2)}

    pairs = num_players * (num_players - 1) // 2
    if pairs == 0:
        return 1.0
    ta, tb = together(a), together(b)
    return 1.0 - len(ta ^ tb) / pairs


# --------------------------------------------------------------------------------------- TAG (Fifty 2021)
def loss_floors(suite: TaskSuite) -> np.ndarray:
    """``[M]`` a lower bound of each task's loss, subtracted before TAG's loss ratios and in the convergence
    figure: min ℓ_m = −½ b_mᵀ A_m⁻¹ b_m for the quadratic suite (whose losses are negative), 0 for the others
    (squared errors and cross-entropies)."""
    if isinstance(suite, QuadraticSuite):
        # The suite's float64 matrices (private, read only): each task's unconstrained minimum.
        return np.array(
            [-0.5 * float(b @ torch.linalg.solve(a, b)) for a, b in zip(suite._A64, suite._b64, strict=True)]
        )
    return np.zeros(suite.num_tasks)


def tag_affinities(suite: TaskSuite, config: CoalitionConfig, players: Sequence[int] | None = None) -> np.ndarray:
    """Inter-task affinities of Fifty et al. 2021 ("Efficiently Identifying Task Groupings for Multi-Task
    Learning", Eq. 3) along the grand coalition's training: ``Z[i, j] = Z_{i→j} = 1 − ℓ̃_j(Θ_j, Ψ − β ∇_Ψ ℓ_i) /
    ℓ̃_j(Θ_j, Ψ)``, on each step's batch, ℓ̃ = ℓ − :func:`loss_floors`, averaged over the steps 0, k, 2k, …
    (``config.tag_every``) and the seeds. Z_{i→j} > 0: a step on task i's trunk gradient lowers task j's loss.
    The trunk gradients are the engine's Jacobian rows; the lookahead losses of all i are one batched forward.

    Returns:
        ``[P, P]`` (rows i: the task stepped on; columns j: the task measured); the diagonal is each task's own
        lookahead gain.
    """
    players = _check_players(suite, players)
    p, m_all = len(players), suite.num_tasks
    seeds, device = config.seeds, suite.device
    member = torch.zeros(len(seeds), m_all, dtype=torch.bool, device=device)
    member[:, list(players)] = True
    game, head_member = _coalition_game(suite, member, config)
    floors = torch.as_tensor(loss_floors(suite), dtype=torch.float64, device=device)[list(players)]
    cols = torch.tensor(players, device=device)
    ratios = []
    with torch.no_grad():
        state, _ = reset(game, torch.tensor(seeds, dtype=torch.int64, device=device))
        zero = torch.zeros((), dtype=suite.dtype, device=device)
        for t in range(config.horizon):
            if t % config.tag_every == 0:
                # Game r's batch of step t, once per lookahead i (the counter-based draws depend on the game only).
                rep = GameRNG(*(x.repeat_interleave(p) for x in (state.seeds, state.episodes, state.t, state.keys)))
                batch = suite.sample_batch(rep)
                stepped = state.trunk.unsqueeze(1) - config.beta * state.jacobian[:, cols]  # [R, P(i), n]
                ahead = suite.batched_losses(
                    state.heads.repeat_interleave(p, 0), stepped.reshape(-1, stepped.shape[-1]), batch
                )
                ahead = ahead[:, cols].double().view(len(seeds), p, p) - floors  # [R, i, j]
                now = state.losses[:, cols].double() - floors  # [R, j]
                ratio = 1.0 - ahead / now.unsqueeze(1)
                ratios.append(torch.where(now.unsqueeze(1) > 0, ratio, torch.full_like(ratio, math.nan)))
            heads = torch.where(head_member, -config.lr * state.head_grads, zero)
            state, _ = step(game, state, (heads, -config.beta * state.jacobian))
    z = torch.stack(ratios).cpu().numpy().reshape(-1, p, p)
    finite = np.isfinite(z)
    counts = finite.sum(0)
    return np.where(counts > 0, np.where(finite, z, 0.0).sum(0) / np.maximum(counts, 1), math.nan)


def tag_group_values(affinity: np.ndarray) -> np.ndarray:
    """TAG's worth of every group G (bitmask) for choosing groupings: the affinity onto each member from the
    rest of its group, Σ_{j ∈ G} mean_{i ∈ G, i ≠ j} Z_{i→j} (Fifty et al. 2021, Section 3.2); 0 for a
    singleton. A characteristic function: the best TAG grouping is :func:`best_partition` of it."""
    z = np.nan_to_num(np.asarray(affinity, dtype=np.float64))
    p = z.shape[0]
    out = np.zeros(1 << p)
    for s in range(1, 1 << p):
        mem = list(members(s))
        if len(mem) > 1:
            sub = z[np.ix_(mem, mem)]
            out[s] = float((sub.sum(0) - np.diag(sub)).sum() / (len(mem) - 1))
    return out


# -------------------------------------------------------------------------------- Standley et al. 2020
@dataclass(frozen=True)
class NetworkSelection:
    """Standley et al. 2020's network selection: at most ``budget`` trained coalitions ("networks", possibly
    overlapping) covering every task, each task served by the best network that contains it."""

    networks: tuple[int, ...]
    """The chosen coalitions (bitmasks)."""
    budget: int
    """Most networks allowed."""
    value: float
    """Σ_m (ℓ_m^{{m}} − min_{S chosen ∋ m} ℓ_m^S): the loss saved against training alone (v's units)."""


def select_networks(task_losses: np.ndarray, budget: int) -> NetworkSelection | None:
    """The exact network selection of Standley et al. ("Which Tasks Should Be Learned Together in Multi-task
    Learning?", ICML 2020, Section 4) from every trained coalition's per-task losses, by enumeration.

    Args:
        task_losses: ``[2^P, P]`` ℓ_m^S per coalition bitmask (NaN where m ∉ S; row 0 unused).
        budget: Most networks.

    Returns:
        The best selection, or ``None`` when there are more than 5e6 candidate sets to enumerate.
    """
    losses = np.asarray(task_losses, dtype=np.float64)
    p = losses.shape[1]
    budget = int_arg("budget", budget, 1, p)
    if losses.shape != (1 << p, p):
        raise ValueError(f"task_losses must have shape (2^P, P) = ({1 << p}, {p}), got {losses.shape}")
    alone = np.array([losses[1 << k, k] for k in range(p)])
    table = np.where(np.isnan(losses[1:]), np.inf, losses[1:])  # candidate c is coalition c + 1
    count = sum(math.comb(table.shape[0], k) for k in range(1, budget + 1))
    if count > _MAX_SELECTIONS:
        return None
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    for k in range(1, budget + 1):
        combos = itertools.combinations(range(table.shape[0]), k)
        while True:
            chunk = np.array(list(itertools.islice(combos, 200_000)), dtype=np.int64)
            if chunk.size == 0:
                break
            total = table[chunk].min(1).sum(1)  # [chunk]; inf when a task is uncovered
            i = int(np.argmin(total))  # the first best of the chunk; fewer networks were tried first
            if total[i] < best[0]:
                best = (float(total[i]), tuple(int(c) + 1 for c in chunk[i]))
    if not math.isfinite(best[0]):  # pragma: no cover - the grand coalition alone covers every task
        return None
    return NetworkSelection(tuple(sorted(best[1])), budget, float(alone.sum() - best[0]))


# ------------------------------------------------------------------------------------------ the analysis
@dataclass
class CoalitionAnalysis:
    """Everything :func:`analyse` measured; ``write(out)`` writes the table and the figures."""

    suite: dict[str, Any]
    """The suite's description."""
    tasks: tuple[str, ...]
    """The players' task names (player k is ``tasks[k]``)."""
    config: CoalitionConfig
    method: str
    """``exhaustive`` (every coalition played) or ``greedy`` (only those greedy merging visits)."""
    masks: tuple[int, ...]
    """Coalitions played (bitmasks over the players)."""
    values: np.ndarray
    """``[C]`` v(S) of each played coalition, the mean over seeds."""
    values_std: np.ndarray
    """``[C]`` the standard deviation of v(S) over the seeds (0 for one seed)."""
    task_losses: np.ndarray
    """``[C, P]`` ℓ_m^S, the mean over seeds (NaN where m ∉ S)."""
    alone: np.ndarray
    """``[P]`` ℓ_m^{{m}}: each task trained alone."""
    floors: np.ndarray
    """``[P]`` :func:`loss_floors` of the players."""
    curves: np.ndarray
    """``[C, K]`` Σ_{m∈S} ℓ_m on the split at the steps :func:`curve_steps`, the mean over seeds."""
    best: Partition
    """The partition of the players maximising Σ_blocks v(block)."""
    tag_affinity: np.ndarray
    """``[P, P]`` Z_{i→j} (:func:`tag_affinities`)."""
    tag_partition: Partition
    """The partition maximising TAG's group affinity (:func:`tag_group_values`)."""
    tag_partition_same_size: Partition | None
    """The same, with as many blocks as ``best`` (exhaustive only)."""
    shapley: np.ndarray | None = None
    """``[P]`` exact Shapley values (exhaustive only)."""
    core: CoreResult | None = None
    """The classical core: v(all tasks) shared out (exhaustive only)."""
    structure_core: CoreResult | None = None
    """The core of the best partition (Aumann-Drèze: each block's worth shared out within it; exhaustive only)."""
    standley: NetworkSelection | None = None
    """Standley et al.'s selection with a budget of ``len(best.blocks)`` networks (exhaustive only)."""
    games: int = 0
    """Games played in the largest batch."""
    seconds: float = 0.0
    """Wall time of the coalitions' batched play (all rounds for greedy)."""
    figures: list[str] = field(default_factory=list)

    @property
    def num_players(self) -> int:
        return len(self.tasks)

    def value(self, mask: int) -> float:
        """v(S) of a played coalition (0 for the empty one)."""
        if mask == 0:
            return 0.0
        return float(self.values[self.masks.index(mask)])

    def characteristic(self) -> np.ndarray:
        """v as an array over every bitmask (exhaustive only)."""
        if self.method != "exhaustive":
            raise ValueError("the full characteristic function is known only for method='exhaustive'")
        out = np.zeros(1 << self.num_players)
        out[list(self.masks)] = self.values
        return out

    def structure_curve(self, blocks: Sequence[int]) -> np.ndarray:
        """``[K]`` Σ over the players of ℓ_m − floor_m on the split at :func:`curve_steps` under a coalition
        structure."""
        rows = [self.curves[self.masks.index(b)] - self.floors[list(members(b))].sum() for b in blocks]
        return np.sum(rows, axis=0)

    def summary(self) -> dict[str, Any]:
        """The measurements as JSON-friendly values."""
        names = self.tasks
        agree = self.best.blocks == self.tag_partition.blocks
        out: dict[str, Any] = {
            "definition": "v(S) = sum over m in S of (loss of m trained alone - loss of m trained in S), after "
            f"{self.config.horizon} steps, on the {self.config.split} objective, mean over seeds; v(empty) = 0",
            "suite": self.suite,
            "tasks": list(names),
            "config": asdict(self.config),
            "method": self.method,
            "games_in_batch": self.games,
            "seconds": round(self.seconds, 3),
            "alone_loss": self.alone.tolist(),
            "coalitions": [
                {
                    "mask": s,
                    "members": list(members(s)),
                    "label": _label(s, names),
                    "size": bin(s).count("1"),
                    "v": float(v),
                    "v_std": float(sd),
                    "task_losses": [float(x) for x in row[list(members(s))]],
                }
                for s, v, sd, row in zip(self.masks, self.values, self.values_std, self.task_losses, strict=True)
            ],
            "best_partition": {**asdict(self.best), "labels": self.best.labels(names)},
            "tag": {
                "affinity": self.tag_affinity.tolist(),
                "partition": {**asdict(self.tag_partition), "labels": self.tag_partition.labels(names)},
                "agrees_with_best_partition": agree,
                "rand_index": rand_index(self.best.blocks, self.tag_partition.blocks, self.num_players),
            },
        }
        if self.tag_partition_same_size is not None:
            same = self.tag_partition_same_size
            out["tag"]["partition_same_size"] = {
                **asdict(same),
                "labels": same.labels(names),
                "agrees_with_best_partition": same.blocks == self.best.blocks,
            }
        if self.shapley is not None:
            out["shapley"] = self.shapley.tolist()
            out["shapley_sum"] = float(self.shapley.sum())
            out["v_grand"] = self.value((1 << self.num_players) - 1)
        if self.core is not None:
            out["core"] = asdict(self.core)
            if self.shapley is not None:
                out["core"]["shapley_in_core"] = in_core(self.characteristic(), self.shapley, tol=self.core.tolerance)
        if self.structure_core is not None:
            out["structure_core"] = asdict(self.structure_core)
        if self.standley is not None:
            out["standley"] = {
                **asdict(self.standley),
                "labels": [_label(s, names) for s in self.standley.networks],
                "same_as_best_partition": self.standley.networks == self.best.blocks,
            }
        return out

    def markdown(self) -> str:
        """The tables of ``coalitions.md``."""
        names, cfg = self.tasks, self.config
        lines = [
            f"# Coalitions: {self.suite.get('suite', '?')}, {self.num_players} tasks",
            "",
            f"v(S) = Σ_{{m∈S}} (ℓ_m alone − ℓ_m in S): the loss the members of S save by sharing one trunk, after "
            f"T = {cfg.horizon} steps (head step α = {cfg.lr:g}, trunk step β = {cfg.beta:g}, `{cfg.rule}` consensus "
            f"of the members' proposals), on the `{cfg.split}` objective, mean over seeds {list(cfg.seeds)}; "
            f"v(∅) = 0 and v({{m}}) = 0. Loss units of the suite. Method: {self.method}; {self.games} games in one "
            f"batch, {self.seconds:.2f} s.",
            "",
            "Players: " + ", ".join(f"{k} = `{n}`" for k, n in enumerate(names)),
            "",
            "## Best partition",
            "",
            f"{' | '.join(self.best.labels(names))}: Σ v = {self.best.value:.6g} ({self.best.method}"
            + (f"; {self.best.ties} tied within round-off" if self.best.ties > 1 else "")
            + ")",
        ]
        if self.shapley is not None and self.core is not None:
            lines += [
                "",
                "## Shapley values and the core",
                "",
                f"v(all tasks) = {self.value((1 << self.num_players) - 1):.6g}; Σ φ = {self.shapley.sum():.6g}.",
                "",
                f"- Core (v(all tasks) shared out): {_core_note(self.core)}.",
            ]
            sc = self.structure_core
            if sc is not None:
                lines.append(f"- Core of the best partition (each block's worth shared within it): {_core_note(sc)}.")
            lines += [
                "",
                "| task | ℓ alone | Shapley φ | core point x (all tasks) |"
                + (" core point x (best partition) |" if sc is not None else ""),
                "|---|---:|---:|---:|" + ("---:|" if sc is not None else ""),
            ]
            for k, name in enumerate(names):
                row = f"| {k} `{name}` | {self.alone[k]:.6g} | {self.shapley[k]:.6g} | {self.core.point[k]:.6g} |"
                lines.append(row + (f" {sc.point[k]:.6g} |" if sc is not None else ""))
        lines += [
            "",
            "## Inter-task affinity (TAG, Fifty et al. 2021)",
            "",
            "Z_{i→j} (row i stepped on, column j measured), mean over the grand coalition's training:",
            "",
            "| i \\ j | " + " | ".join(str(k) for k in range(self.num_players)) + " |",
            "|---|" + "---:|" * self.num_players,
        ]
        for i in range(self.num_players):
            lines.append(f"| {i} | " + " | ".join(f"{z:.4f}" for z in self.tag_affinity[i]) + " |")
        agree = self.best.blocks == self.tag_partition.blocks
        rand = rand_index(self.best.blocks, self.tag_partition.blocks, self.num_players)
        lines += [
            "",
            f"TAG's grouping: {' | '.join(self.tag_partition.labels(names))} — "
            + (
                "the same as the best partition by v."
                if agree
                else f"differs from the best partition by v (pairs in agreement: {rand:.2f})."
            ),
        ]
        if (
            self.tag_partition_same_size is not None
            and self.tag_partition_same_size.blocks != self.tag_partition.blocks
        ):
            same = self.tag_partition_same_size
            lines.append(
                f"With {len(self.best.blocks)} groups: {' | '.join(same.labels(names))} — "
                + ("the same as the best partition." if same.blocks == self.best.blocks else "differs.")
            )
        if self.standley is not None:
            sel = self.standley
            lines += [
                "",
                "## Network selection (Standley et al. 2020)",
                "",
                f"Budget {sel.budget} networks: {' , '.join(_label(s, names) for s in sel.networks)}; loss saved "
                f"{sel.value:.6g} — "
                + (
                    "the same as the best partition."
                    if sel.networks == self.best.blocks
                    else "differs from the best partition (networks may overlap)."
                ),
            ]
        lines += [
            "",
            "## v(S) of every coalition",
            "",
            "| coalition | size | v(S) | std over seeds | Σ_{m∈S} ℓ_m |",
            "|---|---:|---:|---:|---:|",
        ]
        order = sorted(range(len(self.masks)), key=lambda i: (bin(self.masks[i]).count("1"), self.masks[i]))
        for i in order:
            s = self.masks[i]
            total = float(np.nansum(self.task_losses[i]))
            lines.append(
                f"| {_label(s)} | {bin(s).count('1')} | {self.values[i]:.6g} | {self.values_std[i]:.3g} | {total:.6g} |"
            )
        if self.figures:
            lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in self.figures]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path, title: str | None = None) -> list[Path]:
        """Write ``coalitions.json``, ``coalitions.md`` and the PNG figures to ``out``; returns the paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        title = title or self.title()
        figures = write_figures(self, out, title)
        self.figures = [p.name for p in figures]
        dump_json(out / "coalitions.json", self.summary(), indent=1)
        write_atomic(out / "coalitions.md", self.markdown())
        return [out / "coalitions.json", out / "coalitions.md", *figures]

    def title(self, name: str | None = None) -> str:
        """What the run was, for figure titles: ``name`` (default the suite's) and the settings."""
        cfg = self.config
        return (
            f"{name or self.suite.get('suite', '?')}, {self.num_players} tasks, {cfg.rule} consensus, T={cfg.horizon}, "
            f"α={cfg.lr:g}, β={cfg.beta:g}, {len(cfg.seeds)} seed(s)"
        )


def _core_note(result: CoreResult) -> str:
    if result.nonempty:
        return f"non-empty (least-core ε = {result.epsilon:.4g} ≥ 0)"
    return (
        f"EMPTY (least-core ε = {result.epsilon:.4g} < 0: every allocation leaves some coalition short of its "
        f"worth by at least {-result.epsilon:.4g})"
    )


def default_lr(suite: TaskSuite) -> float:
    """The step size when none is given: 1/λ_max of the joint Hessian of L_MT for the quadratic suite (a stable
    step for every coalition, whose Hessian is dominated by it, under ``sum``), 0.1 otherwise."""
    if isinstance(suite, QuadraticSuite):
        return float(1.0 / torch.linalg.eigvalsh(suite.joint_hessian())[-1])
    return 0.1


def analyse(
    suite: str | TaskSuite = "quadratic",
    *,
    tasks: Sequence[int] | None = None,
    horizon: int = 100,
    lr: float | None = None,
    trunk_lr: float | None = None,
    rule: str = "sum",
    seeds: Sequence[int] = (0,),
    split: str = "eval",
    method: str = "exhaustive",
    tag_every: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **suite_kwargs: Any,
) -> CoalitionAnalysis:
    """Measure the coalition game of a suite: v(S) for every coalition in one engine batch, the Shapley values,
    the core, the best partition, and TAG's and Standley's groupings on the same game.

        from mtg_env.coalitions import analyse, block_quadratic
        result = analyse(block_quadratic((2, 2)), horizon=10)
        result.best.labels()          # ['{0, 1}', '{2, 3}']
        result.write("runs/coalitions")

    Args:
        suite: A suite name (built with ``device``, ``dtype`` and ``suite_kwargs``) or instance.
        tasks: The suite's tasks that play (default all; at most :data:`MAX_EXHAUSTIVE_TASKS` for ``exhaustive``).
        horizon: T, training steps of every coalition.
        lr: Head step size α (default :func:`default_lr`).
        trunk_lr: Trunk step size β (default ``lr``).
        rule: The members' consensus rule (:data:`COALITION_RULES`).
        seeds: v is the mean over these seeds (starts and batches).
        split: ``eval`` or ``train``: the objective v reads after T steps.
        method: ``exhaustive``: every coalition in one batch, Shapley values, the core and the exact best
            partition (greedy merging on the known v beyond :data:`MAX_PARTITION_TASKS` tasks); ``greedy``: only
            the coalitions greedy merging visits, one batch per round (any number of tasks).
        tag_every: TAG's lookahead every this many steps.

    Raises:
        ValueError / TypeError: naming the bad argument (too many tasks for ``exhaustive``, no task, a bad
            horizon or step size, ...), or when a coalition diverges.
    """
    choice_arg("method", method, ("exhaustive", "greedy"))
    built = make_suite(suite, device=device, dtype=dtype, **suite_kwargs)
    players = _check_players(built, tasks)
    p = len(players)
    if method == "exhaustive" and p > MAX_EXHAUSTIVE_TASKS:
        raise ValueError(
            f"{p} tasks: the exhaustive analysis plays all 2^M - 1 = {(1 << p) - 1} coalitions and is limited to M <= "
            f"{MAX_EXHAUSTIVE_TASKS} tasks; pass method='greedy' (greedy merging, one batch per round) or fewer tasks"
        )
    config = CoalitionConfig(
        horizon=horizon,
        lr=default_lr(built) if lr is None else lr,
        trunk_lr=trunk_lr,
        rule=rule,
        seeds=seeds,
        split=split,
        tag_every=tag_every,
    )
    names = tuple(built.task_names[k] for k in players)
    floors = loss_floors(built)[list(players)]
    cache_l: dict[int, np.ndarray] = {}
    cache_c: dict[int, np.ndarray] = {}
    games, seconds = 0, 0.0

    def run(batch: Sequence[int]) -> None:
        nonlocal games, seconds
        new = [s for s in batch if s not in cache_l]
        if new:
            out = play_coalitions(built, new, config, players)
            games, seconds = max(games, out.games), seconds + out.seconds
            for i, s in enumerate(new):
                cache_l[s], cache_c[s] = out.losses[:, i], out.curves[:, i]

    def saved(batch: Sequence[int]) -> list[float]:
        run(batch)
        alone = np.stack([cache_l[1 << k][:, k] for k in range(p)], 1)
        return [float(np.nansum(alone - cache_l[s], axis=1).mean()) for s in batch]

    if method == "exhaustive":
        run(range(1, 1 << p))  # every coalition, one batch
    else:
        run([1 << k for k in range(p)] + ([(1 << p) - 1] if p > 1 else []))
    alone_all = np.stack([cache_l[1 << k][:, k] for k in range(p)], 1)
    tol = _value_tolerance(built.dtype, alone_all)
    greedy = greedy_partition(saved, p, tol) if method == "greedy" else None  # plays one batch per round
    masks = tuple(sorted(cache_l))
    losses = np.stack([cache_l[s] for s in masks], 1)
    curves = np.stack([cache_c[s] for s in masks], 1)
    per_seed = values_from_losses(masks, losses, p)  # [R, C]
    values = per_seed.mean(0)
    alone = losses[:, [masks.index(1 << k) for k in range(p)], range(p)].mean(0)
    z = tag_affinities(built, config, players)
    tag_values = tag_group_values(z) if p <= MAX_PARTITION_TASKS else None
    result = CoalitionAnalysis(
        suite=built.describe(),
        tasks=names,
        config=config,
        method=method,
        masks=masks,
        values=values,
        values_std=per_seed.std(0),
        task_losses=losses.mean(0),
        alone=alone,
        floors=floors,
        curves=curves.mean(0),
        best=Partition((), 0.0, method),
        tag_affinity=z,
        tag_partition=Partition((), 0.0, method),
        tag_partition_same_size=None,
        games=games,
        seconds=seconds,
    )
    if method == "exhaustive":
        v = result.characteristic()
        result.shapley = shapley_values(v)
        result.core = core(v, tol=tol)
        if p <= MAX_PARTITION_TASKS:
            result.best = best_partition(v, tol=tol)
            result.tag_partition = best_partition(tag_values)
            result.tag_partition_same_size = best_partition(tag_values, num_blocks=len(result.best.blocks))
        else:
            result.best = greedy_partition(lambda b: [v[s] for s in b], p, tol)
            result.tag_partition = greedy_partition(lambda b: [_tag_value(z, s) for s in b], p)
        result.structure_core = core(v, tol=tol, structure=result.best.blocks)
        table = np.full((1 << p, p), math.nan)
        table[list(masks)] = result.task_losses
        result.standley = select_networks(table, len(result.best.blocks))
    else:
        assert greedy is not None
        result.best = greedy
        result.tag_partition = greedy_partition(lambda b: [_tag_value(z, s) for s in b], p)
    return result


def _value_tolerance(dtype: torch.dtype, alone: np.ndarray) -> float:
    """Values of coalitions closer than this tie: 100 rounding units of the game's dtype on the scale of the
    summed losses (v is a difference of losses trained in that dtype)."""
    return 100.0 * float(torch.finfo(dtype).eps) * max(1.0, float(np.abs(alone).sum(1).max()))


def _tag_value(z: np.ndarray, mask: int) -> float:
    mem = list(members(mask))
    if len(mem) < 2:
        return 0.0
    sub = np.nan_to_num(z[np.ix_(mem, mem)])
    return float((sub.sum(0) - np.diag(sub)).sum() / (len(mem) - 1))


# ------------------------------------------------------------------------------------------ a known game
def block_quadratic(
    blocks: Sequence[int] = (2, 2),
    *,
    trunk_dim: int = 2,
    head_dim: int = 2,
    separation: float = 2.0,
    coupling: float = 0.3,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float64",
) -> QuadraticSuite:
    """A quadratic game (user-given A, b) with known coalition structure: tasks in blocks, the tasks of a block
    identical, the blocks' trunk optima in conflict.

    Every task has A = [[I_h, c E], [c Eᵀ, I_n]] (E: ones on the diagonal, c = ``coupling`` in [0, 1)) and
    b = A z*, so trained alone it reaches ℓ's minimum at z* = (0, ψ_g): block g's trunk optimum ψ_g lies at
    distance ``separation`` from the origin, at angle 2πg/G (two blocks: ±separation·e_1). Every parameter
    starts at 0 (``init_scale = 0``), so the game is deterministic and the tasks of a block are exact
    substitutes (equal Shapley values).
    """
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError(f"blocks must be a non-empty list of block sizes such as (2, 2), got {blocks!r}")
    sizes = [int_arg(f"blocks[{i}]", b, low=1) for i, b in enumerate(blocks)]
    n = int_arg("trunk_dim", trunk_dim, low=1)
    h = int_arg("head_dim", head_dim, low=0)
    sep = real_arg("separation", separation, low=0.0)
    c = real_arg("coupling", coupling, 0.0, 1.0, high_open=True, hint="keeps A positive definite")
    g = len(sizes)
    if g > 2 and n < 2:
        raise ValueError(f"{g} blocks need trunk_dim >= 2 (their optima lie on a circle), got {n}")
    e = torch.zeros(h, n, dtype=torch.float64)
    k = min(h, n)
    e[range(k), range(k)] = 1.0
    a = torch.cat(
        [
            torch.cat([torch.eye(h, dtype=torch.float64), c * e], 1),
            torch.cat([c * e.T, torch.eye(n, dtype=torch.float64)], 1),
        ]
    )
    mats, vecs = [], []
    for gi, size in enumerate(sizes):
        psi = torch.zeros(n, dtype=torch.float64)
        angle = 2 * math.pi * gi / g
        psi[0] = sep * math.cos(angle)
        if n > 1:
            psi[1] = sep * math.sin(angle)
        z = torch.cat([torch.zeros(h, dtype=torch.float64), psi])
        mats += [a.clone() for _ in range(size)]
        vecs += [a @ z for _ in range(size)]
    return QuadraticSuite(mats, vecs, n, init_scale=0.0, device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------ figures
def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def write_figures(result: CoalitionAnalysis, out: Path, title: str) -> list[Path]:
    """``values.png`` (v(S) against |S|), ``shapley.png`` (exhaustive), ``tag_affinity.png`` and
    ``convergence.png`` (the training loss of four coalition structures against the step)."""
    paths = [_plot_values(result, out / "values.png", title)]
    if result.shapley is not None and result.core is not None:
        paths.append(_plot_shapley(result, out / "shapley.png", title))
    paths.append(_plot_affinity(result, out / "tag_affinity.png", title))
    paths.append(_plot_convergence(result, out / "convergence.png", title))
    return paths


def _plot_values(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    sizes = np.array([bin(s).count("1") for s in result.masks])
    inside = np.array([any(s & ~b == 0 for b in result.best.blocks) for s in result.masks])
    rng = np.random.default_rng(0)  # horizontal jitter only, so that coalitions of one size do not overlap
    x = sizes + rng.uniform(-0.15, 0.15, sizes.size)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.scatter(
        x[~inside],
        result.values[~inside],
        s=14,
        color="tab:gray",
        alpha=0.7,
        label="coalition across blocks of the best partition",
    )
    ax.scatter(
        x[inside],
        result.values[inside],
        s=22,
        color="tab:green",
        label="coalition within a block of the best partition",
    )
    ax.set_xticks(range(1, result.num_players + 1))
    ax.set_xlabel("coalition size |S| (tasks sharing one trunk)")
    ax.set_ylabel("v(S): loss saved vs. training alone (loss units)")
    ax.set_title(f"v(S) of every coalition\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_shapley(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    assert result.shapley is not None and result.core is not None
    fig = _figure()
    ax = fig.add_subplot()
    k = np.arange(result.num_players)
    ax.bar(k - 0.2, result.shapley, width=0.4, color="tab:blue", label="Shapley value φ_m")
    core_label = "least-core point x_m (in the core)" if result.core.nonempty else "least-core point x_m (core empty)"
    ax.bar(k + 0.2, result.core.point, width=0.4, color="tab:orange", label=core_label)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xticks(k, [f"{i}\n{n[:14]}" for i, n in enumerate(result.tasks)], fontsize="small")
    ax.set_xlabel("task (player)")
    ax.set_ylabel("share of v(all tasks) (loss units)")
    ax.set_title(f"Shapley values and the core\n{title}", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_affinity(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    from matplotlib.patches import Patch, Rectangle

    fig = _figure(6.8, 5.4)
    ax = fig.add_subplot()
    z = result.tag_affinity
    bound = max(1e-12, float(np.nanmax(np.abs(z))))
    image = ax.imshow(z, cmap="RdBu", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=ax, label="affinity Z_{i→j} (dimensionless)")
    p = result.num_players
    ax.set_xticks(range(p), [str(i) for i in range(p)])
    ax.set_yticks(range(p), [str(i) for i in range(p)])
    ax.set_xlabel("task j (loss measured)")
    ax.set_ylabel("task i (trunk stepped on its gradient)")
    for b in result.best.blocks:  # contiguous runs only: outline each block's rows x columns cell by cell
        mem = members(b)
        for i in mem:
            for j in mem:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.2))
    ax.legend(
        handles=[Patch(fill=False, edgecolor="black", label="pairs within a block of the best partition by v")],
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
    )
    ax.set_title(f"TAG affinity Z_{{i→j}} = 1 − ℓ_j(step on task i) / ℓ_j (Fifty et al. 2021)\n{title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_convergence(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    p = result.num_players
    structures: dict[str, tuple[int, ...]] = {"every task alone": tuple(1 << k for k in range(p))}
    full = (1 << p) - 1
    if full in result.masks:
        structures["all tasks share one trunk"] = (full,)
    same = result.tag_partition.blocks == result.best.blocks
    best_label = f"best partition by v{' (= TAG grouping)' if same else ''}: {' '.join(result.best.labels())}"
    structures[best_label] = result.best.blocks
    if not same and all(b in result.masks for b in result.tag_partition.blocks):
        structures[f"TAG's grouping: {' '.join(result.tag_partition.labels())}"] = result.tag_partition.blocks
    styles = ["-", "--", ":", "-."]
    positive = True
    curves = {}
    for label, blocks in structures.items():
        curves[label] = result.structure_curve(blocks)
        positive &= bool((curves[label] > 0).all())
    t = np.array(curve_steps(result.config.horizon))
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(t, curve, styles[i % 4], label=label[:70], lw=1.6)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("training step t")
    floor = "" if not np.any(result.floors) else " − Σ min ℓ_m"
    ax.set_ylabel(f"Σ_m ℓ_m{floor}, {result.config.split} split (loss units)")
    ax.set_title(f"Convergence under four coalition structures\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path
