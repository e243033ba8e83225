"""The protocol applied: :func:`tune` (one workload) and :func:`tune_family` (a family of game draws)
choose a step size on the tuning seeds; :func:`evaluate` scores it on the held-out seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtg_env.tuning.games import GameResult, _json_safe, play
from mtg_env.tuning.players import PolicyFactory
from mtg_env.tuning.protocol import TuningProtocol, Workload


# ------------------------------------------------------------------------------------ tune, evaluate
@dataclass
class TuningResult:
    """The outcome of :func:`tune` on one workload: every trial, the chosen step size, the protocol."""

    policy: str
    workload: str
    protocol: dict[str, Any]
    """:meth:`TuningProtocol.to_dict`: the grid and the budget."""
    step_sizes: list[float]
    scores: list[float]
    """Per step size, the mean over tuning seeds of the final training loss (summed over tasks); +inf if any
    trial diverged."""
    diverged: list[int]
    """Per step size, how many tuning trials diverged."""
    best_lr: float
    all_diverged: bool
    """No step size finished every tuning trial; ``best_lr`` is then the smallest step size."""
    at_edge: bool = False
    """The best step size is the smallest or largest searched: the optimum may lie outside the search range."""

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def tune(
    factory: PolicyFactory, workload: Workload, protocol: TuningProtocol, *, batched: bool | None = None
) -> TuningResult:
    """Choose ``factory``'s step size on ``workload``: every step size of ``protocol`` on every tuning seed (as
    one batch when the factory has a batched form); the lowest mean final training loss wins, a diverged trial
    counting as +inf (ties: the smaller step size)."""
    lrs = protocol.step_sizes()
    seeds = list(protocol.tuning_seeds)
    grid = [lr for lr in lrs for _ in seeds]
    results = play(workload, factory, grid, seeds * len(lrs), batched=batched)
    k = len(seeds)
    trials = [[r.score for r in results[i * k : (i + 1) * k]] for i in range(len(lrs))]
    return _choose(factory, workload.name, protocol, trials)


def _choose(factory: PolicyFactory, name: str, protocol: TuningProtocol, trials: list[list[float]]) -> TuningResult:
    """The step size whose trials (one list of scores per step size of ``protocol``) have the lowest mean, a
    non-finite trial counting as +inf (ties: the smaller step size)."""
    lrs = protocol.step_sizes()
    scores = [float(np.mean(t)) if all(math.isfinite(s) for s in t) else math.inf for t in trials]
    diverged = [sum(1 for s in t if not math.isfinite(s)) for t in trials]
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    best = min(finite, key=lambda i: (scores[i], i)) if finite else 0
    return TuningResult(
        policy=repr(factory),
        workload=name,
        protocol=protocol.to_dict(),
        step_sizes=list(lrs),
        scores=scores,
        diverged=diverged,
        best_lr=lrs[best],
        all_diverged=not finite,
        at_edge=bool(finite) and len(lrs) > 1 and best in (0, len(lrs) - 1),
    )


def tune_family(
    factory: PolicyFactory,
    workloads: Sequence[Workload],
    protocol: TuningProtocol,
    floors: Sequence[float] | None = None,
    *,
    batched: bool | None = None,
) -> TuningResult:
    """Choose one step size of ``factory`` for a *family* of games: every step size of ``protocol`` on every
    tuning seed of every workload (game draw). Losses of different draws have different scales, so a trial scores
    its final training loss relative to its start, (L_T − f) / (L_0 − f) with the draw's floor f (``floors``;
    default 0, for losses ≥ 0); the lowest mean over all trials wins, a diverged trial counting as +inf."""
    if not workloads:
        raise ValueError("tune_family needs at least one workload (a game draw of the family)")
    floors = [0.0] * len(workloads) if floors is None else list(floors)
    if len(floors) != len(workloads):
        raise ValueError(f"floors must give one floor per workload ({len(workloads)}), got {len(floors)}")
    lrs = protocol.step_sizes()
    seeds = list(protocol.tuning_seeds)
    grid = [lr for lr in lrs for _ in seeds]
    trials: list[list[float]] = [[] for _ in lrs]
    for workload, floor in zip(workloads, floors, strict=True):
        results = play(workload, factory, grid, seeds * len(lrs), batched=batched)
        for j, r in enumerate(results):
            trials[j // len(seeds)].append(relative_score(r, floor))
    name = f"{len(workloads)} draws of {workloads[0].suite}/{workloads[0].consensus}/T{workloads[0].horizon}"
    return _choose(factory, name, protocol, trials)


def relative_score(result: GameResult, floor: float = 0.0) -> float:
    """A game's final training loss relative to its start, (L_T − floor) / (L_0 − floor), L = Σ_m ℓ_m; +inf for a
    diverged or non-finite game."""
    if not math.isfinite(result.score):
        return math.inf
    return (result.score - floor) / max(float(sum(result.initial_train_loss)) - floor, 1e-300)


def evaluate(
    factory: PolicyFactory,
    workload: Workload,
    lr: float,
    seeds: Sequence[int],
    *,
    nash_gap: bool = True,
    batched: bool | None = None,
) -> list[GameResult]:
    """Play ``factory`` at step size ``lr`` on held-out ``seeds`` of ``workload`` (one result per seed)."""
    return play(workload, factory, [lr] * len(seeds), list(seeds), nash_gap=nash_gap, batched=batched)
