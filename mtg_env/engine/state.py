"""The state of B games and what a step reports, as tensors with a leading batch dimension B."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from torch import Tensor

from mtg_env.engine.rng import GameRNG


@dataclass(frozen=True)
class GameState:
    """Everything that decides the rest of B games (besides the :class:`~mtg_env.engine.game.Game` spec).

    ``heads`` and ``trunk`` are the parameters; ``head_grads`` and ``jacobian`` the gradients at them on the
    batch of the current step (what the players observe and the ``step_size`` mode scales); ``rules`` the
    per-game consensus rule objects of rules that keep state across steps (empty for stateless rules).
    """

    heads: Tensor
    """``[B, H]`` every task's head, concatenated (head m is a contiguous slice)."""
    trunk: Tensor
    """``[B, n]`` the shared trunk Ψ."""
    t: Tensor
    """``[B]`` int64 step counter."""
    seeds: Tensor
    """``[B]`` int64 seed of each game: with ``episodes`` and ``t`` it decides every random number."""
    episodes: Tensor
    """``[B]`` int64 episode counter (a reset without a new seed plays the seed's next episode)."""
    keys: Tensor
    """``[B]`` int64 hash of (seed, episode): the part of every random number's key fixed for an episode."""
    losses: Tensor
    """``[B, M]`` task losses at the current parameters and batch."""
    prev_losses: Tensor
    """``[B, M]`` the losses of the previous step (equal to ``losses`` after a reset)."""
    start_losses: Tensor
    """``[B, M]`` the losses at reset (they scale the default divergence reward)."""
    last_move: Tensor
    """``[B, n]`` the trunk's last move C(P) (zero after a reset)."""
    head_grads: Tensor
    """``[B, H]`` each head's own gradient ∇_Θm ℓ_m."""
    jacobian: Tensor
    """``[B, M, n]`` the per-task trunk gradients ∇_Ψ ℓ_m (rows)."""
    done: Tensor
    """``[B]`` bool: the game has diverged or reached its horizon."""
    trunk_opt: Tensor
    """``[B, S, n]`` the state of the optimizer after the consensus rule (S = 0 without one; momentum's buffer;
    Adam's m and v), zero at reset (see :mod:`mtg_env.engine.optim`)."""
    head_opt: Tensor
    """``[B, S, H]`` the heads' optimizer state, likewise."""
    rules: tuple[Any, ...] = ()
    """Per-game consensus rule objects (stateful rules only), else empty."""

    @property
    def rng(self) -> GameRNG:
        """The games' randomness at their current step."""
        return GameRNG(self.seeds, self.episodes, self.t, self.keys)

    @property
    def batch_size(self) -> int:
        return int(self.heads.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        """The tensor fields by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rules"}

    def detach(self) -> GameState:
        """The same state cut from any autograd graph (e.g. between truncated unrolls)."""
        detached: dict[str, Any] = {k: v.detach() for k, v in self.tensors().items()}
        return replace(self, **detached)

    def to_dict(self) -> dict[str, Any]:
        """CPU copies of the tensor fields (a checkpoint); the rule objects are left out."""
        return {k: v.detach().cpu().clone() for k, v in self.tensors().items()}


@dataclass(frozen=True)
class StepOutput:
    """What :func:`~mtg_env.engine.core.step` and :func:`~mtg_env.engine.core.reset` report for B games."""

    losses: Tensor
    """``[B, M]`` (differentiable in the actions of a differentiable unroll)."""
    head_grads: Tensor
    """``[B, H]``."""
    jacobian: Tensor
    """``[B, M, n]``."""
    features: Tensor
    """``[B, M, 8]`` the observation features (:data:`~mtg_env.engine.game.FEATURES`), inside their bounds."""
    rewards: Tensor
    """``[B, M]`` −loss, or the divergence reward on the step a game diverges."""
    diverged: Tensor
    """``[B]`` bool: a loss or parameter stopped being finite."""
    truncated: Tensor
    """``[B]`` bool: the game reached its horizon without diverging."""
