"""The env's infos, in its two formats: numeric (numbers only, the same keys every step: TorchRL and RLlib build
specs from them) and named (v1: strings, and the metrics every ``metrics_every`` steps); and why a game ended."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mtg_env.consensus import rule_name
from mtg_env.engine import trunk_grad_norm_mean

if TYPE_CHECKING:
    from mtg_env.envs.parallel import MultiTaskGameEnv


def step_infos(
    env: MultiTaskGameEnv, losses: list[float], reason: str | None, diverged: bool = False
) -> dict[str, dict[str, Any]]:
    """Every live agent's info after a reset or a step (``reason``: why the game ended, or ``None``)."""
    gaps = cheap_gaps(env)
    cfg = env.config
    # G, the mean over the players of ‖∇_Ψ ℓ_m‖ at this step, the same for every agent (a balancing rule reads it)
    common = float(trunk_grad_norm_mean(env.engine_state.jacobian)[0])
    if cfg.numeric_infos:  # the same numeric keys at reset and at every step (TorchRL builds specs from them)
        numeric: dict[str, dict[str, Any]] = {}
        lo, hi = cfg.log_step_range
        constants = {
            "step_size_mode": float(cfg.action_mode == "step_size"),
            "log_step_low": lo,
            "log_step_high": hi,
            "unit_actions": float(cfg.step_size_units == "unit"),
            "relative_updates": float(cfg.update_units == "relative"),
            "linear_consensus": float(env.game.linear_consensus),  # a constant of the game (Game.linear_consensus)
            "min_bounded_consensus": float(env.game.min_bounded_consensus),  # (Game.min_bounded_consensus)
            "stochastic_gradients": float(env.game.stochastic_gradients),  # (Game.stochastic_gradients)
        }
        if env.game.sum_scale is not None:  # a constant of the game (see Game.sum_scale)
            constants["sum_scale"] = env.game.sum_scale
        t = float(env._t)
        for m, agent in enumerate(env.agents):
            values = {"loss": losses[m], "t": t, "diverged": float(diverged), "trunk_grad_norm_mean": common}
            if gaps is not None:
                values["nash_gap"] = gaps[m]
            values.update(
                head_size=float(env._spaces.head_sizes[m]),
                head_slot=float(env._spaces.slots[m]),
                trunk_size=float(env.trunk_size),
                **constants,
            )
            numeric[agent] = values
        return numeric
    metrics = env.metrics() if cfg.metrics_every and env._t % cfg.metrics_every == 0 and reason is None else None
    infos: dict[str, dict[str, Any]] = {}
    for m, agent in enumerate(env.agents):
        info: dict[str, Any] = {
            "task": env.suite.tasks[m].name,
            "loss": losses[m],
            "t": env._t,
            "trunk_grad_norm_mean": common,
        }
        if gaps is not None:
            info["nash_gap"] = gaps[m]
        if reason is not None:
            info["termination"] = "diverged" if diverged else "out_of_domain"
            info["reason"] = reason
        if metrics is not None:
            info["metrics"] = {**metrics["agents"][agent], **metrics["game"]}
        infos[agent] = info
    return infos


def reset_extras(env: MultiTaskGameEnv, infos: dict[str, dict[str, Any]], finite: bool, out_of_domain: bool) -> None:
    """Named infos (v1) at reset: the sizes and units a player needs, and a warning for a start that is already
    non-finite or outside the rule's domain (the first step then ends the game)."""
    cfg = env.config
    for agent, h, slot in zip(env.agents, env._spaces.head_sizes, env._spaces.slots, strict=True):
        infos[agent].update(
            head_size=h,
            head_slot=slot,
            trunk_size=env.trunk_size,
            action_mode=cfg.action_mode,
            log_step_range=cfg.log_step_range,
            step_size_units=cfg.step_size_units,
            update_units=cfg.update_units,
        )
        infos[agent]["linear_consensus"] = env.game.linear_consensus
        infos[agent]["min_bounded_consensus"] = env.game.min_bounded_consensus
        infos[agent]["stochastic_gradients"] = env.game.stochastic_gradients
        if env.game.sum_scale is not None:
            infos[agent]["sum_scale"] = env.game.sum_scale
    if not finite:  # a start that is already non-finite: report it, the first step will terminate
        for info in infos.values():
            info["warning"] = "non-finite loss or parameter at reset"
    elif out_of_domain:  # likewise a start outside the rule's domain
        for info in infos.values():
            info["warning"] = f"a loss at reset is outside the domain of {rule_name(env.consensus)!r}"


def cheap_gaps(env: MultiTaskGameEnv) -> list[float] | None:
    """Per-task Nash gaps where the suite computes them cheaply (reported every step), else None."""
    if not env.suite.cheap_nash_gap:
        return None
    return env.suite.nash_gaps(env._heads, env._trunk).tolist()


def domain_reason(env: MultiTaskGameEnv, losses: list[float]) -> str:
    """Why a game left its consensus rule's domain (a loss at or below the rule's floor)."""
    floor = env.game.loss_floor
    assert floor is not None
    low = [
        f"{a} is {loss:.6g} (floor {f:.3g})"
        for a, loss, f in zip(env.agents, losses, floor.tolist(), strict=True)
        if math.isfinite(loss) and loss <= f
    ]
    where = ", ".join(low) if low else "was at or below its floor at reset"
    return (
        f"loss of {where}: consensus rule {rule_name(env.consensus)!r} takes logarithms or ratios of the losses "
        "and needs every loss above its floor, so the game cannot step on"
    )


def divergence_reason(env: MultiTaskGameEnv, losses: list[float]) -> str:
    """Why a game diverged: a non-finite loss, a loss beyond ``divergence_threshold`` times its start, or
    non-finite parameters."""
    bad = [a for a, loss in zip(env.agents, losses, strict=True) if not math.isfinite(loss)]
    if bad:
        return f"non-finite loss for {bad}"
    threshold = env.game.divergence_threshold
    if threshold is not None:
        start = env.engine_state.start_losses[0].tolist()
        high = [
            a for a, loss, s in zip(env.agents, losses, start, strict=True) if abs(loss) > threshold * max(1, abs(s))
        ]
        if high:
            return f"loss of {high} above {threshold:g} times its start (divergence_threshold)"
    return "non-finite parameters"
