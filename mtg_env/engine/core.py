"""The game as pure functions of tensors: ``reset(game, seeds)`` and ``step(game, state, actions)``.

One step of B games (DESIGN.md §3): the actions become head updates and trunk proposals (Eq. 23); the
heads move by their own updates and the trunk by the consensus of the proposals (Eq. 21/24, or any rule);
the next batch is drawn from each game's counter-based randomness; losses, each head's gradient and the
per-task trunk Jacobian come from one forward and one backward (or the suite's closed form); then the
features, rewards and the divergence rule. No numpy, no loop over games or parameters on the hot path (a
solver-backed consensus rule loops over games); the state in is never modified, the consensus rule's state
included (it is a tensor of the state, updated by a pure function; see :mod:`mtg_env.consensus`), so stepping one
state twice plays the same step twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mtg_env import _copy
from mtg_env.consensus import RULE_TABLE, apply_rule, is_batched_rule, rule_differentiable, rule_name, step_rule
from mtg_env.engine.codec import decode
from mtg_env.engine.features import _plain
from mtg_env.engine.game import Game
from mtg_env.engine.noise import (
    ANCHOR_KEY,
    attack,
    delayed,
    init_aux,
    noisy_batch,
    noisy_gradients,
    penalise,
    regularise,
)
from mtg_env.engine.optim import BoundOptimizer
from mtg_env.engine.outcome import _finite, _output, in_domain
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.rng import STREAM_CONSENSUS, GameRNG, episode_keys

if TYPE_CHECKING:
    from mtg_env.suites.base import TaskSuite

#: An update-mode action given as its two parts: ``(head_updates [B, H], proposals [B, M, n])``.
Updates = tuple[Tensor, Tensor]

#: The named rules a differentiable unroll can pass through (named in the refusal of the others).
_DIFFERENTIABLE = tuple(name for name, spec in RULE_TABLE.items() if spec.differentiable)


def losses_and_grads(
    suite: TaskSuite, heads: Tensor, trunk: Tensor, batch: Any, differentiable: bool = False, second_order: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Losses ``[B, M]``, each head's own gradient ``[B, H]`` and the trunk Jacobian ``[B, M, n]``.

    By the suite's ``jacobian`` strategy: its closed form; one backward of the summed losses through one
    trunk replica per task (exact rows, as task m's loss reads only replica m); or one batched backward over
    the M basis vectors. With ``differentiable`` the losses keep their graph to ``heads`` and ``trunk`` (and
    so to the actions that moved them); the gradients keep theirs only with ``second_order``.

    Args:
        suite: The tasks.
        heads: ``[B, H]``.
        trunk: ``[B, n]``.
        batch: The suite's batch of B games (or a whole split, shared).
        differentiable: Keep the graph to ``heads`` and ``trunk`` (else everything returned is detached).
        second_order: Keep the gradients differentiable too.
    """
    second = differentiable and second_order
    if suite.jacobian == "closed_form":
        if not differentiable:
            heads, trunk = _plain(heads), _plain(trunk)
        losses, head_grads, jac = suite.closed_form(heads, trunk, batch)
    else:
        with torch.enable_grad():
            if not differentiable:
                heads = heads.detach().requires_grad_(True)
                trunk = trunk.detach().requires_grad_(True)
            if suite.jacobian == "replicas":
                bsz, m, n = trunk.shape[0], suite.num_tasks, suite.trunk_size
                # A real copy, not a stride-0 view: matmul folds an expanded operand into one GEMM for some
                # batch shapes and not others, which would make game b depend on B in the last bit.
                replicas = trunk.unsqueeze(1).expand(bsz, m, n).contiguous()
                losses = suite.batched_losses(heads, replicas, batch)
                head_grads, jac = torch.autograd.grad(
                    losses.sum(),
                    (heads, replicas),
                    create_graph=second,
                    retain_graph=differentiable,
                    allow_unused=True,
                    materialize_grads=True,
                )
            else:
                losses = suite.batched_losses(heads, trunk, batch)
                m = suite.num_tasks
                # ℓ_m depends on head m only, so the gradient of Σ_m ℓ_m is every head's own gradient, each in its
                # slice. It is taken by a plain backward, not inside the batched one below: under vmap the head
                # layer's weight gradient is a matmul that torch folds into one GEMM when B = 1 and not when
                # B > 1, so on some MKL code paths (MKL_CBWR=AVX) game b's head gradient depended on B.
                (head_grads,) = torch.autograd.grad(
                    losses.sum(), (heads,), create_graph=second, retain_graph=True, materialize_grads=True
                )
                eye = torch.eye(m, dtype=losses.dtype, device=losses.device).unsqueeze(1).expand(m, *losses.shape)
                (trunk_jac,) = torch.autograd.grad(
                    losses,
                    (trunk,),
                    grad_outputs=eye,
                    is_grads_batched=True,
                    create_graph=second,
                    retain_graph=differentiable,
                    allow_unused=True,
                    materialize_grads=True,
                )
                jac = trunk_jac.transpose(0, 1)
    if not second:
        head_grads, jac = _plain(head_grads), _plain(jac)
    if not differentiable:
        losses = _plain(losses)
    return losses, head_grads, jac


