"""Batched forms of the baseline players: B games' players act at once on the engine's tensors.

Each form runs its player's rule (:mod:`agents.rules`, the one the numpy player runs in ``update`` mode) with
one row per game and one step size per game (a tensor ``lrs [B]``), cast to the game's dtype at the end, so a
batch of games gives the numbers the env gives one game at a time (tested). The tuning protocol
(:mod:`mtg_env.tuning`) uses them to run a whole grid of step sizes × seeds as one batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agents.rules import Rule, coordinate_lrs
from mtg_env.engine import Game

#: The numpy player each batched form reproduces, by the name :func:`agents.make_agents` knows it by.
BATCHED_BASELINES: tuple[str, ...] = ("gradient", "momentum", "adam", "rmsprop")


class BatchedBaseline:
    """The baseline ``name`` (with ``kwargs`` as :data:`agents.AGENTS` takes them) for B games of ``game``.

    Every game's row holds all its tasks' coordinates, [heads; proposals flattened]; a task plays its own part.

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
        head_lr = [p.lr for p in self.players]
        trunk_lr = [p.lr if p.trunk_lr is None else p.trunk_lr for p in self.players]
        h, n = int(game.head_index.numel()), game.trunk_size
        #: ``[B, H + M n]`` each coordinate's step size in the layout [heads; proposals flattened].
        self.lrs = coordinate_lrs(head_lr, trunk_lr, h, game.num_tasks * n, game.device)
        #: The players' rule, one row per game (their other arguments are the same in every game).
        self.rule: Rule = self.players[0].make_rule(self.lrs)

    @property
    def t(self) -> int:
        """Steps played."""
        return self.rule.t

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        """``(head_updates [B, H], proposals [B, M, n])`` for the games' gradients, in the game's dtype."""
        game, bsz = self.game, head_grads.shape[0]
        h = int(game.head_index.numel())
        g = torch.cat([head_grads.reshape(bsz, -1), jacobian.reshape(bsz, -1)], 1)
        step = self.rule.step(g).to(game.dtype)
        return step[:, :h], step[:, h:].reshape(bsz, game.num_tasks, game.trunk_size)
