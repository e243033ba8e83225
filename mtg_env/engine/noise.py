"""Perturbations of the game (the paper's Assumption 7) and regularisation toward equilibrium (Assumption 6).

:class:`NoiseSpec` composes four noise models, each off by default, every draw a pure function of the game's
(seed, episode, step) through its own stream (:mod:`mtg_env.rng`), batched over games:

- gradient noise (``grad_std``, Gaussian or Student-t with ``grad_df`` degrees of freedom) added to what the
  players observe and the ``step_size`` mode scales: every head gradient and every trunk Jacobian row;
- label noise per task (``label_noise``) on the batch drawn each step: a fraction of classification labels
  replaced by a uniformly drawn other class, or Gaussian noise of that standard deviation on regression
  targets (suites without data, such as ``quadratic``, refuse it);
- a Byzantine task (``byzantine``) whose trunk proposal an adversary replaces (``attack``: sign flip, scaled
  by ``attack_scale``, or a random vector of ``attack_scale`` times its norm);
- stale proposals (``delay`` = k): the consensus rule sees the proposals of step t − k (of step 0 while t < k),
  kept in a buffer of the state (:attr:`~mtg_env.engine.state.GameState.aux`).

:class:`RegSpec` adds λ/2 ‖Θ_m − Θ̂_m‖² to each player's loss, Θ̂_m its best response on the current trunk
(``target="best_response"``; suites with a batched exact best response) or a running average of its own
iterates (``target="ema"``, the proximal variant). Θ̂ is a target, not a path for gradients: the penalty's
gradient is λ(Θ_m − Θ̂_m) on the head and nothing on the trunk (see :func:`regularise`).

With every option off the engine plays today's game bit for bit: the hooks are skipped, the state holds no
extra tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from mtg_env._args import is_int, is_real
from mtg_env.rng import STREAM_BYZANTINE, STREAM_GRAD_NOISE, GameRNG

if TYPE_CHECKING:
    from mtg_env.suites.base import TaskSuite

#: The state entries these options keep (in :attr:`GameState.aux`).
DELAY_KEY = "delay_buffer"
ANCHOR_KEY = "reg_anchor"

GradDist = Literal["gaussian", "student_t"]
Attack = Literal["sign_flip", "scale", "random"]
RegTarget = Literal["best_response", "ema"]

#: Largest Student-t degrees of freedom accepted (χ²_ν is drawn as a sum of ν squared normals).
MAX_DF = 1000


def _level(name: str, value: Any) -> float:
    """A finite noise level >= 0, or an error that names the argument."""
    if not is_real(value):
        raise TypeError(f"{name} must be a finite number >= 0, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True)
class NoiseSpec:
    """The noise models of a game; every field's default is off. Checked on construction (errors name the field)."""

    grad_std: float = 0.0
    """Scale σ of the noise added to every head-gradient entry and trunk-Jacobian entry the players observe."""
    grad_dist: GradDist = "gaussian"
    """``"gaussian"``: σ·N(0, 1); ``"student_t"``: σ·t_ν (heavy tails; variance σ²ν/(ν − 2) for ν > 2)."""
    grad_df: int = 3
    """ν, the Student-t degrees of freedom (an int in [1, 1000])."""
    label_noise: float | tuple[float, ...] = 0.0
    """Per task (one number for all): classification, the fraction of labels replaced by another class drawn
    uniformly; regression, the standard deviation of Gaussian noise added to the targets."""
    byzantine: int | None = None
    """The task whose trunk proposal the adversary replaces (``None``: no adversary)."""
    attack: Attack = "sign_flip"
    """``"sign_flip"``: −p; ``"scale"``: attack_scale · p; ``"random"``: a Gaussian direction of norm about
    attack_scale · ‖p‖."""
    attack_scale: float = 10.0
    """The factor of ``"scale"`` and ``"random"`` attacks (finite, >= 0)."""
    delay: int = 0
    """k: the consensus rule uses the proposals of k steps ago (0: today's)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "grad_std", _level("noise_model.grad_std", self.grad_std))
        if self.grad_dist not in ("gaussian", "student_t"):
            raise ValueError(f"noise_model.grad_dist must be 'gaussian' or 'student_t', got {self.grad_dist!r}")
        if not is_int(self.grad_df) or not 1 <= self.grad_df <= MAX_DF:
            raise ValueError(f"noise_model.grad_df (Student-t ν) must be an int in [1, {MAX_DF}], got {self.grad_df!r}")
        label = self.label_noise
        if isinstance(label, (list, tuple)):
            set_(self, "label_noise", tuple(_level(f"noise_model.label_noise[{m}]", v) for m, v in enumerate(label)))
        else:
            set_(self, "label_noise", _level("noise_model.label_noise", label))
        if self.byzantine is not None and (not is_int(self.byzantine) or self.byzantine < 0):
            raise ValueError(
                f"noise_model.byzantine must be a task index (an int >= 0) or None, got {self.byzantine!r}"
            )
        if self.attack not in ("sign_flip", "scale", "random"):
            raise ValueError(f"noise_model.attack must be 'sign_flip', 'scale' or 'random', got {self.attack!r}")
        set_(self, "attack_scale", _level("noise_model.attack_scale", self.attack_scale))
        if not is_int(self.delay) or self.delay < 0:
            raise ValueError(f"noise_model.delay must be an int >= 0 (steps of staleness), got {self.delay!r}")

    @property
    def has_label_noise(self) -> bool:
        label = self.label_noise
        return any(v > 0 for v in label) if isinstance(label, tuple) else label > 0

    @property
    def active(self) -> bool:
        """Some noise model is on."""
        return self.grad_std > 0 or self.has_label_noise or self.byzantine is not None or self.delay > 0

    def label_levels(self, num_tasks: int) -> tuple[float, ...]:
        label = self.label_noise
        return label if isinstance(label, tuple) else (float(label),) * num_tasks

    def check(self, suite: TaskSuite) -> None:
        """Refuse what this suite cannot play: a Byzantine index out of range, label noise of the wrong length or
        on a suite without labels or targets."""
        m = suite.num_tasks
        if self.byzantine is not None and self.byzantine >= m:
            raise ValueError(
                f"noise_model.byzantine must be a task index in [0, {m - 1}] ({m} tasks), got {self.byzantine}"
            )
        if isinstance(self.label_noise, tuple) and len(self.label_noise) != m:
            raise ValueError(f"noise_model.label_noise must list one level per task ({m}), got {len(self.label_noise)}")
        if self.has_label_noise and not getattr(suite, "supports_label_noise", False):
            raise ValueError(
                f"noise_model.label_noise needs a suite with labels or targets drawn each step (digits, regression); "
                f"suite {suite.name!r} has none (on quadratic games use gradient noise, which perturbs b_m's "
                "gradient the same way)"
            )

    def __repr__(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != f.default]
        return f"NoiseSpec({', '.join(changed)})"


@dataclass(frozen=True)
class RegSpec:
    """Regularisation toward equilibrium: λ/2 ‖Θ_m − Θ̂_m‖² added to each player's loss (off at λ = 0)."""

    strength: float = 0.0
    """λ >= 0."""
    target: RegTarget = "best_response"
    """``"best_response"``: Θ̂_m(Ψ), the exact best response on the current trunk; ``"ema"``: a running average
    of the player's own iterates a ← decay·a + (1 − decay)·Θ (the proximal variant)."""
    decay: float = 0.9
    """The running average's decay, in [0, 1)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strength", _level("regularisation.strength", self.strength))
        if self.target not in ("best_response", "ema"):
            raise ValueError(f"regularisation.target must be 'best_response' or 'ema', got {self.target!r}")
        d = self.decay
        if not is_real(d) or not 0.0 <= float(d) < 1.0:
            raise ValueError(f"regularisation.decay must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "decay", float(d))

    @property
    def active(self) -> bool:
        return self.strength > 0

    def check(self, suite: TaskSuite) -> None:
        if self.active and self.target == "best_response" and not getattr(suite, "batched_best_response", False):
            raise ValueError(
                f"regularisation.target='best_response' needs a suite with an exact batched best response "
                f"(quadratic); suite {suite.name!r} has none: use target='ema' (toward a running average)"
            )


def noise_spec(value: NoiseSpec | Mapping[str, Any] | None, name: str = "noise_model") -> NoiseSpec | None:
    """A :class:`NoiseSpec` from itself, a dict of its fields, or ``None``; ``None`` when every model is off."""
    return _spec(NoiseSpec, value, name)


def reg_spec(value: RegSpec | Mapping[str, Any] | None, name: str = "regularisation") -> RegSpec | None:
    """A :class:`RegSpec` from itself, a dict of its fields, or ``None``; ``None`` at λ = 0."""
    return _spec(RegSpec, value, name)


def _spec(cls: Any, value: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{name} has unknown fields {unknown}; known: {sorted(known)}")
        value = cls(**value)
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, a dict of its fields or None, got {type(value).__name__}")
    return value if value.active else None


# ------------------------------------------------------------------------------------------------ the hooks
def init_aux(noise: NoiseSpec | None, reg: RegSpec | None, heads: Tensor, trunk: Tensor, m: int) -> dict[str, Tensor]:
    """The extra state at reset: the delay buffer (filled at step 0) and the proximal anchor (the start heads)."""
    aux: dict[str, Tensor] = {}
    if noise is not None and noise.delay > 0:
        bsz, n = trunk.shape
        aux[DELAY_KEY] = torch.zeros(bsz, noise.delay, m, n, dtype=trunk.dtype, device=trunk.device)
    if reg is not None and reg.target == "ema":
        aux[ANCHOR_KEY] = heads.detach().clone()
    return aux


def attack(noise: NoiseSpec, proposals: Tensor, rng: GameRNG) -> Tensor:
    """``proposals [B, M, n]`` with the Byzantine task's row replaced (a new tensor)."""
    j = noise.byzantine
    if j is None:
        return proposals
    p = proposals[:, j]
    if noise.attack == "sign_flip":
        bad = -p
    elif noise.attack == "scale":
        bad = noise.attack_scale * p
    else:
        n = p.shape[1]
        z = rng.normal(STREAM_BYZANTINE, n, proposals.dtype).to(proposals.device)
        bad = z * (noise.attack_scale * p.norm(dim=1, keepdim=True) / math.sqrt(n))
    mask = torch.zeros(proposals.shape[1], 1, dtype=torch.bool, device=proposals.device)
    mask[j] = True
    return torch.where(mask, bad.unsqueeze(1), proposals)


