"""The loss-weighting rules: uncertainty weighting, DWA, FAMO, DB-MTL and the geometric loss strategy (each a
:class:`~mtg_env.consensus.loss_base.LossRule`; conventions in :mod:`mtg_env.consensus.loss_base`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtg_env.consensus.loss_base import _LOG_EPS, LossRule, RuleState, _adam, _number


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
