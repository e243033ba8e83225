"""The state of B games and what a step reports, as tensors with a leading batch dimension B."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import Tensor

from mtg_env.rng import GameRNG

#: How :meth:`GameState.tensors` names the consensus rule's state entries (``rule.<name>``).
RULE_PREFIX = "rule."
#: How :meth:`GameState.tensors` names the noise and regularisation state entries (``aux.<name>``).
AUX_PREFIX = "aux."


@dataclass(frozen=True)
class GameState:
    """Everything that decides the rest of B games (besides the :class:`~mtg_env.engine.game.Game` spec).

    ``heads`` and ``trunk`` are the parameters; ``head_grads`` and ``jacobian`` the gradients at them on the
    batch of the current step (what the players observe and the ``step_size`` mode scales); ``rule_state`` the
    consensus rule's state of every game as tensors (empty for stateless rules). The engine never modifies a
    state: :func:`~mtg_env.engine.core.step` returns a new one.
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
    rule_state: dict[str, Tensor] = field(default_factory=dict)
    """The consensus rule's state of every game, ``[B, ...]`` per entry (see
    :func:`mtg_env.consensus.rule_state_kind`; e.g. FAMO's ``logits [B, M]``), reset with the game; empty for a
    rule without state."""
    aux: dict[str, Tensor] = field(default_factory=dict)
    """The noise models' and regulariser's state, ``[B, ...]`` per entry (:mod:`mtg_env.engine.noise`: the
    stale proposals' buffer, the proximal anchor); empty when those options are off."""
    rule_objects: tuple[Any, ...] = ()
    """Per-game copies of a consensus callable that keeps state on itself (``reset()``, no ``init_state``); one for
    a batched one. The engine steps copies of them and never the objects held here; empty for any other rule."""

    @property
    def rng(self) -> GameRNG:
        """The games' randomness at their current step."""
        return GameRNG(self.seeds, self.episodes, self.t, self.keys)

    @property
    def batch_size(self) -> int:
        return int(self.heads.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor by name, the rule state's entries as ``rule.<name>``."""
        skip = ("rule_state", "rule_objects", "aux")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out.update({RULE_PREFIX + k: v for k, v in self.rule_state.items()})
        out.update({AUX_PREFIX + k: v for k, v in self.aux.items()})
        return out

    def with_tensors(self, tensors: Mapping[str, Tensor]) -> GameState:
        """A new state with the tensors named as in :meth:`tensors` replaced (the others kept)."""
        prefixes = (RULE_PREFIX, AUX_PREFIX)
        plain: dict[str, Any] = {k: v for k, v in tensors.items() if not k.startswith(prefixes)}
        rule = {k[len(RULE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(RULE_PREFIX)}
        aux = {k[len(AUX_PREFIX) :]: v for k, v in tensors.items() if k.startswith(AUX_PREFIX)}
        return replace(self, **plain, rule_state={**self.rule_state, **rule}, aux={**self.aux, **aux})

    def detach(self) -> GameState:
        """The same state cut from any autograd graph (e.g. between truncated unrolls)."""
        return self.with_tensors({k: v.detach() for k, v in self.tensors().items()})

    def to_dict(self) -> dict[str, Tensor]:
        """CPU copies of every tensor (a checkpoint), named as in :meth:`tensors`."""
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
    """``[B, M, 8]`` the observation features (:data:`~mtg_env.engine.layout.FEATURES`), inside their bounds."""
    rewards: Tensor
    """``[B, M]`` −loss, or the divergence reward on the step a game diverges."""
    diverged: Tensor
    """``[B]`` bool: a loss or parameter stopped being finite (or a loss blew up past the divergence threshold)."""
    truncated: Tensor
    """``[B]`` bool: the game reached its horizon without diverging or leaving the rule's domain."""
    out_of_domain: Tensor
    """``[B]`` bool: the game ended before its horizon because a loss reached the consensus rule's floor (a rule
    that takes logarithms or ratios of the losses cannot step on there); its rewards are the usual −loss."""