def delayed(noise: NoiseSpec, proposals: Tensor, aux: dict[str, Tensor], t: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The proposals the rule uses at step t (those of step max(t − k, 0)) and the new buffer (a new dict)."""
    if noise.delay == 0:
        return proposals, aux
    buffer = aux[DELAY_KEY]
    k = noise.delay
    first = (t == 0).view(-1, 1, 1, 1)
    # At step 0 the buffer has nothing: fill it with step 0's proposals, so steps 0..k all use them.
    buffer = torch.where(first, proposals.unsqueeze(1).expand(-1, k, -1, -1), buffer)
    full = torch.cat([buffer, proposals.unsqueeze(1)], dim=1)
    return full[:, 0], {**aux, DELAY_KEY: full[:, 1:]}


def noisy_gradients(noise: NoiseSpec, head_grads: Tensor, jac: Tensor, rng: GameRNG) -> tuple[Tensor, Tensor]:
    """Head gradients ``[B, H]`` and Jacobian ``[B, M, n]`` plus σ·(Gaussian or Student-t) noise, one draw per
    entry from the step's own stream."""
    if noise.grad_std == 0:
        return head_grads, jac
    bsz, h = head_grads.shape
    count = h + jac.shape[1] * jac.shape[2]
    z = rng.normal(STREAM_GRAD_NOISE, count)  # float64
    if noise.grad_dist == "student_t":
        nu = noise.grad_df
        # χ²_ν as a sum of ν squared normals, drawn after the count numerators of the same stream.
        chi2 = rng.normal(STREAM_GRAD_NOISE, count * (nu + 1))[:, count:].view(bsz, nu, count).square().sum(1)
        z = z / torch.sqrt(chi2 / nu)
    z = (noise.grad_std * z).to(head_grads.device, head_grads.dtype)
    return head_grads + z[:, :h], jac + z[:, h:].view_as(jac)


def noisy_batch(noise: NoiseSpec, suite: TaskSuite, batch: Any, rng: GameRNG) -> Any:
    """The step's batch with each task's labels or targets perturbed (see :attr:`NoiseSpec.label_noise`)."""
    if not noise.has_label_noise:
        return batch
    return suite.perturb_labels(batch, rng, noise.label_levels(suite.num_tasks))


def regularise(
    reg: RegSpec,
    suite: TaskSuite,
    indicator: Tensor,
    heads: Tensor,
    trunk: Tensor,
    losses: Tensor,
    head_grads: Tensor,
    aux: dict[str, Tensor],
    t: Tensor,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Each player's regularised loss ℓ_m + λ/2 ‖Θ_m − Θ̂_m‖² and head gradient g_m + λ(Θ_m − Θ̂_m).

    Θ̂ is held fixed (no gradient through Θ̂(Ψ)): the penalty asks the head to stay near its best response,
    not the trunk to move the best response toward the head; the trunk's rows (and so the consensus rule's
    inputs) are unchanged. At any fixed point Θ_m = Θ̂_m, so neither target moves the equilibrium; they change
    the dynamics (see docs/open_directions_noise_regularisation.md for the rate on quadratics). The ``ema``
    anchor is updated first, a ← decay·a + (1 − decay)·Θ (except at reset, where it is the start), then used.
    """
    if reg.target == "best_response":
        target = suite.best_response_batch(trunk.detach()).to(heads.dtype)
    else:
        anchor = aux[ANCHOR_KEY]
        fresh = (t == 0).unsqueeze(1)
        target = torch.where(fresh, anchor, reg.decay * anchor + (1.0 - reg.decay) * heads.detach())
        aux = {**aux, ANCHOR_KEY: target}
    losses, head_grads = penalise(reg, indicator, heads, target, losses, head_grads)
    return losses, head_grads, aux


def penalise(
    reg: RegSpec, indicator: Tensor, heads: Tensor, target: Tensor, losses: Tensor, head_grads: Tensor
) -> tuple[Tensor, Tensor]:
    """The losses plus λ/2 ‖Θ_m − target_m‖² per task and the head gradients plus λ(Θ − target)."""
    lam = reg.strength
    diff = heads - target
    penalty = 0.5 * lam * (diff.square() @ indicator)
    pull = lam * diff
    # Keep the engine's contract: losses and gradients carry a graph only in the unrolls that asked for one.
    if not losses.requires_grad:
        penalty = penalty.detach()
    if not head_grads.requires_grad:
        pull = pull.detach()
    return losses + penalty, head_grads + pull
