"""Checks and canonical forms of the plain values a benchmark file holds (tables, lists, names), shared by
:mod:`mtg_env.bench.parts`, :mod:`mtg_env.bench.config` and :mod:`mtg_env.bench.parse`."""

from __future__ import annotations

from typing import Any

from mtg_env._args import int_arg


def _freeze(value: Any) -> Any:
    """Lists as tuples and dicts as sorted (key, value) tuples: hashable, canonical."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _pairs(value: Any, key: str) -> None:
    """A frozen table: a tuple of ``(name, value)`` pairs with string names."""
    if not isinstance(value, tuple) or not all(
        isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in value
    ):
        raise TypeError(f"{key} must be a table of name = value pairs, got {_shown(value)}")


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: _thaw(v) for k, v in value}
        return tuple(_thaw(v) for v in value)
    return value


def _names(values: Any, key: str, *, kind: type = str) -> None:
    """A tuple of ``kind`` values, none repeated (a repeat would count its games twice in the IQM and CIs)."""
    if not isinstance(values, tuple):
        raise TypeError(f"{key} must be a list, got {_shown(values)}")
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if kind is int:
            int_arg(f"{key}[{i}]", v, low=1)
        elif not isinstance(v, kind) or not v:
            raise TypeError(f"{key}[{i}] must be a non-empty string, got {_shown(v)}")
        if v in seen:
            raise ValueError(f"{key}[{i}] repeats {v!r} (also {key}[{seen[v]}]); its games would count twice")
        seen[v] = i
