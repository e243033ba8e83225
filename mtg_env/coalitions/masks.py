"""Coalitions as bitmasks over the players (bit k set for player k)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def coalition_mask(tasks: Iterable[int]) -> int:
    """The bitmask of a coalition (bit k set for player k): ``coalition_mask([0, 2]) == 5``."""
    mask = 0
    for k in tasks:
        mask |= 1 << int(k)
    return mask


def members(mask: int) -> tuple[int, ...]:
    """The players of a coalition bitmask, in increasing order: ``members(5) == (0, 2)``."""
    return tuple(k for k in range(int(mask).bit_length()) if mask >> k & 1)


def _label(mask: int, names: Sequence[str] | None = None) -> str:
    shown = members(mask) if names is None else tuple(names[k] for k in members(mask))
    return "{" + ", ".join(str(k) for k in shown) + "}"
