"""A consensus rule's unanimity gain: what it does to proposals every player makes alike (:func:`unanimity_gain`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mtg_env._args import int_arg
from mtg_env._copy import deepcopy
from mtg_env.consensus.rule import apply_rule, is_batched_rule, rule_name, rule_state_kind, step_rule
from mtg_env.consensus.table import ConsensusRule

#: The two sizes of p at which the gain is measured (a power of two apart: the scaling is exact).
_SCALES = (1.0, 2.0**-10)


def unanimity_gain(
    rule: ConsensusRule,
    num_tasks: int,
    trunk_size: int = 4,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> float:
    """γ with C(P) = γ·p when each of the ``num_tasks`` rows of P is one proposal p, every player proposing the same
    move: M for ``sum`` and ``pcgrad``, 1 for ``mean``, ``mgda``, ``upgrad`` and the other averaging rules.

    Measured on p = (1, −1, 1, …) of ``trunk_size`` coordinates in ``dtype`` on ``device`` (the game's, so a rule
    that only works at its game's shape plays here too) and on p / 2¹⁰, at the rule's fresh state (a stateful rule's
    ``init_state``, a copy of an object rule after ``reset()``), with seed 0 for a randomized rule;
    γ = ⟨C(P), p⟩ / ‖p‖², rounded to 12 significant digits (a solver's round-off: ``upgrad``'s 1 + 2e-16 is 1), exact
    for ``sum`` and ``mean``. Torch's CPU and numpy's global generators are restored after (a rule of your own may draw
    from them).

    M / γ is the scale at which unanimous proposals move the trunk as their sum would (what a rule trained under
    ``sum`` plays with ``sum_scaled``; see :attr:`mtg_env.engine.Game.sum_scale`).

    Raises:
        ValueError: naming the rule, if ``num_tasks`` or ``trunk_size`` is not a positive int, or the rule has no
            constant gain: it weighs the proposals by the losses (``loss_aware``: its weights, so its gain, follow
            the losses during a game), or C(P) is not a positive multiple of p (within 1e-6), or not the same
            multiple at both sizes of p (a rule that is not positively homogeneous, such as one that fixes the
            move's norm).
    """
    m = int_arg("num_tasks", num_tasks, low=1)
    n = int_arg("trunk_size", trunk_size, low=1)
    name = rule_name(rule)
    if getattr(rule, "loss_aware", False) is True:
        raise ValueError(
            f"consensus rule {name!r} weighs the proposals by the losses: its gain follows them during a game, so it "
            "has no constant unanimity gain"
        )
    p = torch.ones(n, dtype=dtype, device=device)
    p[1::2] = -1.0
    gains = []
    # a rule of your own may draw from the global generators: measuring must not move them
    cpu_state, np_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    try:
        for scale in _SCALES:
            move = _move(rule, (scale * p).expand(m, n).clone(), m, n, dtype, device)
            move = torch.as_tensor(move).detach().to(device=p.device, dtype=torch.float64)
            q = scale * p.to(torch.float64)
            gain = float(move @ q) / float(q @ q) if move.shape == (n,) else math.nan
            residual = float((move - gain * q).norm()) if math.isfinite(gain) else math.inf
            if not (gain > 0 and residual <= 1e-6 * gain * float(q.norm())):
                raise ValueError(
                    f"consensus rule {name!r} moves unanimous proposals q [{m}, {n}] to {move.tolist()[:8]}, not to a "
                    f"positive multiple of q = {q.tolist()[:8]}: its unanimity gain is undefined (a rule that follows "
                    "its players when they all agree is needed to scale proposals as under sum)"
                )
            gains.append(float(f"{gain:.12g}"))
    finally:
        torch.random.set_rng_state(cpu_state)
        np.random.set_state(np_state)  # noqa: NPY002
    if gains[0] != gains[1]:
        raise ValueError(
            f"consensus rule {name!r} moves unanimous proposals by {gains[0]:.6g} times p and by {gains[1]:.6g} times "
            f"p / 2^10: it is not positively homogeneous, so it has no constant unanimity gain"
        )
    return gains[0]


def _move(
    rule: ConsensusRule, proposals: torch.Tensor, m: int, n: int, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """C(P) for one game's proposals at the rule's fresh state (the rule itself is not touched)."""
    kind = rule_state_kind(rule)
    if is_batched_rule(rule):
        target = _copy_rule(rule) if kind == "object" else rule
        return target(proposals.unsqueeze(0))[0]  # type: ignore[no-any-return]
    if kind == "tensors":
        state = rule.init_state(m, n, dtype, device)  # type: ignore[attr-defined]
        return step_rule(rule, state, proposals, 0)[0]
    return apply_rule(_copy_rule(rule) if kind == "object" else rule, proposals, 0)


def _copy_rule(rule: ConsensusRule) -> ConsensusRule:
    """A fresh copy of a rule that keeps state on itself (the original is not touched)."""
    copy = deepcopy(rule)
    copy.reset()  # type: ignore[attr-defined]
    return copy
