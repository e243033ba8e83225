"""The curvature guard every learned rule plays with: stability by construction, from the rule's own memory.

A learned rule's step is tuned on its training family; on a game whose curvature is far beyond it (an
ill-conditioned quadratic, condition 1e4–1e5) its step is far above 2/L and the game blows up within a few steps.
The guard needs no knowledge of the game. Per block (a player's head, or its trunk proposal) it keeps a secant
estimate of the curvature along the block's last move,

    L̂ = ‖g_t − g_{t−1}‖ / ‖s‖,

s the block's last move: for a head, its last update with a tenth of the consensus's last trunk move ΔΨ added in
quadrature (the head's gradient changes with the trunk as well; ‖ΔΨ‖ is every player's feature
``symlog_trunk_move_norm``); for a trunk proposal, the player's last proposal, or ‖ΔΨ‖ where the consensus moved less,
but no less than a quarter of the proposal: the trunk gradient changes by the consensus move, which under ``sum``
adds up every player's proposal, so the gradient change per unit of the player's own proposal is the curvature the
player's step meets, and near a trunk equilibrium, where the proposals cancel and ‖ΔΨ‖ → 0, the quarter keeps the
estimate from inflating (``guard_secant = "shorter"``, the first guard, divides a head's by its update alone and a
proposal's by the shorter of it and ‖ΔΨ‖: both inflate where the block's own move is small beside what else
moves, and the cap then stalls a converging game). It caps the block's update u at

    ‖u‖ ≤ c·‖d‖ / L̂,

d the update's direction (the gradient for a gradient step, the heavy ball's (1 + β)·momentum for a heavy ball):
an effective step of at most c / L̂, stable along the estimated direction for c < 2 (c < 2(1 + β) for the heavy
ball). A growing mode dominates the moves within a step or two, so L̂ then measures its curvature and the cap stops
it. Before a block has moved (the first step) its update is at most ``radius``·√K (K its coordinates), a trust
region in the parameters' units: no secant is known yet, and an unbounded gradient step on a stiff game is what
blows it up on its first move.

The cap only ever shrinks an update, and it leaves one that is within it bit for bit: where the rule's step is
already safe the guarded rule plays exactly the unguarded one. Everything is per coordinate or per block, so a
player's :class:`~agents.learned.policy.LearnedAgent` and the batched :class:`~agents.learned.batched.EngineDriver`
apply it alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from agents.learned.blocks import Blocks


@dataclass(frozen=True)
class GuardConfig:
    """The guard's options, shared by every rule's config (they add no weights: a rule file without them plays the
    defaults, the guard on)."""

    guard: bool = True
    """Play with the curvature guard (this module): a block's first update at most ``guard_radius``·√K; once its
    gradient grew, its effective step at most ``guard_step`` / L̂ of a secant curvature estimate L̂ along its last
    move. Off: the rule as meta-trained (the shipped weights' files predate the option and play it on)."""
    guard_step: float = 1.9
    """c of the guard: the largest effective step times L̂ (< 2: stable along the estimated direction)."""
    guard_radius: float = 1.0
    """The bound of a block's first update (no secant yet), per √coordinate, in the parameters' units."""
    guard_memory: float = 0.9
    """L̂ is the newest secant or, if larger, the last L̂ times this (a cap lifts by at most 1/0.9 per step); the MLP
    rule's ``guard_memory_noisy_bounded`` replaces it in games of estimated gradients under a min-bounded rule."""
    guard_growth: float = 1.0
    """The cap holds from the first step on which the block's gradient norm grew by more than this factor."""
    guard_slack: float = 10.0
    """Before the cap holds, an effective step is at most this times it (a step 10× the stable one never is)."""
    guard_free: float = 10.0
    """Blocks the cap never holds (the MLP rule's Barzilai–Borwein heads): after the first move, this times it."""
    guard_secant: str = "bounded"
    """What a block's secant divides the change of its gradient by. ``"bounded"`` (default): a head's own last
    update, with ``CROSS``·‖ΔΨ‖ added in quadrature (the head's gradient changes with the trunk too: divided by its
    own move alone, a head the cap holds reads the trunk's effect on it as a curvature that grows as its capped step
    shrinks, and stalls); a trunk proposal's, the player's own proposal, shortened to ‖ΔΨ‖ where the consensus moved
    less, but to no less than ``CANCEL`` of it (near a trunk equilibrium of ``sum`` the proposals cancel, ‖ΔΨ‖ → 0
    while each player's trunk gradient remains: divided by ‖ΔΨ‖ the estimate inflates without bound, and the cap,
    different for every player, moves the fixed point). ``"shorter"``: the first guard's (a head's own update; a
    trunk proposal's, the shorter of it and ‖ΔΨ‖), which the sealed keys K1 and K2 of docs/results/learned.md used."""
    guard_hold_unplayed: bool = False
    """Hold a trunk proposal's L̂ on a step where the consensus moved the trunk by less than ``CANCEL`` of the
    proposal's last length: no new secant, no fading by ``guard_memory`` (a proposal never played keeps its first
    move's trust radius), and a held step neither arms the block nor counts as its first move. Under a rule that can
    leave a proposal unplayed (``krum`` selects one, ``trimmed_mean`` takes a median per coordinate, ``cagrad`` stops
    the trunk near the tasks' Pareto front), the player's gradient then changes by what the others' moves did, not by
    its own proposal: the secant read it as a flat direction, L̂ faded, the cap lifted, and the proposal grew, 100-fold
    and more, until the rule played it and the game blew up (docs/results/learned.md, thirty-third session). Off by
    default, and in every shipped file: under ``sum`` near a trunk equilibrium the proposals cancel (‖ΔΨ‖ below the
    quarter) and the faded estimate is what lets the cap lift there, so it changes play wherever that happens."""

    def __post_init__(self) -> None:
        if not isinstance(self.guard, bool):
            raise TypeError(f"guard must be a bool, got {self.guard!r}")
        if not isinstance(self.guard_hold_unplayed, bool):
            raise TypeError(f"guard_hold_unplayed must be a bool, got {self.guard_hold_unplayed!r}")
        ranges = {  # field: (test, what it must be)
            "guard_step": (lambda x: 0 < x < math.inf, "a finite number > 0"),
            "guard_radius": (lambda x: 0 < x < math.inf, "a finite number > 0"),
            "guard_memory": (lambda x: 0 <= x <= 1, "a number in [0, 1]"),
            "guard_growth": (lambda x: 0 < x < math.inf, "a finite number > 0"),
            "guard_slack": (lambda x: x >= 1, "a number >= 1 (inf: no bound before the cap holds)"),
            "guard_free": (lambda x: x >= 1, "a number >= 1 (inf: no bound)"),
        }
        for name, (ok, expected) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"{name} must be {expected}, got {value!r}")
        if self.guard_secant not in GUARD_SECANTS:
            raise ValueError(
                f"guard_secant must be one of {GUARD_SECANTS} ('bounded': the default; 'shorter': the first guard's), "
                f"got {self.guard_secant!r}"
            )


