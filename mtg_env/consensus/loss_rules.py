"""The gradient-manipulating loss-aware rules that torchjd lacks: GradVac, GradNorm and FairGrad (conventions in
:mod:`mtg_env.consensus.loss_base`), and the registry :data:`LOSS_RULES` of every loss-aware rule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env.consensus.loss_base import LossRule, RuleState, _adam, _number
from mtg_env.consensus.loss_weighting import (
    DBMTL,
    FAMO,
    DynamicWeightAverage,
    GeometricLossStrategy,
    UncertaintyWeighting,
)


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
