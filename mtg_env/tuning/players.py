"""Policies as factories ``lr -> Policy``: a baseline by name (:class:`Baseline`) and the selfish deviator
(:class:`Selfish`), each with its batched engine form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from agents.base import Policy
from mtg_env import engine

#: ``lr -> Policy``: a fresh player (with its own state) for one task at step size ``lr``.
PolicyFactory = Callable[[float], Policy]


# ------------------------------------------------------------------------------------------ players
class Baseline:
    """A baseline player by name as a factory ``lr -> Policy``, with a batched engine form.

    Args:
        name: A name of :data:`agents.AGENTS` (``gradient``, ``momentum``, ``adam``, ``rmsprop``).
        trunk_ratio: β / α (default: the player's, β = α).
        **kwargs: The player's other arguments (e.g. ``schedule="robbins_monro"``).
    """

    def __init__(self, name: str, trunk_ratio: float | None = None, **kwargs: Any):
        from agents.runner import AGENTS

        if name not in AGENTS:
            raise ValueError(f"unknown baseline {name!r}; available: {sorted(AGENTS)}")
        if "lr" in kwargs or "trunk_lr" in kwargs:
            raise ValueError("a Baseline's lr is what tuning chooses; give trunk_ratio instead of trunk_lr")
        if trunk_ratio is not None and not (
            not isinstance(trunk_ratio, bool) and isinstance(trunk_ratio, (int, float)) and trunk_ratio > 0
        ):
            raise ValueError(f"trunk_ratio must be a number > 0, got {trunk_ratio!r}")
        self.name, self.trunk_ratio, self.kwargs = name, trunk_ratio, dict(kwargs)
        self._cls = AGENTS[name]
        self(1e-3)  # validate the arguments now, not in a worker

    def __call__(self, lr: float) -> Policy:
        trunk = None if self.trunk_ratio is None else lr * self.trunk_ratio
        return self._cls(lr=lr, trunk_lr=trunk, **self.kwargs)

    def batched(self, game: engine.Game, lrs: Tensor) -> Any:
        """The batched form for B games of ``game`` with step sizes ``lrs [B]``."""
        from agents.batched import BatchedBaseline

        return BatchedBaseline(self.name, game, lrs, self.trunk_ratio, **self.kwargs)

    @property
    def has_batched(self) -> bool:
        from agents.batched import BATCHED_BASELINES

        return self.name in BATCHED_BASELINES

    def __repr__(self) -> str:
        args = [repr(self.name)]
        if self.trunk_ratio is not None:
            args.append(f"trunk_ratio={self.trunk_ratio}")
        args += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Baseline({', '.join(args)})"


class Selfish:
    """The selfish deviator as a factory ``lr -> SelfishAgent``: ``inner``'s rule with its trunk proposal scaled by
    ``scale`` (see :class:`agents.SelfishAgent`); batched when ``inner`` is."""

    def __init__(self, inner: PolicyFactory, scale: float = 4.0):
        from agents.selfish import SelfishAgent

        SelfishAgent(inner(1e-3), scale)  # validate now
        self.inner, self.scale = inner, float(scale)

    def __call__(self, lr: float) -> Policy:
        from agents.selfish import SelfishAgent

        return SelfishAgent(self.inner(lr), self.scale)

    @property
    def has_batched(self) -> bool:
        return _batched_form(self.inner)

    def batched(self, game: engine.Game, lrs: Tensor) -> Any:
        return _ScaledProposals(self.inner.batched(game, lrs), self.scale)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Selfish({self.inner!r}, scale={self.scale})"


class _ScaledProposals:
    def __init__(self, inner: Any, scale: float):
        self.inner, self.scale = inner, scale

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        head_updates, proposals = self.inner.act(head_grads, jacobian)
        # As SelfishAgent: the inner action in the game's dtype, scaled in float64, cast back.
        return head_updates, (self.scale * proposals.to(torch.float64)).to(proposals.dtype)


def _batched_form(factory: Any) -> bool:
    return bool(getattr(factory, "has_batched", False)) and callable(getattr(factory, "batched", None))
