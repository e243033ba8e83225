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
from collections.abc import Callable
from typing import Any

import numpy as np
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


class UncertaintyWeighting(LossRule):
    """Uncertainty weighting (Kendall et al. 2018): C(P) = Σ_m p_m / (2 e^{s_m}), the log variances s learned
    on L(s) = Σ_m ℓ_m / (2 e^{s_m}) + s_m / 2 by their own optimizer (one step per game step, after the move).

    As LibMTL's ``UW`` (``LibMTL/weighting/UW.py``): s starts at −0.5, the same loss. LibMTL trains s with the
    model's optimizer; here s has its own (``optimizer`` ``"adam"`` or ``"sgd"``, ``lr``), as the trunk's
    optimizer acts on the trunk only. State: ``log_vars`` s, and Adam's ``log_vars_adam_m``, ``log_vars_adam_v``.
    """

    name = "uw"

    def __init__(self, lr: float = 1e-3, optimizer: str = "adam", init: float = -0.5):
        self.lr = _number("lr", self.name, lr, 0.0, open_low=True)
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"consensus rule 'uw': option optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.optimizer = optimizer
        self.init = _number("init", self.name, init, -math.inf)
        super().__init__({"lr": lr, "optimizer": optimizer, "init": init})

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        zeros = torch.zeros(num_tasks, dtype=dtype, device=device)
        state = {"log_vars": torch.full((num_tasks,), self.init, dtype=dtype, device=device)}
        if self.optimizer == "adam":
            state.update(log_vars_adam_m=zeros, log_vars_adam_v=zeros.clone())
        return state

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        log_vars = state["log_vars"]
        out = (1 / (2 * log_vars.detach().exp())).detach() @ proposals  # w_m = 1 / (2 e^{s_m})
        if not (update and losses is not None):
            return out, {}
        with torch.enable_grad():
            s = log_vars.detach().requires_grad_(True)
            objective = (losses / (2 * s.exp()) + s / 2).sum()
            (grad,) = torch.autograd.grad(objective, s)
        if self.optimizer == "sgd":  # torch.optim.SGD's step
            return out, {"log_vars": log_vars.detach().add(grad, alpha=-self.lr)}
        count = int(state["calls"]) + 1  # every update is a step of s
        s_new, m, v = _adam(log_vars, grad, state["log_vars_adam_m"], state["log_vars_adam_v"], count, self.lr)
        return out, {"log_vars": s_new, "log_vars_adam_m": m, "log_vars_adam_v": v}


class DynamicWeightAverage(LossRule):
    """Dynamic weight average (Liu et al. 2019): C(P) = Σ_m w_m p_m with w = M · softmax(r / T), r_m the ratio of
    task m's loss now to its loss one step earlier; w = 1 until a ratio exists (the first step of an episode).

    LibMTL's ``DWA`` (``LibMTL/weighting/DWA.py``) and the authors' MTAN code take the ratio of the two previous
    *epochs'* mean losses; a game has steps, so here r uses the current and the previous step's losses (the
    losses the proposals were computed with are known before the move). Sum convention (weights sum to M), T=2.
    State: ``before_last``, the losses of the call before the last (for measurements).
    """

    name = "dwa"
    positive_losses = True

    def __init__(self, T: float = 2.0):
        self.T = _number("T", self.name, T, 0.0, open_low=True)
        super().__init__({"T": T})

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        return {"before_last": torch.zeros(num_tasks, dtype=dtype, device=device)}

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        m = proposals.shape[0]
        calls = int(state["calls"])
        if update:
            previous = state["last_losses"] if calls >= 1 else None
        else:
            previous = state["before_last"] if calls >= 2 else None
        if losses is None or previous is None:
            w = torch.ones(m, dtype=proposals.dtype, device=proposals.device)
        else:
            w = m * torch.softmax(losses / previous / self.T, dim=0)
        return w @ proposals, ({"before_last": state["last_losses"]} if update else {})


