"""What a step of B games reports besides its losses and gradients: divergence, rewards, the end flags and the
observation features (:func:`mtg_env.engine.step` and :func:`mtg_env.engine.reset` call these)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtg_env.engine.features import _plain, features
from mtg_env.engine.game import Game
from mtg_env.engine.state import GameState, StepOutput


def _finite(game: Game, losses: Tensor, heads: Tensor, trunk: Tensor, start: Tensor) -> Tensor:
    """``[B]``: the game has not diverged: every loss and parameter finite and, with a divergence threshold,
    every |ℓ_m| ≤ threshold · max(1, |ℓ_m at reset|). x·0 is 0 exactly when every entry of x is finite (inf·0
    and nan·0 are nan): far cheaper than isfinite(x).all(), and three chained matrix-vector products for all of
    them (a [1, n] @ [n, 1] matmul took 40 µs at n = 16 512 where the matrix-vector product takes 4)."""
    losses = _plain(losses)
    probe = torch.mv(losses, game.zero_losses)
    probe = torch.addmv(torch.addmv(probe, _plain(heads), game.zero_heads), _plain(trunk), game.zero_trunk)
    ok = probe == 0
    if game.divergence_threshold is not None:
        bound = game.divergence_threshold * _plain(start).abs().clamp_min(1.0)
        ok = ok & (losses.abs() <= bound).all(1)
    return ok


def _rewards(game: Game, state: GameState, finite: Tensor, all_finite: bool = False) -> Tensor:
    """−loss, or on the step a game diverges the divergence reward (see :attr:`Game.divergence_reward`);
    ``all_finite``: the caller knows that no game diverged (then −loss without forming the penalty)."""
    losses = state.losses
    if all_finite:
        return -losses
    mode = game.divergence_reward
    if mode == "remaining":
        remaining = (game.horizon - state.t + 1).clamp_min(1).to(losses.dtype).unsqueeze(1)
        penalty = -(remaining * state.start_losses.detach().abs().nan_to_num(nan=1.0).clamp(1.0, game.big))
        penalty = penalty.clamp_min(-game.big)
    elif mode == "clipped_loss":
        penalty = (-losses).nan_to_num(nan=-game.big).clamp(-game.big, game.big)
    else:
        penalty = torch.full_like(losses, float(mode))
    return torch.where(finite.unsqueeze(1), -losses, penalty)


def _output(
    game: Game,
    state: GameState,
    finite: Tensor,
    out_of_domain: Tensor | None,
    ended: Tensor | None = None,
    diverged: Tensor | None = None,
) -> StepOutput:
    """What a step reports; ``out_of_domain`` ``None`` for a rule without a loss floor (no game is outside it);
    ``ended`` (``t >= horizon``) and ``diverged`` (``~finite``) where the caller has them already."""
    feats = features(game, state.losses, state.prev_losses, state.head_grads, state.jacobian, state.last_move, state.t)
    if diverged is None:
        diverged = ~finite
    # On the CPU one look tells whether any game diverged (no device to wait for): then the penalty is skipped.
    all_finite = finite.device.type == "cpu" and not bool(diverged.any())
    if ended is None:
        ended = state.t >= game.horizon
    if out_of_domain is None:
        out_of_domain = torch.zeros_like(finite)
        truncated = finite & ended
    else:
        truncated = finite & ~out_of_domain & ended
    return StepOutput(
        losses=state.losses,
        head_grads=state.head_grads,
        jacobian=state.jacobian,
        features=feats,
        rewards=_rewards(game, state, finite, all_finite),
        diverged=diverged,
        truncated=truncated,
        out_of_domain=out_of_domain,
    )


def in_domain(game: Game, losses: Tensor) -> Tensor:
    """``[B]``: every finite loss is above the consensus rule's floor (always true for a rule without one); the
    engine never calls the rule on a game outside it. Non-finite losses pass: the game has diverged."""
    if game.loss_floor is None:
        return torch.ones(losses.shape[0], dtype=torch.bool, device=losses.device)
    with torch.no_grad():
        losses = losses.detach()
        return ((losses > game.loss_floor) | ~torch.isfinite(losses)).all(1)
