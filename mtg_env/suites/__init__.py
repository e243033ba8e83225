"""Task suites: the games the environment can play, one module each behind :class:`TaskSuite`."""

from __future__ import annotations

from typing import Any

import torch

from mtg_env.suites.base import TaskSpec, TaskSuite, parse_dtype, resolve_device
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
    suite: str | TaskSuite,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **kwargs: Any,
) -> TaskSuite:
    """Build a suite by name (``device`` default ``"cpu"``, ``dtype`` default ``"float32"``), or pass an instance
    through unchanged: then ``kwargs`` must be empty and a ``device`` or ``dtype`` given must be the instance's
    own (an instance is never silently rebuilt in another precision, nor its dtype silently preferred)."""
    if isinstance(suite, TaskSuite):
        if kwargs:
            raise ValueError(f"suite options {sorted(kwargs)} cannot be applied to an already built suite")
        if dtype is not None and parse_dtype(dtype) != suite.dtype:
            raise ValueError(
                f"dtype={dtype!r} differs from the suite instance's dtype {suite.dtype}; build the suite with "
                "dtype=... or leave dtype out"
            )
        if device is not None and resolve_device(device) != suite.device:
            raise ValueError(
                f"device={device!r} differs from the suite instance's device {suite.device}; build the suite with "
                "device=... or leave device out"
            )
        return suite
    if not isinstance(suite, str) or suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; available: {sorted(SUITES)}, or a TaskSuite instance")
    import inspect

    accepted = [p for p in inspect.signature(SUITES[suite]).parameters if p not in ("device", "dtype")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"suite {suite!r} has no option(s) {unknown}; its options are {accepted}")
    device = "cpu" if device is None else device
    return SUITES[suite](device=device, dtype="float32" if dtype is None else dtype, **kwargs)


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