#: ``guard_secant = "bounded"``: a trunk proposal's secant divides by no less than this share of the proposal.
CANCEL = 0.25
#: ``guard_secant = "bounded"``: a head's secant divides by its move and this share of ‖ΔΨ‖ in quadrature.
CROSS = 0.1
#: The secants a guard can take (:attr:`GuardConfig.guard_secant`).
GUARD_SECANTS: tuple[str, ...] = ("bounded", "shorter")

#: The guard's state keys (kept beside the rule's own): the last gradient (per coordinate), and per block the norm of
#: the last move and of the last gradient, L̂, whether a move was seen, whether armed, the first gradient norm.
GUARD_KEYS: tuple[str, ...] = ("guard_g", "guard_s", "guard_n", "guard_l", "guard_seen", "guard_armed", "guard_g0")


def guard_state(g: Tensor, num_groups: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """The guard's fresh state for gradients ``g [B, K]`` in ``num_groups`` blocks: no move made, no estimate."""
    b, k = g.shape
    state = {key: torch.zeros(b, num_groups, dtype=dtype, device=g.device) for key in GUARD_KEYS[1:]}
    return {"guard_g": torch.zeros(b, k, dtype=dtype, device=g.device)} | state


def apply_guard(
    update: tuple[Tensor, Tensor],
    reach: Tensor | None,
    g: Tensor,
    blocks: Blocks,
    move: Tensor,
    state: dict[str, Tensor],
    config: GuardConfig,
    restart: bool = False,
    capped_blocks: Tensor | None = None,
    fallback: bool = False,
    rise: Tensor | None = None,
    restart_floor: Tensor | None = None,
    lift_growing: bool = True,
) -> tuple[tuple[Tensor, Tensor], Tensor, dict[str, Tensor]]:
    """The guarded update (see the module docstring), as the heads' ``[B, h]`` and the trunk proposals' ``[B, P, n]``.

    Args:
        update: The rule's update: the heads' ``[B, h]`` and the trunk proposals' ``[B, P, n]``
            (:meth:`Blocks.split`).
        reach: ``[B, G]`` ‖d‖ per block, d the direction the update is a step along (the heavy ball's
            (1 + β)·momentum), so ‖u‖ / ‖d‖ is the block's effective step; ``None``: the gradient, d = g.
        g: ``[B, K]`` this step's gradients.
        blocks: The coordinates' layout (:class:`~agents.learned.blocks.Blocks`).
        move: ``[B]`` ‖ΔΨ‖, the consensus's last trunk move (the same for every player).
        state: The guard's state (:func:`guard_state`, or the last call's); where it carries ``guard_fade``
            (``[B, 1]``, :attr:`~agents.learned.rule_configs.MLPRuleConfig.guard_memory_noisy_bounded`), that is
            L̂'s memory in place of ``guard_memory``, and the next state carries it on.
        config: The rule's guard options (:class:`GuardConfig`): c = ``guard_step``, the first move's
            ``guard_radius``, L̂'s ``guard_memory``, the arming ``guard_growth``, the ``guard_slack`` before it and
            the ``guard_free`` of blocks outside ``capped_blocks``.
        restart: The trunk proposals are heavy balls: where one is capped, it plays the gradient step c·g / L̂
            instead of the scaled heavy ball (and the rule restarts its momentum): the momentum built on an unstable
            step would carry the overshoot on.
        capped_blocks: ``[G]`` bool: the blocks a growing gradient arms (default all); the others are armed by
            ``rise`` alone and before that take ``guard_free`` times the cap (a rule whose step is a secant step
            already, the MLP rule's Barzilai–Borwein heads, needs no tighter one while its loss does not jump; its
            fallback step before a curvature estimate, or where the game's moves spoil it, does).
        fallback: The block is armed only once its gradient norm grows beyond its first one (worse off than at the
            start, and getting worse), keeps the looser ``guard_slack`` bound when armed, and on every such step it
            plays g / L̂ instead of the rule's update: for a rule whose update is not a step along the gradient (the
            LSTM's is bounded and need not descend), a cap on its length does not stop a drift uphill.
        rise: ``[B, G]`` Δℓ − |ℓ_{t−1}| of each block's player (> 0: its loss more than doubled on the last step),
            which arms the blocks outside ``capped_blocks``.
        restart_floor: ``[B, 1]``, with ``restart``: a restarted trunk proposal steps as if its gradient were at
            least this long, c·g·max(1, floor / ‖g‖) / L̂ (the balance's G, :mod:`agents.learned.balance`: under a
            min-norm consensus a capped player whose gradient is short would otherwise bound every player's move).
            Lifted, the restart is longer than the cap: for that player the balance, not the cap, sets its step.
        lift_growing: With ``restart_floor``: lift also a block whose gradient grew over its last move (the arming
            test); ``False``: such a block restarts at the cap, c·g / L̂ (a lifted restart that overshot is not
            lifted again while its gradient grows).

    Returns:
        The guarded update (heads, trunk proposals), ``[B, G]`` bool the blocks that were capped (or played the
        fallback), the guard's next state.
    """
    dtype = update[0].dtype
    step, radius, growth = config.guard_step, config.guard_radius, config.guard_growth
    memory = state.get("guard_fade", config.guard_memory)  # [B, 1] where guard_memory_noisy_bounded plays
    trunk_block = blocks.trunk_block
    capped_block = torch.ones_like(trunk_block) if capped_blocks is None else capped_blocks
    g_head, g_trunk = blocks.split(g)
    with torch.no_grad():
        moved = state["guard_s"]  # ‖s‖ per block (0 before the first move)
        consensus = move.to(dtype).unsqueeze(1)
        if config.guard_secant == "bounded":
            trunk = torch.minimum(moved, torch.maximum(consensus, CANCEL * moved))
            # a head that has not moved yet keeps 0 (no secant before its first move, whatever the trunk did)
            moved = torch.where(trunk_block, trunk, torch.hypot(moved, CROSS * consensus) * (moved > 0))
        else:
            moved = torch.where(trunk_block, torch.minimum(moved, consensus), moved)
        last_head, last_trunk = blocks.split(state["guard_g"])
        changed = blocks.norms(g_head - last_head, g_trunk - last_trunk)
        fresh = moved > 0
        if config.guard_hold_unplayed:  # a trunk proposal the consensus left (mostly) unplayed: L̂ held
            fresh = fresh & ((consensus >= CANCEL * state["guard_s"]) | ~trunk_block)
        # The newest secant, or the last estimate fading by ``memory`` per step if that is larger: a secant along a
        # flat direction does not lift the cap at once (a stiff direction the last move missed may come back).
        secant = changed / torch.where(fresh, moved, 1.0)
        curvature = torch.where(fresh, torch.maximum(secant, memory * state["guard_l"]), state["guard_l"])
        seen = torch.maximum(state["guard_seen"], fresh.to(dtype))
        # Armed for good once the block's gradient grew by more than ``growth`` over one of its moves: the sign of an
        # unstable step (a stable game whose gradients only shrink never meets the cap).
        norm = blocks.norms(g_head, g_trunk)
        growing = fresh & (norm > growth * state["guard_n"]) & capped_block
        if rise is not None:  # a block outside capped_blocks: the player's loss more than doubled (an overshoot)
            growing = growing | (fresh & (rise.to(dtype) > 0) & ~capped_block)
        if fallback:  # worse off than at the start, and getting worse
            growing = growing & (norm > state["guard_g0"])
        armed = torch.maximum(state["guard_armed"], growing.to(dtype))
    # ‖u‖ per block, with a gradient that stays finite where a block's update is 0 (√0's derivative is inf, and the
    # masked branch of a where still carries it: an untrained LSTM's zero update gave NaN meta-gradients)
    squares = blocks.sums(update[0].square(), update[1].square())
    size = torch.where(squares > 0, torch.where(squares > 0, squares, 1.0).sqrt(), 0.0)
    # The cap: c·‖d‖ / L̂ once armed (none where the gradient did not change), ``slack`` times that before, the
    # trust radius on the first move.
    flat = curvature <= 0
    reach = norm if reach is None else reach.detach()
    bound = torch.where(flat, math.inf, step * reach / torch.where(flat, 1.0, curvature))
    before = torch.where(capped_block, config.guard_slack, config.guard_free) * bound  # not armed yet
    # A rule with a fallback keeps its looser bound when armed: the fallback step is what stops its drift.
    armed_limit = before if fallback else bound
    limit = torch.where(armed > 0, armed_limit, torch.where(seen > 0, before, radius * blocks.sizes.to(dtype).sqrt()))
    over = size > limit
    scale = torch.where(over, limit / torch.where(over, size, 1.0), 1.0)  # [B, G]: exactly 1 where within the cap
    scale_head, scale_trunk = blocks.spread(scale)
    guarded_head, guarded_trunk = update[0] * scale_head, update[1] * scale_trunk
    length = torch.where(over, limit, size)  # the guarded move's norm
    capped = over
    if restart:  # a capped heavy ball restarts: a gradient step at the cap, c·g / L̂
        restarted = over & (armed > 0) & trunk_block
        inverse = step / torch.where(restarted, curvature, 1.0)
        if restart_floor is not None:  # never shorter than a gradient of the floor's length
            if restart_floor.shape != (norm.shape[0], 1):
                expected = [norm.shape[0], 1]
                raise ValueError(f"restart_floor must be [B, 1] = {expected}, got {list(restart_floor.shape)}")
            lift = restart_floor.to(dtype) / torch.where(norm > 0, norm, 1.0)
            # (``growing`` is the arming test here: only a rule with ``fallback``, which lifts nothing, narrows it)
            if not lift_growing:  # a gradient that grew over the last move: that restart overshot, none lifted now
                lift = torch.where(growing, 1.0, lift)
            inverse = inverse * torch.where(trunk_block & (norm > 0), lift.clamp_min(1.0), 1.0)
        gd = -g_trunk * blocks.per_trunk(inverse)
        guarded_trunk = torch.where(blocks.per_trunk(restarted), gd, guarded_trunk)
        length = torch.where(restarted, inverse * norm, length)
    if fallback:  # a block whose gradient grows past its first one plays the secant's Newton step along g, g / L̂
        growing = growing & ~flat
        inverse = 1.0 / torch.where(growing, curvature, 1.0)
        (grow_head, grow_trunk), (inv_head, inv_trunk) = blocks.spread(growing), blocks.spread(inverse)
        guarded_head = torch.where(grow_head, -g_head * inv_head, guarded_head)
        guarded_trunk = torch.where(grow_trunk, -g_trunk * inv_trunk, guarded_trunk)
        length = torch.where(growing, inverse * norm, length)
        capped = capped | growing
    first = torch.where(seen > 0, state["guard_g0"], norm)  # the block's first gradient norm
    return (guarded_head, guarded_trunk), capped, {
        "guard_g": g, "guard_s": length.detach(), "guard_n": norm, "guard_l": curvature, "guard_seen": seen,
        "guard_armed": armed, "guard_g0": first,
    } | ({"guard_fade": state["guard_fade"]} if "guard_fade" in state else {})  # fmt: skip


def norm_guard_state(batch: int, num_groups: int, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    """The fresh state of :func:`apply_norm_guard` for ``batch`` games of ``num_groups`` blocks."""
    blocks = torch.zeros(batch, num_groups, dtype=dtype, device=device)
    return {"guard_n": blocks, "guard_s": blocks, "guard_l": blocks, "guard_seen": blocks, "guard_armed": blocks}


def apply_norm_guard(
    log_steps: Tensor,
    norms: Tensor,
    rise: Tensor,
    trunk_block: Tensor,
    sizes: Tensor,
    move: Tensor,
    state: dict[str, Tensor],
    config: GuardConfig,
    raise_limit: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The guard of a rule that plays gradient steps and sees the gradients' norms only (``step_size`` mode, whose
    observation is the features): the guarded log steps ``[B, G]`` of the blocks and the guard's next state.

    The secant is bounded from the norms: ‖g_t − g_{t−1}‖ ≤ ‖g_t‖ + ‖g_{t−1}‖, with equality when the last step
    overshot along the gradient (g_t = (1 − αL)·g_{t−1}, αL > 2), the step the guard is there to stop; the block is
    armed once its gradient norm grew by more than ``growth`` on a step that more than doubled its player's loss
    (``rise [B, G]``: Δℓ − |ℓ_{t−1}| > 0; a growing gradient with a falling or gently noisy loss is a game leaving a
    flat stretch or minibatch noise, not an overshoot), so a game whose gradients only shrink never meets the cap.
    Until then a step is at most ``raise_limit`` times the block's last one (a step rule's network can jump
    by orders of magnitude on features it never met; the others' gradients need not grow before the game does).
    Otherwise as :func:`apply_guard` (whose arguments these are, per block; ``sizes`` the blocks' coordinates,
    ``trunk_block [G]`` bool the trunk proposals'; ``config`` the rule's guard options).
    """
    dtype = log_steps.dtype
    norms = norms.detach().to(dtype)
    step, radius, memory, growth = config.guard_step, config.guard_radius, config.guard_memory, config.guard_growth
    with torch.no_grad():
        moved = torch.where(trunk_block, torch.minimum(state["guard_s"], move.to(dtype).unsqueeze(1)), state["guard_s"])
        fresh = moved > 0
        secant = (norms + state["guard_n"]) / torch.where(fresh, moved, 1.0)
        curvature = torch.where(fresh, torch.maximum(secant, memory * state["guard_l"]), state["guard_l"])
        seen = torch.maximum(state["guard_seen"], fresh.to(dtype))
        overshot = fresh & (norms > growth * state["guard_n"]) & (rise > 0)
        armed = torch.maximum(state["guard_armed"], overshot.to(dtype))
        # The largest step: c / L̂ once armed, none after the first move otherwise, radius·√K / ‖g‖ on the first.
        first = radius * sizes.to(dtype).sqrt() / norms
        last = state["guard_s"] / torch.where(state["guard_n"] > 0, state["guard_n"], 1.0)  # the last step played
        raised = torch.where(last > 0, raise_limit * last, math.inf)
        limit = torch.where(armed > 0, step / curvature, torch.where(seen > 0, raised, first))
        log_limit = limit.log()  # +inf where no bound (a zero curvature or gradient)
    capped = log_steps > log_limit
    guarded = torch.where(capped, log_limit, log_steps)
    return guarded, {"guard_n": norms, "guard_s": guarded.detach().exp() * norms, "guard_l": curvature,
                     "guard_seen": seen, "guard_armed": armed}  # fmt: skip