class FAMO(LossRule):
    """FAMO (Liu et al. 2023): C(P) = Σ_m w_m p_m with w_m ∝ z_m / D_m, z = softmax(ξ), D_m = ℓ_m − ℓ_m^min + 1e-8
    (the gradient of Σ_m z_m log D_m / c, c = Σ z/D held constant); the logits ξ then take one Adam step
    (lr ``w_lr``, weight decay ``gamma``) on the gradient J_softmax(ξ)ᵀ δ, δ_m = log D_m(before) − log D_m(after).

    As the authors' ``famo.py`` (github.com/Cranial-XIX/FAMO, defaults γ = 0.01, w_lr = 0.025) and LibMTL's
    ``FAMO`` (γ = 1e-3 there). The logit update needs the losses after the move: the authors recompute them on the
    same batch; here they are the next step's losses (the next batch), which the rule sees on its next call, so
    the update happens then (the same on full-batch suites). The authors' gradient clipping (``max_norm``) is
    the training loop's, not the rule's: clip with the trunk's optimizer options if wanted. (In the FAMO
    repository's experiments, ``methods/weight_methods.py`` calls ``clip_grad_norm_`` before ``loss.backward()``,
    on gradients just zeroed, so FAMO's steps there are not clipped; its stand-alone ``famo.py`` clips after.)
    The γ defaults differ between the authors' files: 0.01 in ``famo.py`` and the experiments' CLI, 1e-5 in
    ``methods/weight_methods.py``; LibMTL's is 1e-3.
    State: ``logits`` ξ and Adam's ``logits_adam_m``, ``logits_adam_v``.
    """

    name = "famo"
    positive_losses = True

    def __init__(self, gamma: float = 0.01, w_lr: float = 0.025, min_losses: float | list[float] = 0.0):
        self.gamma = _number("gamma", self.name, gamma, 0.0)
        self.w_lr = _number("w_lr", self.name, w_lr, 0.0, open_low=True)
        values = min_losses if isinstance(min_losses, (list, tuple)) else [min_losses]
        for v in values:
            _number("min_losses", self.name, v, -math.inf)
        self.min_losses = min_losses
        super().__init__({"gamma": gamma, "w_lr": w_lr, "min_losses": min_losses})

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        self._min(torch.zeros(num_tasks, dtype=dtype, device=device))  # min_losses must fit the tasks
        zeros = torch.zeros(num_tasks, dtype=dtype, device=device)
        return {"logits": zeros, "logits_adam_m": zeros.clone(), "logits_adam_v": zeros.clone()}

    def loss_floor(self, num_tasks: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        return self._min(torch.zeros(num_tasks, dtype=dtype, device=device)) - _LOG_EPS

    def _floor_text(self) -> str:
        return f"min_losses - 1e-8 = {self.min_losses!r} - 1e-8"

    def _min(self, losses: Tensor) -> Tensor:
        floor = torch.as_tensor(self.min_losses, dtype=losses.dtype, device=losses.device)
        if floor.dim() == 1 and floor.shape != losses.shape:
            raise ValueError(
                f"consensus rule 'famo': min_losses must have {losses.shape[0]} entries, got {floor.tolist()}"
            )
        return floor.expand_as(losses)

    def _weights(self, logits: Tensor, losses: Tensor | None) -> Tensor:
        """w = (z / D) / Σ (z / D), or z without losses."""
        z = torch.softmax(logits.detach(), -1)
        if losses is None:
            return z
        d = losses - self._min(losses) + _LOG_EPS
        return (z / d) / (z / d).sum()

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        logits, changes = state["logits"], {}
        calls = int(state["calls"])
        if update and losses is not None and calls > 0:
            before = state["last_losses"]
            floor = self._min(before)
            delta = (before - floor + _LOG_EPS).log() - (losses - floor + _LOG_EPS).log()
            with torch.enable_grad():
                x = logits.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(torch.softmax(x, -1), x, grad_outputs=delta)
            # The first update is the logits' first Adam step: the call before it had no earlier losses.
            logits, m, v = _adam(
                logits, grad, state["logits_adam_m"], state["logits_adam_v"], calls, self.w_lr, self.gamma
            )
            changes = {"logits": logits, "logits_adam_m": m, "logits_adam_v": v}
        return self._weights(logits, losses) @ proposals, changes


class DBMTL(LossRule):
    """DB-MTL (Lin et al. 2023): the log-loss proposals q_m = p_m / (ℓ_m + 1e-8) (the gradient of log ℓ_m) are
    averaged in a buffer, b ← q + (β / k^σ)(b − q) at the k-th step, and the trunk moves by
    C(P) = Σ_m (max_j ‖b_j‖ / (‖b_m‖ + 1e-8)) b_m: every task's buffered direction scaled to the longest.

    As LibMTL's ``DB_MTL`` (``LibMTL/weighting/DB_MTL.py``; defaults from ``LibMTL/config.py``: ``--DB_beta 0.9``,
    ``--DB_beta_sigma 0``, so the buffer is a plain EMA with factor β; the buffer starts at 0), on proposals
    instead of gradients (C(P) = −A(−P) exactly: every operation is odd in P). Until env v5 the default σ was 0.5,
    which LibMTL does not ship: the outputs differed from LibMTL's by up to 190 %.
    """

    name = "db_mtl"
    positive_losses = True

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0):
        self.beta = _number("beta", self.name, beta, 0.0, 1.0)
        self.beta_sigma = _number("beta_sigma", self.name, beta_sigma, 0.0)
        super().__init__({"beta": beta, "beta_sigma": beta_sigma})

    def loss_floor(self, num_tasks: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        return torch.full((num_tasks,), -_LOG_EPS, dtype=dtype, device=device)

    def _floor_text(self) -> str:
        return "-1e-8"

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        """The ``buffer`` b ``[M, n]`` (k is ``calls`` + 1)."""
        return {"buffer": torch.zeros(num_tasks, trunk_size, dtype=dtype, device=device)}

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        q = proposals if losses is None else proposals / (losses + _LOG_EPS).unsqueeze(1)
        k = int(state["calls"]) + 1
        old = state["buffer"]
        buffer = q + (self.beta / k**self.beta_sigma) * (old - q)
        norms = buffer.norm(dim=-1)
        alpha = norms.max() / (norms + 1e-8)
        return alpha @ buffer, ({"buffer": buffer.detach()} if update else {})


class GradVac(LossRule):
    """Gradient vaccine (Wang et al. 2021): every task's direction, in turn, is moved towards each other task's
    (in a random order) until their cosine reaches an EMA target φ̂_ij; the targets follow the observed cosines,
    φ̂_ij ← (1 − β) φ̂_ij + β φ_ij (β = 0.5, LibMTL's default); the results are summed.

    As LibMTL's ``GradVac`` (``LibMTL/weighting/GradVac.py``, whole-model grouping, φ̂ starting at 0) on the
    gradients −P (C(P) = −A(−P), exact as every operation is odd in P). The pairing is LibMTL's (and has been since
    its first version): for each task i, every other task j once, in a fresh random order, against the original
    g_j. The EMA: ``ema="every_pair"`` (default) updates φ̂_ij for every pair at every step, as the paper's
    Algorithm 1 and LibMTL since commit d2d84fa (2024-02-15, "fix a bug in GradVac"); ``ema="vaccinated"`` only on
    the pairs it vaccinated, as LibMTL before that commit. The losses are not used; the rule is loss-aware only so
    that measurements (calls without losses) leave its targets alone. State: the ``targets`` φ̂ ``[M, M]``.
    """

    name = "gradvac"
    randomized = True

    def __init__(self, beta: float = 0.5, ema: str = "every_pair", seed: int = 0):
        self.beta = _number("beta", self.name, beta, 0.0, 1.0)
        if ema not in ("every_pair", "vaccinated"):
            raise ValueError(f"consensus rule 'gradvac': option ema must be 'every_pair' or 'vaccinated', got {ema!r}")
        self.ema = ema
        super().__init__({"beta": beta, "ema": ema})
        self._generator = torch.Generator().manual_seed(seed)

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        return {"targets": torch.zeros(num_tasks, num_tasks, dtype=dtype, device=device)}

    def check_state(self, state: RuleState) -> None:
        super().check_state(state)
        if bool((state["targets"].abs() > 1).any()):
            raise ValueError("consensus rule 'gradvac': state 'targets' (averages of cosines) must lie in [-1, 1]")

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        grads = -proposals
        m = grads.shape[0]
        targets = state["targets"].clone()
        norms = grads.norm(dim=1)
        rows = []
        for i in range(m):
            others = [j for j in range(m) if j != i]
            order = [others[int(k)] for k in torch.randperm(m - 1, generator=generator)]
            g = grads[i]
            for j in order:
                cos = (g @ grads[j]) / (g.norm() * norms[j] + 1e-8)
                target = targets[i, j]
                vaccinate = bool(cos < target)
                if vaccinate:
                    coef = (
                        g.norm()
                        * (target * (1 - cos**2).sqrt() - cos * (1 - target**2).sqrt())
                        / (norms[j] * (1 - target**2).sqrt() + 1e-8)
                    )
                    g = g + grads[j] * coef
                if vaccinate or self.ema == "every_pair":
                    targets[i, j] = (1 - self.beta) * target + self.beta * cos.detach()
            rows.append(g)
        return -torch.stack(rows).sum(0), ({"targets": targets} if update else {})


class GeometricLossStrategy(LossRule):
    """Geometric loss strategy (Chennupati et al. 2019): the gradient of (Π_m ℓ_m)^{1/M}, so
    C(P) = (1/M) (Π_m ℓ_m)^{1/M} Σ_m p_m / ℓ_m.

    As LibMTL's ``GLS`` (``LibMTL/weighting/GLS.py``, which backpropagates through the geometric mean). Stateless
    but loss-aware (its state is the last losses, for measurements); every loss must be > 0.
    """

    name = "gls"
    positive_losses = True

    def __init__(self) -> None:
        super().__init__({})

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        m = proposals.shape[0]
        if losses is None:  # a measurement before any step: equal losses
            losses = torch.ones(m, dtype=proposals.dtype, device=proposals.device)
        mean = losses.log().mean().exp()  # (Π ℓ)^{1/M}, without the product's overflow
        return (mean / (m * losses)) @ proposals, {}


class GradNorm(LossRule):
    """GradNorm (Chen et al. 2018): C(P) = Σ_m w_m p_m with w = M · softmax(s); s learned (its own Adam, ``lr``)
    on Σ_m |G_m − Ḡ · r_m^α|, G_m = ‖w_m p_m‖, Ḡ their mean, r_m = L_m / mean(L), L_m = ℓ_m / ℓ_m at the first
    step (the target held constant); w = 1 on the first step of an episode.

    As LibMTL's ``GradNorm`` (``LibMTL/weighting/GradNorm.py``: the softmax parametrisation, s = 1 at the start,
    α = 1.5, norms of the whole shared gradient) with these differences: the first epoch is the first step
    (L_m divides by the first step's loss, LibMTL's by the first epoch's mean loss); s has its own optimizer
    (LibMTL's trains it with the model's); the norms are of the proposals p_m = −β g_m, so they carry the agents'
    step sizes (a common β scales the objective by β and leaves Adam's step on s nearly unchanged). State:
    ``scales`` s, Adam's ``scales_adam_m``, ``scales_adam_v``, and ``first_losses`` (valid once ``calls >= 1``).
    """

    name = "gradnorm"
    positive_losses = True

    def __init__(self, alpha: float = 1.5, lr: float = 1e-3):
        self.alpha = _number("alpha", self.name, alpha, 0.0)
        self.lr = _number("lr", self.name, lr, 0.0, open_low=True)
        super().__init__({"alpha": alpha, "lr": lr})

    def _init(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        zeros = torch.zeros(num_tasks, dtype=dtype, device=device)
        return {
            "scales": torch.ones(num_tasks, dtype=dtype, device=device),
            "scales_adam_m": zeros,
            "scales_adam_v": zeros.clone(),
            "first_losses": zeros.clone(),
        }

    def check_state(self, state: RuleState) -> None:
        super().check_state(state)
        first = state["first_losses"]
        if int(state["calls"]) > 0 and bool(
            (first <= self.loss_floor(first.shape[0], first.dtype, first.device)).any()
        ):
            raise ValueError("consensus rule 'gradnorm': state 'first_losses' must be > 0")

    def _combine(
        self, state: RuleState, proposals: Tensor, losses: Tensor | None, update: bool, generator: torch.Generator
    ) -> tuple[Tensor, RuleState]:
        m = proposals.shape[0]
        calls = int(state["calls"])
        if calls == 0 or losses is None:  # the first step: plain sum (LibMTL's epoch 0)
            return proposals.sum(0), ({"first_losses": losses} if update and losses is not None else {})
        scales = state["scales"]
        out = (m * torch.softmax(scales.detach(), -1)) @ proposals  # w = M · softmax(s)
        if not update:
            return out, {}
        ratios = losses / state["first_losses"]
        r = ratios / ratios.mean()
        with torch.enable_grad():
            s = scales.detach().requires_grad_(True)
            w = m * torch.softmax(s, -1)
            norms = (w.unsqueeze(1) * proposals.detach()).norm(dim=-1)
            target = (norms.mean() * r**self.alpha).detach()
            (grad,) = torch.autograd.grad((norms - target).abs().sum(), s)
        # The first update is the scales' first Adam step: the first call only recorded the first losses.
        scales, m_, v = _adam(scales, grad, state["scales_adam_m"], state["scales_adam_v"], calls, self.lr)
        return out, {"scales": scales, "scales_adam_m": m_, "scales_adam_v": v}


class FairGrad:
    """FairGrad (Ban & Ji 2024): C(P) = Σ_m w_m p_m with w > 0 solving (P Pᵀ) w = w^{−1/α} (α-fair utility;
    α = 1 is proportional fairness), by scipy's bounded least squares from w = 1/M.

    As LibMTL's ``FairGrad`` (``LibMTL/weighting/FairGrad.py``: the same equation, solver and start; α = 1.0 by
    default) with P Pᵀ = G Gᵀ for G = −P, solved to tolerances 1e-12 instead of scipy's default 1e-8 (LibMTL's),
    so that the solution's properties hold to round-off. Where the proposals conflict so much that no positive
    solution exists, the bounded least squares returns the closest w (as LibMTL's). Scaling the proposals by
    β > 0 scales w by β^{−2α/(α+1)}, so
    C(βP) = β^{(1−α)/(1+α)} C(P): at α = 1 the rule is scale-invariant (as Nash-MTL, whose equation it is without
    the normalisation) and the agents' step sizes do not reach the trunk. The solve runs on P / s (s the largest
    row norm) and w is scaled back by that law, so it holds to round-off at every scale (tested from 1e-6 to
    1e6); scipy's absolute tolerances on P itself had broken it below s = 1e-3. The authors' code
    (OptMN-Lab/fairgrad ``methods/weight_methods.py``) multiplies the direction by M and clips it at norm 1.0,
    and their run scripts use α = 2.0; LibMTL does neither and defaults to α = 1.0. Stateless and loss-free; its
    solve runs outside autograd.
    """

    name = "fairgrad"
    differentiable = False

    def __init__(self, alpha: float = 1.0):
        self.alpha = _number("alpha", self.name, alpha, 0.0, open_low=True)
        self.options = {"alpha": alpha}
        self.__name__ = self.name  # what mtg_env.consensus.rule_name reports

    def weights(self, proposals: Tensor) -> Tensor:
        """The α-fair weights w for these proposals."""
        from scipy.optimize import least_squares

        p = proposals.detach().cpu().to(torch.float64)
        # Solved on P / s, s the largest row norm: scipy's tolerances are absolute, so on P itself a small
        # scale stopped the solve early (C(sP) was 99 % off C(P) at s = 1e-6). The unit-scale solution w'
        # gives w = s^{-2α/(α+1)} w' exactly: (s²K')(c w') = (c w')^{-1/α} holds for c = s^{-2α/(α+1)}.
        scale = float(p.norm(dim=1).max())
        if scale == 0.0 or not math.isfinite(scale):
            return torch.zeros(p.shape[0], dtype=proposals.dtype, device=proposals.device)
        unit = p / scale
        gram = (unit @ unit.T).numpy()
        m = gram.shape[0]

        def residual(x: np.ndarray) -> np.ndarray:
            return gram @ x - np.power(1 / x, 1 / self.alpha)

        solution = least_squares(residual, np.ones(m) / m, bounds=(0, np.inf), ftol=1e-12, xtol=1e-12, gtol=1e-12)
        weights = torch.as_tensor(solution.x) * scale ** (-2 * self.alpha / (self.alpha + 1))
        return weights.to(dtype=proposals.dtype, device=proposals.device)

    def __call__(self, proposals: Tensor) -> Tensor:
        """C(P) for one game's proposals ``[M, n]``."""
        return self.weights(proposals) @ proposals

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"consensus_rule('fairgrad'{opts})"


#: The rules of this module by name.
LOSS_RULES: dict[str, Callable[..., Any]] = {
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "famo": FAMO,
    "gradvac": GradVac,
    "fairgrad": FairGrad,
    "db_mtl": DBMTL,
    "gls": GeometricLossStrategy,
    "gradnorm": GradNorm,
}


def make_loss_rule(name: str, **options: Any) -> Any:
    """Build the rule ``name`` of :data:`LOSS_RULES` with ``options`` (an unknown option is refused, naming the
    rule's options)."""
    import inspect

    cls = LOSS_RULES[name]
    accepted = sorted(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"consensus rule {name!r} has no option(s) {unknown}; its options are {accepted}")
    rule = cls(**options)
    rule.options = {k: v for k, v in options.items() if k != "seed"}  # repr echoes the call's options
    return rule
