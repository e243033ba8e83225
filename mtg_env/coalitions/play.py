"""Playing coalitions on the engine: the batched rule that lets only a game's members move its trunk, the
settings every coalition is trained with, and one batch of R·C games for C coalitions and R seeds."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env._args import choice_arg, int_arg, real_arg
from mtg_env.coalitions.masks import _label
from mtg_env.consensus import apply_rule, consensus_rule
from mtg_env.engine import Game, reset, step
from mtg_env.rng import check_seed
from mtg_env.suites import QuadraticSuite, TaskSuite

#: Consensus rules a coalition can play: the batched ``sum`` (Eq. 24) and ``mean`` (Eq. 21), and the
#: deterministic rules defined for any number of proposals (applied to each game's members, game by game).
COALITION_RULES = ("sum", "mean", "mgda", "upgrad", "dualproj", "cagrad", "imtl_g", "aligned_mtl")
#: A member's loss beyond this many times max(1, |its start|) means the coalition diverged (the engine's default).
DIVERGENCE = 1e3
#: Points of the convergence trajectories (evaluations of the split objective for every game).
CURVE_POINTS = 21


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


def default_lr(suite: TaskSuite) -> float:
    """The step size when none is given: 1/λ_max of the joint Hessian of L_MT for the quadratic suite (a stable
    step for every coalition, whose Hessian is dominated by it, under ``sum``), 0.1 otherwise."""
    if isinstance(suite, QuadraticSuite):
        return float(1.0 / torch.linalg.eigvalsh(suite.joint_hessian())[-1])
    return 0.1


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
