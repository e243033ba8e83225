"""Loss-aware and stateful consensus rules of the multi-task learning literature that torchjd lacks.

Each rule is an object that the engine calls as ``rule(P, losses)`` (``loss_aware = True``) with the game's
proposals ``P [M, n]`` and current losses ``[M]`` (the losses at the parameters the proposals were computed
at). A rule keeps its state (FAMO's task logits and their Adam, the uncertainty weights, DWA's last losses,
GradVac's cosine targets, DB-MTL's gradient buffer, GradNorm's weights) on itself: the engine gives every
game its own copy, calls ``reset()`` on every reset, and the env's checkpoints carry it. Only the engine's
calls (with the losses) move that state; a call without losses (a measurement, e.g. the consensus residual
of :func:`mtg_env.metrics.game_metrics`) uses the last losses seen and changes nothing.

The convention is the one of :mod:`mtg_env.consensus`: a method that turns task gradients G into a direction
A(G) (the model then moving by −A(G)) is the rule C(P) = −A(−P) on proposals p_m = −β g_m. For the weighting
methods here, A(G) = Σ_m w_m g_m, so C(P) = Σ_m w_m p_m with the same weights. Each class says how it
relates to its reference implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: The floor the log-loss rules add to a loss (as the reference implementations do).
_LOG_EPS = 1e-8


def _number(name: str, rule: str, value: Any, low: float, high: float = math.inf, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > low if open_low else value >= low) and value <= high:
        return float(value)
    lo = "(" if open_low else "["
    hi = f"{high}]" if math.isfinite(high) else "inf)"
    raise ValueError(f"consensus rule {rule!r}: option {name} must be a number in {lo}{low}, {hi}, got {value!r}")


class LossRule:
    """Base of the rules of this module: options, ``repr``, ``reset``, the loss checks.

    Subclasses set ``name`` and implement ``_combine(P, losses, update)``.
    """

    name = ""
    loss_aware = True
    differentiable = True
    positive_losses = False
    """Whether the rule takes logarithms or ratios of the losses (then every loss must be > 0)."""

    def __init__(self, options: dict[str, Any]):
        self.options = options
        self.__name__ = self.name  # what mtg_env.consensus.rule_name reports
        self.reset()

    def reset(self) -> None:
        """Forget the state kept across steps (called on every env reset)."""
        self.last_losses: Tensor | None = None

    def __call__(self, proposals: Tensor, losses: Tensor | None = None) -> Tensor:
        """C(P) for one game's proposals ``[M, n]`` and current losses ``[M]``; with ``losses=None`` a
        measurement from the last losses seen, which changes no state."""
        update = losses is not None
        if losses is None:
            losses = self.last_losses
        else:
            losses = losses.detach().to(proposals.dtype)
            self._check_losses(losses, proposals.shape[0])
        out = self._combine(proposals, losses, update)
        if update:
            self.last_losses = losses
        return out

    def _check_losses(self, losses: Tensor, m: int) -> None:
        if losses.shape != (m,):
            raise ValueError(f"consensus rule {self.name!r}: losses must have shape ({m},), got {tuple(losses.shape)}")
        if self.positive_losses:
            finite = torch.isfinite(losses)
            # A diverged game's non-finite losses pass through (the engine flags it); a finite loss below the
            # floor is a rule that does not fit the suite.
            if bool((finite & (losses <= self._floor(losses))).any()):
                raise ValueError(
                    f"consensus rule {self.name!r} takes the logarithm or ratio of the losses and needs every loss "
                    f"> {self._floor_text()}, got {losses.tolist()}; use it on a suite with positive losses "
                    "(digits, regression)"
                )

    def _floor(self, losses: Tensor) -> Tensor:
        return torch.zeros_like(losses)

    def _floor_text(self) -> str:
        return "0"

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"consensus_rule({self.name!r}{opts})"


class UncertaintyWeighting(LossRule):
    """Uncertainty weighting (Kendall et al. 2018): C(P) = Σ_m p_m / (2 e^{s_m}), the log variances s learned
    on L(s) = Σ_m ℓ_m / (2 e^{s_m}) + s_m / 2 by their own optimizer (one step per game step, after the move).

    As LibMTL's ``UW`` (``LibMTL/weighting/UW.py``): s starts at −0.5, the same loss. LibMTL trains s with the
    model's optimizer; here s has its own (``optimizer`` ``"adam"`` or ``"sgd"``, ``lr``), as the trunk's
    optimizer acts on the trunk only.
    """

    name = "uw"

    def __init__(self, lr: float = 1e-3, optimizer: str = "adam", init: float = -0.5):
        self.lr = _number("lr", self.name, lr, 0.0, open_low=True)
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"consensus rule 'uw': option optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.optimizer = optimizer
        self.init = _number("init", self.name, init, -math.inf)
        super().__init__({"lr": lr, "optimizer": optimizer, "init": init})

    def reset(self) -> None:
        super().reset()
        self.log_vars: Tensor | None = None
        self._opt: torch.optim.Optimizer | None = None

    def weights(self) -> Tensor:
        """w_m = 1 / (2 e^{s_m})."""
        assert self.log_vars is not None
        return (1 / (2 * self.log_vars.detach().exp())).detach()

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        if self.log_vars is None:
            m = proposals.shape[0]
            self.log_vars = torch.full((m,), self.init, dtype=proposals.dtype, device=proposals.device)
            self.log_vars.requires_grad_(True)
            cls = torch.optim.Adam if self.optimizer == "adam" else torch.optim.SGD
            self._opt = cls([self.log_vars], lr=self.lr)
        out = self.weights() @ proposals
        if update and losses is not None:
            assert self._opt is not None
            with torch.enable_grad():
                s = self.log_vars
                objective = (losses / (2 * s.exp()) + s / 2).sum()
                (grad,) = torch.autograd.grad(objective, s)
            s.grad = grad
            self._opt.step()
        return out


class DynamicWeightAverage(LossRule):
    """Dynamic weight average (Liu et al. 2019): C(P) = Σ_m w_m p_m with w = M · softmax(r / T), r_m the ratio of
    task m's loss now to its loss one step earlier; w = 1 until a ratio exists (the first step of an episode).

    LibMTL's ``DWA`` (``LibMTL/weighting/DWA.py``) and the authors' MTAN code take the ratio of the two previous
    *epochs'* mean losses; a game has steps, so here r uses the current and the previous step's losses (the
    losses the proposals were computed with are known before the move). Sum convention (weights sum to M), T=2.
    """

    name = "dwa"
    positive_losses = True

    def __init__(self, T: float = 2.0):
        self.T = _number("T", self.name, T, 0.0, open_low=True)
        super().__init__({"T": T})

    def reset(self) -> None:
        super().reset()
        self.before_last: Tensor | None = None
        """The losses of the engine call before the last one (for measurements)."""

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        m = proposals.shape[0]
        previous = self.last_losses if update else self.before_last
        if losses is None or previous is None:
            w = torch.ones(m, dtype=proposals.dtype, device=proposals.device)
        else:
            w = m * torch.softmax(losses / previous / self.T, dim=0)
        if update:
            self.before_last = self.last_losses
        return w @ proposals


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

    def reset(self) -> None:
        super().reset()
        self.logits: Tensor | None = None
        self._opt: torch.optim.Optimizer | None = None

    def _floor(self, losses: Tensor) -> Tensor:
        return self._min(losses) - _LOG_EPS

    def _floor_text(self) -> str:
        return f"min_losses - 1e-8 = {self.min_losses!r} - 1e-8"

    def _min(self, losses: Tensor) -> Tensor:
        floor = torch.as_tensor(self.min_losses, dtype=losses.dtype, device=losses.device)
        if floor.dim() == 1 and floor.shape != losses.shape:
            raise ValueError(
                f"consensus rule 'famo': min_losses must have {losses.shape[0]} entries, got {floor.tolist()}"
            )
        return floor.expand_as(losses)

    def weights(self, losses: Tensor | None) -> Tensor:
        """w = (z / D) / Σ (z / D), or z without losses."""
        assert self.logits is not None
        z = torch.softmax(self.logits.detach(), -1)
        if losses is None:
            return z
        d = losses - self._min(losses) + _LOG_EPS
        return (z / d) / (z / d).sum()

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        if self.logits is None:
            self.logits = torch.zeros(proposals.shape[0], dtype=proposals.dtype, device=proposals.device)
            self.logits.requires_grad_(True)
            self._opt = torch.optim.Adam([self.logits], lr=self.w_lr, weight_decay=self.gamma)
        if update and losses is not None and self.last_losses is not None:
            self._update_logits(self.last_losses, losses)
        return self.weights(losses) @ proposals

    def _update_logits(self, before: Tensor, after: Tensor) -> None:
        assert self.logits is not None and self._opt is not None
        floor = self._min(before)
        delta = (before - floor + _LOG_EPS).log() - (after - floor + _LOG_EPS).log()
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(torch.softmax(self.logits, -1), self.logits, grad_outputs=delta)
        self.logits.grad = grad
        self._opt.step()


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

    def _floor(self, losses: Tensor) -> Tensor:
        return torch.full_like(losses, -_LOG_EPS)

    def _floor_text(self) -> str:
        return "-1e-8"

    def reset(self) -> None:
        super().reset()
        self.buffer: Tensor | None = None
        self.steps = 0

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        q = proposals if losses is None else proposals / (losses + _LOG_EPS).unsqueeze(1)
        k = self.steps + 1
        old = torch.zeros_like(q) if self.buffer is None else self.buffer
        buffer = q + (self.beta / k**self.beta_sigma) * (old - q)
        norms = buffer.norm(dim=-1)
        alpha = norms.max() / (norms + 1e-8)
        if update:
            self.buffer, self.steps = buffer.detach(), k
        return alpha @ buffer


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
    that measurements (calls without losses) leave its targets alone.
    """

    name = "gradvac"
    randomized = True

    def __init__(self, beta: float = 0.5, ema: str = "every_pair", seed: int = 0):
        self.beta = _number("beta", self.name, beta, 0.0, 1.0)
        if ema not in ("every_pair", "vaccinated"):
            raise ValueError(f"consensus rule 'gradvac': option ema must be 'every_pair' or 'vaccinated', got {ema!r}")
        self.ema = ema
        self._generator = torch.Generator().manual_seed(seed)
        super().__init__({"beta": beta, "ema": ema})

    def bind(self, generator: torch.Generator) -> None:
        """Draw the task orders from ``generator`` (the engine passes one per game and step)."""
        self._generator = generator

    def reset(self) -> None:
        super().reset()
        self.targets: Tensor | None = None

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        grads = -proposals
        m = grads.shape[0]
        targets = (
            torch.zeros(m, m, dtype=grads.dtype, device=grads.device) if self.targets is None else self.targets.clone()
        )
        norms = grads.norm(dim=1)
        rows = []
        for i in range(m):
            others = [j for j in range(m) if j != i]
            order = [others[int(k)] for k in torch.randperm(m - 1, generator=self._generator)]
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
        if update:
            self.targets = targets
        return -torch.stack(rows).sum(0)