def _observe(
    game: Game, heads: Tensor, trunk: Tensor, rng: GameRNG, differentiable: bool, aux: dict[str, Tensor]
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """Draw the step's batch and compute what the players see: losses, head gradients, trunk Jacobian, with the
    game's label noise, regulariser and gradient noise (each skipped when off: then exactly today's game)."""
    batch = game.suite.sample_batch(rng)
    noise, reg = game.noise_model, game.regularisation
    if noise is not None:
        batch = noisy_batch(noise, game.suite, batch, rng)
    losses, head_grads, jac = losses_and_grads(game.suite, heads, trunk, batch, differentiable, game.second_order)
    if reg is not None:
        losses, head_grads, aux = regularise(
            reg, game.suite, game.head_indicator, heads, trunk, losses, head_grads, aux, rng.steps
        )
    if noise is not None:
        head_grads, jac = noisy_gradients(noise, head_grads, jac, rng)
    return losses, head_grads, jac, aux


def observed(game: Game, state: GameState) -> tuple[Tensor, Tensor, Tensor]:
    """The losses, head gradients and Jacobian a state of step t holds, recomputed from its parameters, its step's
    batch, its noise draws and its regulariser's stored target (what a checkpoint's stored values must equal)."""
    rng = state.rng
    batch = game.suite.sample_batch(rng)
    noise, reg = game.noise_model, game.regularisation
    if noise is not None:
        batch = noisy_batch(noise, game.suite, batch, rng)
    losses, head_grads, jac = losses_and_grads(game.suite, state.heads, state.trunk, batch)
    if reg is not None:
        target = (
            state.aux[ANCHOR_KEY]
            if reg.target == "ema"
            else game.suite.best_response_batch(state.trunk).to(state.heads.dtype)
        )
        losses, head_grads = penalise(reg, game.head_indicator, state.heads, target, losses, head_grads)
    if noise is not None:
        head_grads, jac = noisy_gradients(noise, head_grads, jac, rng)
    return losses, head_grads, jac


def _differentiable(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def fresh_rule_state(game: Game, batch_size: int) -> dict[str, Tensor]:
    """The consensus rule's state of ``batch_size`` games at reset (``[B, ...]`` per entry; empty without one)."""
    return {k: v.unsqueeze(0).repeat(batch_size, *([1] * v.dim())) for k, v in game.rule_init.items()}


def fresh_rule_objects(game: Game, batch_size: int) -> tuple[Any, ...]:
    """Reset copies of a consensus callable that keeps state on itself: one per game, or one for a batched rule;
    ``()`` for any other rule. The game's own rule object is never the one that moves."""
    if game.rule_kind != "object":
        return ()
    count = 1 if is_batched_rule(game.consensus) else batch_size
    objects: tuple[Any, ...] = tuple(_copy.deepcopy(game.consensus) for _ in range(count))
    for rule in objects:
        rule.reset()
    return objects


def reset(
    game: Game,
    seeds: list[int] | Tensor,
    episodes: list[int] | Tensor | None = None,
    heads: Tensor | None = None,
    trunk: Tensor | None = None,
) -> tuple[GameState, StepOutput]:
    """Start B games: parameters from the suite (or ``heads [B, H]`` / ``trunk [B, n]``), the first batch,
    its losses and gradients, the consensus rule's fresh state.

    Args:
        game: The spec.
        seeds: ``[B]`` one seed per game (ints in [0, 2**63)).
        episodes: ``[B]`` episode numbers (default 0): a game's randomness is a function of (seed, episode).
        heads, trunk: Optional starting parameters (validated by the caller).
    """
    device = game.device
    seed_t = torch.as_tensor(seeds, dtype=torch.int64, device=device).reshape(-1)
    episode_t = (
        torch.zeros_like(seed_t)
        if episodes is None
        else torch.as_tensor(episodes, dtype=torch.int64, device=device).reshape(-1)
    )
    if episode_t.shape != seed_t.shape:
        raise ValueError(f"episodes must have one entry per seed ({seed_t.shape[0]}), got {tuple(episode_t.shape)}")
    t = torch.zeros_like(seed_t)
    keys = episode_keys(seed_t, episode_t)
    rng = GameRNG(seed_t, episode_t, t, keys)
    init_heads, init_trunk = game.suite.init_params(rng)
    heads = init_heads if heads is None else heads.to(device, game.dtype)
    trunk = init_trunk if trunk is None else trunk.to(device, game.dtype)
    differentiable = _differentiable(heads, trunk)
    bsz = seed_t.shape[0]
    aux = init_aux(game.noise_model, game.regularisation, heads, trunk, game.num_tasks)
    losses, head_grads, jac, aux = _observe(game, heads, trunk, rng, differentiable, aux)
    finite = _finite(game, losses, heads, trunk, torch.full_like(losses, float("inf")))  # reset: only finiteness
    state = GameState(
        heads=heads,
        trunk=trunk,
        t=t,
        seeds=seed_t,
        episodes=episode_t,
        keys=keys,
        losses=losses,
        prev_losses=losses,
        start_losses=losses.detach(),
        last_move=torch.zeros_like(trunk),
        head_grads=head_grads,
        jacobian=jac,
        done=torch.zeros_like(finite),
        trunk_opt=_zero_opt_state(game.trunk_opt, trunk),
        head_opt=_zero_opt_state(game.head_opt, heads),
        rule_state=fresh_rule_state(game, bsz),
        aux=aux,
        rule_objects=fresh_rule_objects(game, bsz),
    )
    # A start outside the rule's domain is reported here; the game's first step then ends it.
    return state, _output(game, state, finite, finite & ~in_domain(game, losses))


def _zero_opt_state(opt: BoundOptimizer | None, params: Tensor) -> Tensor:
    """The optimizer's zero state ``[B, S, d]`` for ``params [B, d]`` (S = 0 without an optimizer)."""
    bsz, d = params.shape
    if opt is None:
        return torch.zeros(bsz, 0, d, dtype=params.dtype, device=params.device)
    return opt.init_state(bsz, d)


def _move(
    opt: BoundOptimizer | None, params: Tensor, update: Tensor, opt_state: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """New parameters and optimizer state: ``params + update`` without an optimizer, else the optimizer's step
    with the gradient −update (:mod:`mtg_env.engine.optim`)."""
    if opt is None:
        return params + update, opt_state
    return opt.step(params, -update, opt_state, t)


def updates(game: Game, state: GameState, actions: Tensor | Updates) -> Updates:
    """Turn actions into ``(head_updates [B, H], proposals [B, M, n])``.

    ``step_size`` mode: ``actions [B, M, 2]`` natural-log step sizes; u = −exp(a)·g (Eq. 23, and the
    proposals −β_m ∇_Ψ ℓ_m). ``update`` mode: ``actions [B, M, max_head + n]`` (head m's update in its first
    h_m entries, padding after it, then the trunk proposal), in ``game.update_units`` (relative: decoded against
    the state's gradients, :mod:`mtg_env.engine.codec`), or the two parts as a tuple (the updates themselves).
    """
    bsz, m, n = state.batch_size, game.num_tasks, game.trunk_size
    if game.action_mode == "step_size":
        if not isinstance(actions, Tensor) or actions.shape != (bsz, m, 2):
            shape = tuple(actions.shape) if isinstance(actions, Tensor) else type(actions).__name__
            raise ValueError(f"step_size actions must be a tensor of shape ({bsz}, {m}, 2), got {shape}")
        steps = actions.to(game.device, game.dtype).exp()  # actions made elsewhere (a CPU policy) move to the game
        h = game.uniform_head_size
        if h is not None and not steps.requires_grad:
            # Equal heads: each task's step broadcast over its head, no gather (the products are the same, and
            # negating before or after a product is exact). Not in a differentiable unroll, where the gather's
            # backward sums the gradient of a step size in its own order.
            neg = steps.neg()
            head_updates = neg.narrow(2, 0, 1) * state.head_grads.reshape(bsz, m, h)
            return head_updates.view(bsz, m * h), neg.narrow(2, 1, 1) * state.jacobian
        return -steps[:, game.head_index, 0] * state.head_grads, -steps[:, :, 1:] * state.jacobian
    if isinstance(actions, tuple):
        head_updates, proposals = actions
        if head_updates.shape != state.heads.shape or proposals.shape != (bsz, m, n):
            raise ValueError(
                f"update actions (head_updates, proposals) must have shapes {tuple(state.heads.shape)} and "
                f"{(bsz, m, n)}, got {tuple(head_updates.shape)} and {tuple(proposals.shape)}"
            )
        return head_updates.to(game.device, game.dtype), proposals.to(game.device, game.dtype)
    k = game.max_head
    if actions.shape != (bsz, m, k + n):
        raise ValueError(
            f"update actions must have shape ({bsz}, {m}, {k + n}) = (games, tasks, largest head {k} + trunk {n}), "
            f"got {tuple(actions.shape)}"
        )
    actions = actions.to(game.device, game.dtype)
    heads = actions[:, :, :k].reshape(bsz, -1)
    if not game.uniform_heads:
        heads = heads[:, game.padded_head_index]
    proposals = actions[:, :, k:]
    if game.update_units == "relative":  # units of each coordinate's reference step (exact: powers of two)
        return decode(heads, state.head_grads), decode(proposals, state.jacobian)
    return heads, proposals


def consensus(
    game: Game, state: GameState, proposals: Tensor, differentiable: bool, usable: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor], tuple[Any, ...]]:
    """The trunk moves ``[B, n]`` of B games, the rule on each game's proposals ``[M, n]``, and the rule's new
    state (``state`` is not modified).

    Closed-form rules run on the whole batch at once; others (torchjd's, callables) game by game, a
    randomized one with a seed drawn from the game's own (seed, episode, step), a stateful one on its game's
    state. Games where ``usable [B]`` is false (outside the rule's domain) do not move the trunk, and their rule
    state stays. The output is checked (shape) and cast to the game's dtype before anything moves; a rule that
    raises for one game of a batch is reported with the game's index, and no game has moved.
    """
    rule = game.consensus
    if differentiable and not rule_differentiable(rule):
        raise ValueError(
            f"consensus rule {rule_name(rule)!r} is not differentiable (its solver runs outside autograd), so a "
            f"differentiable unroll cannot pass through it; use a differentiable rule ({', '.join(_DIFFERENTIABLE)}), "
            "detach the actions, or train with ES"
        )
    bsz, n = state.batch_size, game.trunk_size
    rule_state, objects = state.rule_state, state.rule_objects
    if is_batched_rule(rule):
        if objects:  # a batched callable that keeps state on itself: a copy moves, the state's object stays
            moved = _copy.deepcopy(objects[0])
            move = moved(proposals)
            objects = (moved,)
        else:
            move = rule(proposals)
        expected: tuple[int, ...] = (bsz, n)
    else:
        seeds = state.rng.integer_seed(STREAM_CONSENSUS)
        losses = state.losses.detach()  # a loss-aware rule weighs the proposals by them (as a constant)
        live = [True] * bsz if usable is None else usable.tolist()
        moves: list[Tensor] = []
        states: list[dict[str, Tensor]] = []
        new_objects: list[Any] = []
        for b in range(bsz):  # solver-backed rules: one game at a time
            game_state = {k: v[b] for k, v in rule_state.items()}
            if not live[b]:
                moves.append(torch.zeros(n, dtype=game.dtype, device=game.device))
                states.append(game_state)
                new_objects.extend(objects[b : b + 1])
                continue
            try:
                if game.rule_kind == "tensors":
                    out, game_state = step_rule(rule, game_state, proposals[b], seeds[b], losses[b])
                elif objects:
                    moved = _copy.deepcopy(objects[b])
                    out = apply_rule(moved, proposals[b], seeds[b], losses[b])
                    new_objects.append(moved)
                else:
                    out = apply_rule(rule, proposals[b], seeds[b], losses[b])
            except Exception as err:
                if not bool(torch.isfinite(proposals[b].detach().norm(dim=-1)).all()):
                    # A diverging game (proposals not finite, or so long that their norms overflow) moves by a
                    # non-finite step and is done, as under ``sum``: a solver that refuses such input (MGDA's Gram,
                    # CAGrad's SVD) must not stop the batch's other games. A rule that copes keeps its own answer.
                    moves.append(torch.full((n,), float("nan"), dtype=proposals.dtype, device=proposals.device))
                    states.append(game_state)  # the rule raised: this game's state is as it was
                    new_objects.extend(objects[b : b + 1])
                    continue
                if not isinstance(err, ValueError):
                    raise
                if bsz == 1:
                    raise
                raise ValueError(f"game {b} of the batch: {err}") from err
            if not isinstance(out, Tensor) or out.shape != (n,):
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                where = "" if bsz == 1 else f" for game {b} of the batch"
                raise ValueError(
                    f"consensus rule {rule_name(rule)!r} returned {got}{where}, expected a tensor of shape ({n},)"
                )
            moves.append(out)
            states.append(game_state)
        move = torch.stack(moves)
        expected = (bsz, n)
        if rule_state:
            rule_state = {k: torch.stack([s[k] for s in states]) for k in rule_state}
        if objects:
            objects = tuple(new_objects)
    if not isinstance(move, Tensor) or move.shape != expected:
        shape = tuple(move.shape) if isinstance(move, Tensor) else type(move).__name__
        raise ValueError(f"consensus rule {rule_name(rule)!r} returned {shape}, expected {expected}")
    move = move.to(game.device, game.dtype)
    return (move if differentiable else _plain(move)), rule_state, objects


def step(game: Game, state: GameState, actions: Tensor | Updates) -> tuple[GameState, StepOutput]:
    """Play one step of B games (see the module docstring); returns the new state and what it reports.

    Differentiable when the actions (or the state's parameters) require grad and grad mode is on: the new
    parameters and losses keep their graph to the actions (and, with ``game.second_order``, the gradients).
    Games that are already done are stepped like the others; clients reset them (see
    :func:`reset_where`). A game whose losses reach the consensus rule's floor before its horizon ends
    (``out_of_domain``): the rule cannot step on there. A step that raises has changed nothing.
    """
    differentiable = _differentiable(*(actions if isinstance(actions, tuple) else (actions,)), state.heads, state.trunk)
    head_updates, proposals = updates(game, state, actions)
    aux = state.aux
    if game.noise_model is not None:  # the adversary replaces its task's proposal; the rule may see stale ones
        proposals = attack(game.noise_model, proposals, state.rng)
        proposals, aux = delayed(game.noise_model, proposals, aux, state.t)
    usable = None if game.loss_floor is None else in_domain(game, state.losses)
    move, rule_state, rule_objects = consensus(game, state, proposals, differentiable, usable)
    heads, head_opt = _move(game.head_opt, state.heads, head_updates, state.head_opt, state.t)
    trunk, trunk_opt = _move(game.trunk_opt, state.trunk, move, state.trunk_opt, state.t)
    if game.trunk_opt is not None:  # the trunk's actual move (the observed feature compares against it)
        move = trunk - state.trunk
    t = state.t + 1
    rng = GameRNG(state.seeds, state.episodes, t, state.keys)
    losses, head_grads, jac, aux = _observe(game, heads, trunk, rng, differentiable, aux)
    finite = _finite(game, losses, heads, trunk, state.start_losses)
    diverged = ~finite
    ended = t >= game.horizon
    if usable is None:  # a rule without a loss floor: no game leaves its domain
        out_of_domain = None
        done = state.done | diverged | ended
    else:  # it could not step (a start outside the domain), or cannot step on before its horizon
        out_of_domain = finite & (~usable | (~in_domain(game, losses) & ~ended))
        done = state.done | diverged | out_of_domain | ended
    new = replace(
        state,
        heads=heads,
        trunk=trunk,
        t=t,
        losses=losses,
        prev_losses=state.losses,
        last_move=_plain(move),
        head_grads=head_grads,
        jacobian=jac,
        done=done,
        trunk_opt=trunk_opt,
        head_opt=head_opt,
        rule_state=rule_state,
        aux=aux,
        rule_objects=rule_objects,
    )
    return new, _output(game, new, finite, out_of_domain, ended, diverged)


def reset_where(
    game: Game, state: GameState, mask: Tensor, seeds: Tensor | None = None
) -> tuple[GameState, StepOutput | None]:
    """Reset the games where ``mask [B]`` is true (autoreset): each plays the next episode of its seed, or of
    ``seeds [B]`` where given, with the rule's fresh state. Returns the merged state and the reset games' output
    (``None`` if none)."""
    index = mask.nonzero().flatten()
    if index.numel() == 0:
        return state, None
    if seeds is not None:
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=state.seeds.device)
        if seeds.shape != state.seeds.shape or bool((seeds < 0).any()):
            raise ValueError(f"seeds must be {state.batch_size} ints in [0, 2**63), one per game, got {seeds.tolist()}")
    sub_seeds = state.seeds[index] if seeds is None else seeds[index]
    sub_episodes = state.episodes[index] + 1 if seeds is None else torch.zeros_like(sub_seeds)
    fresh, out = reset(game, sub_seeds, sub_episodes)
    merged = {}
    fresh_tensors = fresh.tensors()
    for name, value in state.tensors().items():
        new_value = value.detach().clone()
        new_value[index] = fresh_tensors[name].to(new_value.dtype)
        merged[name] = new_value
    objects = state.rule_objects
    if objects and not is_batched_rule(game.consensus):  # a batched callable's one object is not per game
        listed = list(objects)
        for i, b in enumerate(index.tolist()):
            listed[b] = fresh.rule_objects[i]
        objects = tuple(listed)
    return replace(state.with_tensors(merged), rule_objects=objects), out
