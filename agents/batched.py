"""Batched torch forms of the baseline players: B games' players act at once on the engine's tensors.

Each form plays exactly what its numpy player (:mod:`agents.gradient`, :mod:`agents.momentum`,
:mod:`agents.adaptive`) plays in ``update`` mode, game by game, with one step size per game (a tensor
``lrs [B]``): the same float64 arithmetic in the same order, cast to the game's dtype at the end, so a
batch of games gives the numbers the env gives one game at a time (tested). The tuning protocol
(:mod:`mtg_env.tuning`) uses them to run a whole grid of step sizes × seeds as one batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env.engine import Game

#: The numpy player each batched form reproduces, by the name :func:`agents.make_agents` knows it by.
BATCHED_BASELINES: tuple[str, ...] = ("gradient", "momentum", "adam", "rmsprop")


def ieee_sqrt(x: Tensor) -> Tensor:
    """√x correctly rounded (IEEE 754), as ``numpy.sqrt``, on every device (not differentiable).

    On the CPU ``torch.sqrt`` is MKL's vector math: within an ulp but not correctly rounded (about 0.8 % of
    float64 inputs come out one ulp low, and which ones depends on the MKL_CBWR code path), so the numpy players'
    ``np.sqrt`` is used there; CUDA's ``sqrt`` is correctly rounded."""
    if x.device.type != "cpu":
        return x.sqrt()
    return torch.from_numpy(np.sqrt(x.detach().numpy()))


class BatchedBaseline:
    """The baseline ``name`` (with ``kwargs`` as :data:`agents.AGENTS` takes them) for B games of ``game``.

    Args:
        name: ``gradient``, ``momentum``, ``adam`` or ``rmsprop``.
        game: The engine's game (``update`` mode).
        lrs: ``[B]`` the step size ``lr`` of each game's players (the trunk uses ``trunk_ratio · lr``).
        trunk_ratio: β / α, the same in every game (``None``: β = α, as the players' default).
        kwargs: The player's other arguments (``schedule``/``power``, ``momentum``, ``betas``/``eps``,
            ``alpha``/``eps``); ``lr`` and ``trunk_lr`` come from ``lrs`` and ``trunk_ratio``.
    """

    def __init__(self, name: str, game: Game, lrs: Tensor, trunk_ratio: float | None = None, **kwargs: Any) -> None:
        from agents.runner import AGENTS

        if name not in BATCHED_BASELINES:
            raise ValueError(f"no batched form of {name!r}; batched baselines: {list(BATCHED_BASELINES)}")
        if game.action_mode != "update":
            raise ValueError(f"batched baselines play action_mode='update', the game has {game.action_mode!r}")
        if "lr" in kwargs or "trunk_lr" in kwargs:
            raise ValueError("lr and trunk_lr come from lrs and trunk_ratio; do not pass them in kwargs")
        lrs = torch.as_tensor(lrs, dtype=torch.float64).reshape(-1).cpu()
        # The numpy player validates the arguments (and gives the defaults), one per distinct step size.
        self.players: list[Any] = [
            AGENTS[name](lr=float(lr), trunk_lr=None if trunk_ratio is None else float(lr) * trunk_ratio, **kwargs)
            for lr in lrs.tolist()
        ]
        self.name, self.game = name, game
        device = game.device
        h, n = int(game.head_index.numel()), game.trunk_size
        head_lr = torch.tensor([p.lr for p in self.players], dtype=torch.float64, device=device)
        trunk_lr = torch.tensor(
            [p.lr if p.trunk_lr is None else p.trunk_lr for p in self.players], dtype=torch.float64, device=device
        )
        #: ``[B, H + M n]`` each coordinate's step size in the layout [heads; proposals flattened].
        self.lrs = torch.cat([head_lr[:, None].expand(-1, h), trunk_lr[:, None].expand(-1, game.num_tasks * n)], 1)
        self.t = 0
        self._first: Any = self.players[0]
        self._m = torch.zeros_like(self.lrs)
        self._v = torch.zeros_like(self.lrs)

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        """``(head_updates [B, H], proposals [B, M, n])`` for the games' gradients, in the game's dtype."""
        game, bsz = self.game, head_grads.shape[0]
        h = int(game.head_index.numel())
        g = torch.cat([head_grads.reshape(bsz, -1), jacobian.reshape(bsz, -1)], 1)
        p = self._first
        if self.name == "gradient":
            # As GradientAgent: (α_t, β_t) from its own schedule, times the gradient in the game's dtype (a
            # Python float times a float32 array stays float32 in numpy).
            steps = torch.tensor([q.steps(self.t) for q in self.players], dtype=torch.float64, device=g.device)
            rates = torch.cat([steps[:, :1].expand(-1, h), steps[:, 1:].expand(-1, g.shape[1] - h)], 1)
            step = -rates.to(g.dtype) * g
        elif self.name == "momentum":
            self._m = p.momentum * self._m - self.lrs * g.to(torch.float64)
            step = self._m
        else:
            g = g.to(torch.float64)
            b1, b2 = p._beta1, p._beta2
            t = self.t + 1
            c1 = 1.0 - b1**t if p._bias_correction else 1.0
            c2 = 1.0 - b2**t if p._bias_correction else 1.0
            self._m = b1 * self._m + (1 - b1) * g
            self._v = b2 * self._v + (1 - b2) * g * g
            step = -self.lrs * (self._m / c1) / (ieee_sqrt(self._v / c2) + p.eps)
        self.t += 1
        step = step.to(game.dtype)
        return step[:, :h], step[:, h:].reshape(bsz, game.num_tasks, game.trunk_size)
