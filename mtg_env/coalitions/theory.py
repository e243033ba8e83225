"""Cooperative game theory on a characteristic function given for every coalition bitmask: exact Shapley
values, the core (one LP for the least core), the best partition (exhaustive or greedy merging), and the Rand
index between two partitions."""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from mtg_env._args import int_arg, real_arg
from mtg_env.coalitions.masks import _label, members

#: Most tasks for which the best partition is found by enumerating every set partition (Bell(8) = 4140);
#: greedy merging beyond.
MAX_PARTITION_TASKS = 8


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
