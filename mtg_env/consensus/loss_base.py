"""Loss-aware and stateful consensus rules of the multi-task learning literature that torchjd lacks.

Each rule is a pure function of one game's state: ``rule.step(state, P, losses, generator)`` returns the trunk's
move C(P) and the new state, and never modifies ``state``. The engine calls it with the game's proposals
``P [M, n]`` and current losses ``[M]`` (the losses at the parameters the proposals were computed at), and keeps
every game's state in :attr:`mtg_env.engine.GameState.rule_state` (one batch of tensors per entry, so the
env's checkpoints store it as tensors). ``rule.init_state(M, n, dtype, device)`` is a game's state at reset:
FAMO's task logits and their Adam moments, the uncertainty weights, DWA's last losses, GradVac's cosine
targets, DB-MTL's gradient buffer, GradNorm's weights; every state counts its ``calls`` (the game's steps).
A call without losses (a measurement, e.g. the consensus residual of :func:`mtg_env.metrics.game_metrics`)
uses the last losses seen and returns the state unchanged.

Called as ``rule(P, losses)``, a rule object plays one game of its own: it keeps that game's state on itself
(:attr:`LossRule.state`, forgotten by ``reset()``), which is how the reference tests drive it.

The convention is the one of :mod:`mtg_env.consensus`: a method that turns task gradients G into a direction
A(G) (the model then moving by −A(G)) is the rule C(P) = −A(−P) on proposals p_m = −β g_m. For the weighting
methods here, A(G) = Σ_m w_m g_m, so C(P) = Σ_m w_m p_m with the same weights. Each class says how it
relates to its reference implementation.

Domains. A rule with ``positive_losses = True`` takes logarithms or ratios of the losses and needs every loss
above its floor (:meth:`LossRule.loss_floor`: 0, or FAMO's ``min_losses`` − 1e-8, or DB-MTL's −1e-8). The engine
refuses such a rule when the game is built on a suite whose losses can go below the floor
(:attr:`mtg_env.suites.TaskSuite.loss_lower_bounds`, e.g. the quadratic game's), and ends a game whose loss still
reaches the floor (a loss of exactly 0 by rounding) instead of calling the rule outside its domain. FAMO and
DB-MTL take the logarithm of ℓ + 1e-8 as their reference implementations do, so a loss of exactly 0 is inside
their domain; there the log-loss gradient p_m / (ℓ_m + 1e-8) is up to 1e8 times the proposal, as in the
references, and the trunk can jump.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam  # torch's functional Adam: the step of torch.optim.Adam itself

#: The floor the log-loss rules add to a loss (as the reference implementations do).
_LOG_EPS = 1e-8

#: One game's state of a rule: tensors by name (see :meth:`LossRule.init_state`).
RuleState = dict[str, Tensor]


def _number(name: str, rule: str, value: Any, low: float, high: float = math.inf, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if open_low else value >= low) and value <= high:
        return float(value)
    lo = "(" if open_low else "["
    hi = f"{high}]" if math.isfinite(high) else "inf)"
    raise ValueError(f"consensus rule {rule!r}: option {name} must be a number in {lo}{low}, {hi}, got {value!r}")


def _adam(
    param: Tensor, grad: Tensor, m: Tensor, v: Tensor, count: int, lr: float, weight_decay: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Step ``count`` (1, 2, …) of ``torch.optim.Adam(lr=lr, weight_decay=weight_decay)`` (betas 0.9, 0.999, eps
    1e-8) on copies: the new ``(param, m, v)``. It is torch's own step (``torch.optim.adam.adam``), so it is bit
    for bit the class's on every device; the inputs are left alone."""
    param, m, v = param.detach().clone(), m.detach().clone(), v.detach().clone()
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # the class's step dtype
    step = torch.tensor(float(count - 1), dtype=scalar)
    with torch.no_grad():
        adam(
            [param], [grad.detach()], [m], [v], [], [step],
            amsgrad=False, beta1=0.9, beta2=0.999, lr=lr, weight_decay=weight_decay, eps=1e-8, maximize=False,
        )  # fmt: skip
    return param, m, v


