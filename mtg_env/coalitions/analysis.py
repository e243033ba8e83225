"""The coalition game of a suite measured end to end: :func:`analyse`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtg_env._args import choice_arg
from mtg_env.coalitions.groupings import _tag_value, loss_floors, select_networks, tag_affinities, tag_group_values
from mtg_env.coalitions.play import CoalitionConfig, _check_players, default_lr, play_coalitions, values_from_losses
from mtg_env.coalitions.report import CoalitionAnalysis
from mtg_env.coalitions.theory import (
    MAX_PARTITION_TASKS,
    Partition,
    best_partition,
    core,
    greedy_partition,
    shapley_values,
)
from mtg_env.suites import TaskSuite, make_suite

#: Most tasks for which :func:`analyse` plays every coalition (2^12 − 1 = 4095 per seed) and computes exact
#: Shapley values and the core.
MAX_EXHAUSTIVE_TASKS = 12


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
