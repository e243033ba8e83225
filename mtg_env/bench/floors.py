"""L*, the true minimum of a suite's training objective: a property of the suite, so it lives in
:mod:`mtg_env.suites.floors`; re-exported here, where the sealed protocol first used it."""

from __future__ import annotations

from mtg_env.suites.floors import (
    BEST_RUN_LRS,
    BEST_RUN_POLISH,
    BEST_RUN_SEEDS,
    BEST_RUN_STEPS,
    Floor,
    exact_floor,
    least_squares_floor,
    true_floor,
)

__all__ = [
    "BEST_RUN_LRS",
    "BEST_RUN_POLISH",
    "BEST_RUN_SEEDS",
    "BEST_RUN_STEPS",
    "Floor",
    "exact_floor",
    "least_squares_floor",
    "true_floor",
]
