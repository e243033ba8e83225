"""The tuning protocol (AlgoPerf's external tuning, Kurin et al. 2022): every policy gets the same budget.

A policy enters as a *factory* ``lr -> Policy`` (a baseline by name, a learned agent, any user policy): the
protocol declares a set of step sizes (a log grid with ≥ 3 points per decade, or a quasi-random log-uniform
search) and a set of tuning seeds; :func:`tune` plays every step size on every tuning seed of a workload
(suite, consensus rule, horizon) and keeps the one with the lowest mean final training loss (a diverged trial
counts as +inf); :func:`evaluate` then plays the chosen step size on held-out seeds, disjoint from the tuning
seeds (an overlap is an error). Baselines with a batched form (:class:`Baseline`) play all trials as one
batch of the engine, which gives the numbers the env gives one game at a time (tested)::

    protocol = TuningProtocol(low=1e-3, high=1.0, tuning_seeds=(100, 101), eval_seeds=tuple(range(10)))
    workload = Workload("regression", "mean", horizon=100)
    tuned = tune(Baseline("adam"), workload, protocol)
    results = evaluate(Baseline("adam"), workload, tuned.best_lr, protocol.eval_seeds)

Modules: :mod:`~mtg_env.tuning.protocol` (the budget and the workload), :mod:`~mtg_env.tuning.players` (the
factories), :mod:`~mtg_env.tuning.games` (:func:`play`), :mod:`~mtg_env.tuning.tuner` (:func:`tune`,
:func:`evaluate`).
"""

from __future__ import annotations

from mtg_env.tuning.games import GameResult, play
from mtg_env.tuning.players import Baseline, PolicyFactory, Selfish
from mtg_env.tuning.protocol import TuningProtocol, Workload
from mtg_env.tuning.tuner import TuningResult, evaluate, relative_score, tune, tune_family

__all__ = [
    "Baseline",
    "GameResult",
    "PolicyFactory",
    "Selfish",
    "TuningProtocol",
    "TuningResult",
    "Workload",
    "evaluate",
    "play",
    "relative_score",
    "tune",
    "tune_family",
]
