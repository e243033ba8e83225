"""Checks of user arguments: a value of the expected type and range, or an error that names the argument, says
what was expected and shows what was given. Nothing is coerced: ``True`` is not the int 1, ``"3"`` is not a
number and 2.7 is not an int. A leaf module (imports nothing from the package), shared by the env, the suites,
the consensus rules, the agents and the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """A real number (int or float, numpy's included), not a bool or a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    """An int (numpy's included), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def int_arg(name: str, value: Any, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in [``low``, ``high``], or a ``TypeError``/``ValueError`` naming ``name``."""
    bounds = _bounds(low, high, closed=(True, True))
    note = f" ({hint})" if hint else ""
    if not is_int(value):
        raise TypeError(f"{name} must be an int{bounds}{note}, got {_shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an int{bounds}{note}, got {value}")
    return int(value)


def real_arg(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (each closed unless ``*_open``), or a
    ``TypeError``/``ValueError`` naming ``name``. NaN and ±inf are refused."""
    bounds = _bounds(low, high, closed=(not low_open, not high_open))
    note = f" ({hint})" if hint else ""
    if not is_real(value):
        raise TypeError(f"{name} must be a finite number{bounds}{note}, got {_shown(value)}")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"{name} must be a finite number{bounds}{note}, got {value!r}")
    return v


def bool_arg(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy's bool included), else a ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_shown(value)}")
    return bool(value)


def choice_arg(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``, else a ``ValueError`` naming ``name`` and listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _bounds(low: float | None, high: float | None, closed: tuple[bool, bool]) -> str:
    if low is not None and high is not None:
        return f" in {'[' if closed[0] else '('}{low}, {high}{']' if closed[1] else ')'}"
    if low is not None:
        return f" {'>=' if closed[0] else '>'} {low}"
    if high is not None:
        return f" {'<=' if closed[1] else '<'} {high}"
    return ""
