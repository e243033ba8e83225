"""Task suites: the games the environment can play, one module each behind :class:`TaskSuite`."""

from __future__ import annotations

from typing import Any

import torch

from mtg_env.suites.base import TaskSpec, TaskSuite
from mtg_env.suites.digits import DigitsSuite
from mtg_env.suites.quadratic import QuadraticSuite
from mtg_env.suites.regression import RegressionSuite
from mtg_env.suites.toy2d import Toy2DSuite

#: Suites by name, as accepted by ``parallel_env(suite=...)``.
SUITES: dict[str, type[TaskSuite]] = {
    "quadratic": QuadraticSuite,
    "digits": DigitsSuite,
    "regression": RegressionSuite,
    "toy2d": Toy2DSuite,
}


def make_suite(
    suite: str | TaskSuite, *, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", **kwargs: Any
) -> TaskSuite:
    """Build a suite by name (or pass an instance through unchanged; then ``kwargs`` must be empty)."""
    if isinstance(suite, TaskSuite):
        if kwargs:
            raise ValueError(f"suite options {sorted(kwargs)} cannot be applied to an already built suite")
        return suite
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; available: {sorted(SUITES)}")
    import inspect

    accepted = [p for p in inspect.signature(SUITES[suite]).parameters if p not in ("device", "dtype")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"suite {suite!r} has no option(s) {unknown}; its options are {accepted}")
    return SUITES[suite](device=device, dtype=dtype, **kwargs)


__all__ = [
    "SUITES",
    "DigitsSuite",
    "QuadraticSuite",
    "RegressionSuite",
    "TaskSpec",
    "TaskSuite",
    "Toy2DSuite",
    "make_suite",
]
