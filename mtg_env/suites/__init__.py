"""Task suites: the games the environment can play, one module each behind :class:`TaskSuite`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from mtg_env.suites.base import TaskSpec, TaskSuite, parse_dtype, resolve_device
from mtg_env.suites.digits import DigitsSuite
from mtg_env.suites.floors import Floor, exact_floor, least_squares_floor, true_floor
from mtg_env.suites.module import ModuleSuite
from mtg_env.suites.multidigits import MultiDigits
from mtg_env.suites.quadratic import QuadraticSuite
from mtg_env.suites.regression import RegressionSuite
from mtg_env.suites.toy2d import Toy2DSuite

#: Suites by name, as accepted by ``parallel_env(suite=...)``.
SUITES: dict[str, type[TaskSuite]] = {
    "quadratic": QuadraticSuite,
    "digits": DigitsSuite,
    "regression": RegressionSuite,
    "toy2d": Toy2DSuite,
    "multidigits": MultiDigits,
}

#: A suite given by import path, ``"package.module:factory"`` (a callable returning a :class:`TaskSuite`).
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def make_suite(
    suite: str | TaskSuite,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    **kwargs: Any,
) -> TaskSuite:
    """Build a suite by name (``device`` default ``"cpu"``, ``dtype`` default ``"float32"``), or by import path
    ``"package.module:factory"`` (``factory(**kwargs)`` returns a suite; it gets ``device`` and ``dtype`` where it
    takes them), or pass an instance through unchanged: then ``kwargs`` must be empty and a ``device`` or ``dtype``
    given must be the instance's own (an instance is never silently rebuilt in another precision, nor its dtype
    silently preferred); so must a factory's suite."""
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
    if isinstance(suite, str) and IMPORT_PATH.fullmatch(suite):
        return make_suite(_from_factory(suite, device, dtype, kwargs), device=device, dtype=dtype)
    if not isinstance(suite, str) or suite not in SUITES:
        raise ValueError(
            f"unknown suite {suite!r}; available: {sorted(SUITES)}, an import path 'package.module:factory' (a "
            "callable returning a TaskSuite, e.g. a ModuleSuite of your model), or a TaskSuite instance"
        )
    import inspect

    accepted = [p for p in inspect.signature(SUITES[suite]).parameters if p not in ("device", "dtype")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"suite {suite!r} has no option(s) {unknown}; its options are {accepted}")
    device = "cpu" if device is None else device
    return SUITES[suite](device=device, dtype="float32" if dtype is None else dtype, **kwargs)


def _from_factory(
    path: str, device: str | torch.device | None, dtype: str | torch.dtype | None, kwargs: dict[str, Any]
) -> TaskSuite:
    """The suite ``factory(**kwargs)`` builds, for ``path = "package.module:factory"``; ``device`` and ``dtype`` are
    passed on where the factory takes them (else the suite's own must match them, as an instance's)."""
    import importlib

    module, _, attr = path.partition(":")
    try:  # any error while the user's module runs is its import failing, reported in one line
        factory = getattr(importlib.import_module(module), attr)
    except Exception as err:
        raise ValueError(f"cannot import suite factory {path!r} ({type(err).__name__}: {err})") from None
    if not callable(factory):
        raise ValueError(f"suite factory {path!r} is a {type(factory).__name__}, not a callable returning a TaskSuite")
    return call_suite_factory(factory, path, device, dtype, kwargs)


def call_suite_factory(
    factory: Any,
    what: str,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    kwargs: dict[str, Any],
) -> TaskSuite:
    """``factory(**kwargs)``, given ``device`` and ``dtype`` where it takes them (else the suite's own must match
    them, as an instance's); its TypeError or ValueError, and a result that is not a suite, name ``what``."""
    import inspect

    call = dict(kwargs)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass the options as they are
        params = {}
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("device", device), ("dtype", dtype)):
        if value is not None and (key in params or open_kwargs):
            call[key] = value
    try:
        built = factory(**call)
    except (TypeError, ValueError) as err:
        raise type(err)(f"suite factory {what!r}: {err}") from None
    if not isinstance(built, TaskSuite):
        raise TypeError(f"suite factory {what!r} returned {type(built).__name__}, not a TaskSuite")
    return built


__all__ = [
    "SUITES",
    "DigitsSuite",
    "Floor",
    "ModuleSuite",
    "MultiDigits",
    "QuadraticSuite",
    "RegressionSuite",
    "TaskSpec",
    "TaskSuite",
    "Toy2DSuite",
    "call_suite_factory",
    "exact_floor",
    "least_squares_floor",
    "make_suite",
    "true_floor",
]