class LossRule:
    """Base of the rules of this module: options, ``repr``, the state's life, the loss checks.

    Subclasses set ``name`` and implement ``_combine(state, P, losses, update, generator)``, which returns C(P)
    and the state entries that change on an update; ``_init`` adds their own state entries.
    """

    name = ""
    loss_aware = True
    differentiable = True
    randomized = False
    positive_losses = False
    """Whether the rule takes logarithms or ratios of the losses (then every loss must be above its floor)."""

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.__name__ = self.name  # what mtg_env.consensus.rule_name reports
        self._generator = torch.Generator().manual_seed(0)
        self.reset()

    # ------------------------------------------------------------------ the pure form (what the engine calls)
    def init_state(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        """One game's state at reset: tensors of fixed shapes and dtypes (``calls``: the steps played; the last
        losses, valid once ``calls >= 1``; the rule's own entries)."""
        state = {
            "calls": torch.zeros((), dtype=torch.int64, device=device),
            "last_losses": torch.zeros(num_tasks, dtype=dtype, device=device),
        }
        state.update(self._init(num_tasks, trunk_size, dtype, device))
        return state

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        return {}

    def step(
        self,
        state: RuleState,
        proposals: Tensor,
        losses: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, RuleState]:
        """C(P) for one game's proposals ``[M, n]`` and current losses ``[M]``, and the game's new state (a new dict;
        ``state`` is not modified). With ``losses=None``, a measurement from the last losses seen: the state is
        returned as it is. ``generator`` feeds a randomized rule's draws."""
        update = losses is not None
        calls = int(state["calls"])
        if losses is None:
            losses = state["last_losses"] if calls > 0 else None
        else:
            losses = losses.detach().to(proposals.dtype)
            self._check_losses(losses, proposals.shape[0])
        generator = self._generator if generator is None else generator
        out, changes = self._combine(state, proposals, losses, update, generator)
        if not update or losses is None:
            return out, state
        return out, {**state, **changes, "calls": state["calls"] + 1, "last_losses": losses}

    def check_state(self, state: RuleState) -> None:
        """Refuse a state no game can reach (a tampered checkpoint), naming the entry: beyond shapes and dtypes,
        which the caller checks against :meth:`init_state`."""
        if int(state["calls"]) < 0:
            raise ValueError(f"consensus rule {self.name!r}: state 'calls' must be >= 0, got {int(state['calls'])}")
        for key, value in state.items():
            if key.endswith("adam_v") and bool((value < 0).any()):
                raise ValueError(f"consensus rule {self.name!r}: state {key!r} (Adam's second moment) must be >= 0")
        if self.positive_losses and int(state["calls"]) > 0:
            last = state["last_losses"]
            if bool((last <= self.loss_floor(last.shape[0], last.dtype, last.device)).any()):
                raise ValueError(f"consensus rule {self.name!r}: state 'last_losses' is below the rule's floor")

    # ------------------------------------------------------------------ the domain
    def loss_floor(self, num_tasks: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """``[M]``: every finite loss must be above this (when ``positive_losses``), in the game's dtype."""
        return torch.zeros(num_tasks, dtype=dtype, device=device)

    def _floor_text(self) -> str:
        return "0"

    def _check_losses(self, losses: Tensor, m: int) -> None:
        if losses.shape != (m,):
            raise ValueError(f"consensus rule {self.name!r}: losses must have shape ({m},), got {tuple(losses.shape)}")
        if self.positive_losses:
            finite = torch.isfinite(losses)
            # A diverged game's non-finite losses pass through (the engine flags it); a finite loss below the
            # floor is a rule that does not fit the suite.
            low = finite & (losses <= self.loss_floor(m, losses.dtype, losses.device))
            if bool(low.any()):
                task = int(low.nonzero()[0])
                raise ValueError(
                    f"consensus rule {self.name!r} takes the logarithm or ratio of the losses and needs every loss "
                    f"> {self._floor_text()}, got {float(losses[task])} for task_{task} (losses {losses.tolist()}); "
                    "use it on a suite with positive losses (digits, regression)"
                )

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        raise NotImplementedError

    # ------------------------------------------------------------------ the object form (a game of its own)
    @property
    def state(self) -> RuleState | None:
        """The state of the game played by calling this object (``None`` before its first call)."""
        return self._state

    def reset(self) -> None:
        """Forget the state of the game played by calling this object."""
        self._state: RuleState | None = None

    def bind(self, generator: torch.Generator) -> None:
        """Draw the object form's random numbers from ``generator`` (randomized rules)."""
        self._generator = generator

    def __call__(self, proposals: Tensor, losses: Tensor | None = None) -> Tensor:
        """C(P) for the proposals ``[M, n]`` and current losses ``[M]`` of the game this object plays (its state
        kept on the object); with ``losses=None`` a measurement from the last losses seen, which changes no state."""
        if self._state is None:
            self._state = self.init_state(proposals.shape[0], proposals.shape[1], proposals.dtype, proposals.device)
        out, self._state = self.step(self._state, proposals, losses, self._generator)
        return out

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"consensus_rule({self.name!r}{opts})"
