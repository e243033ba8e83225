"""Two groupings from the multi-task literature on the same game: the inter-task affinities of Fifty et al.
2021 (TAG) and the network selection of Standley et al. 2020."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtg_env._args import int_arg
from mtg_env.coalitions.masks import members
from mtg_env.coalitions.play import CoalitionConfig, _check_players, _coalition_game
from mtg_env.engine import GameRNG, reset, step
from mtg_env.suites import QuadraticSuite, TaskSuite

#: Most set-of-networks combinations the network selection of Standley et al. enumerates.
_MAX_SELECTIONS = 5_000_000


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
        out[s] = _tag_value(z, s)
    return out


def _tag_value(z: np.ndarray, mask: int) -> float:
    mem = list(members(mask))
    if len(mem) < 2:
        return 0.0
    sub = np.nan_to_num(z[np.ix_(mem, mem)])
    return float((sub.sum(0) - np.diag(sub)).sum() / (len(mem) - 1))


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