class GeometricLossStrategy(LossRule):
    """Geometric loss strategy (Chennupati et al. 2019): the gradient of (Π_m ℓ_m)^{1/M}, so
    C(P) = (1/M) (Π_m ℓ_m)^{1/M} Σ_m p_m / ℓ_m.

    As LibMTL's ``GLS`` (``LibMTL/weighting/GLS.py``, which backpropagates through the geometric mean). Stateless
    but loss-aware; every loss must be > 0.
    """

    name = "gls"
    positive_losses = True

    def __init__(self) -> None:
        super().__init__({})

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        m = proposals.shape[0]
        if losses is None:  # a measurement before any step: equal losses
            losses = torch.ones(m, dtype=proposals.dtype, device=proposals.device)
        mean = losses.log().mean().exp()  # (Π ℓ)^{1/M}, without the product's overflow
        return (mean / (m * losses)) @ proposals


class GradNorm(LossRule):
    """GradNorm (Chen et al. 2018): C(P) = Σ_m w_m p_m with w = M · softmax(s); s learned (its own Adam, ``lr``)
    on Σ_m |G_m − Ḡ · r_m^α|, G_m = ‖w_m p_m‖, Ḡ their mean, r_m = L_m / mean(L), L_m = ℓ_m / ℓ_m at the first
    step (the target held constant); w = 1 on the first step of an episode.

    As LibMTL's ``GradNorm`` (``LibMTL/weighting/GradNorm.py``: the softmax parametrisation, s = 1 at the start,
    α = 1.5, norms of the whole shared gradient) with these differences: the first epoch is the first step
    (L_m divides by the first step's loss, LibMTL's by the first epoch's mean loss); s has its own optimizer
    (LibMTL's trains it with the model's); the norms are of the proposals p_m = −β g_m, so they carry the agents'
    step sizes (a common β scales the objective by β and leaves Adam's step on s nearly unchanged).
    """

    name = "gradnorm"
    positive_losses = True

    def __init__(self, alpha: float = 1.5, lr: float = 1e-3):
        self.alpha = _number("alpha", self.name, alpha, 0.0)
        self.lr = _number("lr", self.name, lr, 0.0, open_low=True)
        super().__init__({"alpha": alpha, "lr": lr})

    def reset(self) -> None:
        super().reset()
        self.scales: Tensor | None = None
        self.first_losses: Tensor | None = None
        self._opt: torch.optim.Optimizer | None = None

    def weights(self) -> Tensor:
        """w = M · softmax(s)."""
        assert self.scales is not None
        return self.scales.shape[0] * torch.softmax(self.scales.detach(), -1)

    def _combine(self, proposals: Tensor, losses: Tensor | None, update: bool) -> Tensor:
        m = proposals.shape[0]
        if self.scales is None:
            self.scales = torch.ones(m, dtype=proposals.dtype, device=proposals.device, requires_grad=True)
            self._opt = torch.optim.Adam([self.scales], lr=self.lr)
        if self.first_losses is None or losses is None:  # the first step: plain sum (LibMTL's epoch 0)
            if update:
                self.first_losses = losses
            return proposals.sum(0)
        out = self.weights() @ proposals
        if update:
            assert self._opt is not None
            ratios = losses / self.first_losses
            r = ratios / ratios.mean()
            with torch.enable_grad():
                w = m * torch.softmax(self.scales, -1)
                norms = (w.unsqueeze(1) * proposals.detach()).norm(dim=-1)
                target = (norms.mean() * r**self.alpha).detach()
                (grad,) = torch.autograd.grad((norms - target).abs().sum(), self.scales)
            self.scales.grad = grad
            self._opt.step()
        return out


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
