"""The optimizer after the consensus rule: SGD, momentum, Adam and AdamW as pure functions of batched state.

With ``trunk_optimizer`` the trunk no longer moves by C(P) itself: the optimizer treats −C(P) as the trunk's
gradient, Ψ ← opt(Ψ, −C(P)), and keeps its own state (momentum buffer; Adam's moments m, v). This is the
order of the multi-task learning literature (aggregate the task gradients, then one Adam step on the
aggregate); without it (``None``) the order is the game's (each player's optimizer shapes its proposal, the
rule combines the steps). ``head_optimizer`` does the same for every head with −u_m as its gradient.

The state is a tensor ``[B, S, d]`` in :class:`~mtg_env.engine.state.GameState` (S slots: 0 for SGD, 1 for
momentum, 2 for Adam), zero at reset; the optimizer's step count is the game's step counter. Every update is
the one ``torch.optim`` performs, written with the same torch operations (``lerp``, ``addcmul``, …) and the
bias corrections computed in Python as ``torch.optim`` does (a table over the steps), so a game's trunk is
bit for bit that of ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` on the same gradient sequence, a batch of
games equals the lone games, and a differentiable unroll passes through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Names accepted by ``trunk_optimizer`` / ``head_optimizer``.
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw")

#: Each optimizer's options and their defaults (``torch.optim``'s, with momentum 0.9 for ``momentum``).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-3, "weight_decay": 0.0},
    "momentum": {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
}
#: Options of the torch.optim classes that change nothing in the mathematics (implementation switches).
_TORCH_SWITCHES = ("foreach", "fused", "capturable", "differentiable")
#: Longest bias-correction table (steps).
_MAX_TABLE = 2**20


@dataclass(frozen=True)
class OptimizerSpec:
    """A validated optimizer: its name and options (see :data:`OPTIMIZERS`)."""

    name: str
    """``sgd``, ``momentum``, ``adam`` or ``adamw``."""
    options: tuple[tuple[str, Any], ...]
    """Every option, defaults filled in, in a fixed order."""

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def slots(self) -> int:
        """State vectors per parameter: 0 (SGD), 1 (momentum buffer), 2 (Adam's m and v)."""
        return {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}[self.name]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options)
        return f"{self.name}({opts})"


def optimizer_spec(
    optimizer: Any, kwargs: Mapping[str, Any] | None = None, argument: str = "trunk_optimizer"
) -> OptimizerSpec | None:
    """Validate ``optimizer`` (a name, a ``torch.optim`` class, or ``None``) and its options.

    A ``torch.optim`` class is accepted where it has a functional form here: ``SGD`` (``sgd``, or ``momentum``
    with ``momentum > 0``), ``Adam`` and ``AdamW``; its implementation switches (``foreach``, ``fused``, …)
    are ignored, as they change how, not what, it computes. Other classes are refused: their state does not
    fit the engine's batched tensors.

    Raises:
        ValueError: an unknown name, an option the optimizer does not take, or a bad value (the message names
            ``argument`` and the option).
        TypeError: anything else as ``optimizer``, or options that are not a mapping.
    """
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"{argument}_kwargs must be a dict of options, got {type(kwargs).__name__}")
    options = dict(kwargs or {})
    if optimizer is None:
        if options:
            raise ValueError(f"{argument}_kwargs {sorted(options)} given without {argument}; name an optimizer")
        return None
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        name = _from_torch_class(optimizer, options, argument)
    elif isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown {argument} {optimizer!r}; available: {list(OPTIMIZERS)}, torch.optim.SGD / Adam / AdamW, "
                "or None (the trunk moves by C(P) itself)"
            )
        name = optimizer
    else:
        raise TypeError(
            f"{argument} must be a name in {list(OPTIMIZERS)}, a torch.optim class (SGD, Adam, AdamW) or None, "
            f"got {type(optimizer).__name__}"
        )
    defaults = _DEFAULTS[name]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{argument}={name!r} has no option(s) {unknown}; its options are {sorted(defaults)}")
    merged = {**defaults, **options}
    _check_options(name, merged, f"{argument}_kwargs")
    return OptimizerSpec(name, tuple((k, merged[k]) for k in defaults))


def _from_torch_class(cls: type, options: dict[str, Any], argument: str) -> str:
    """The name of ``cls``'s functional form; drops its implementation switches from ``options``."""
    for switch in _TORCH_SWITCHES:
        if options.get(switch) not in (None, False):
            raise ValueError(f"{argument}_kwargs: {switch}={options[switch]!r} is not supported here; leave it out")
        options.pop(switch, None)
    for flag in ("maximize", "amsgrad", "decoupled_weight_decay"):
        if options.get(flag) is True:
            raise ValueError(f"{argument}_kwargs: {flag}=True has no functional form here; leave it out")
        options.pop(flag, None)
    if cls is torch.optim.SGD:
        momentum = options.get("momentum", 0.0)
        if isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and momentum == 0:
            options.pop("momentum", None)
            for key in ("dampening", "nesterov"):
                if options.get(key) in (0, 0.0, False):
                    options.pop(key)
            return "sgd"
        return "momentum"
    if cls is torch.optim.Adam:
        return "adam"
    if cls is torch.optim.AdamW:
        return "adamw"
    raise ValueError(
        f"{argument}={cls.__module__}.{cls.__name__} has no functional form here (its state does not fit the engine's "
        "batched tensors); use torch.optim.SGD, Adam or AdamW, or a name in " + str(list(OPTIMIZERS))
    )


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_options(name: str, options: dict[str, Any], where: str) -> None:
    lr = options["lr"]
    if not (_real(lr) and lr > 0):
        raise ValueError(f"{where}['lr'] must be a finite number > 0, got {lr!r}")
    wd = options["weight_decay"]
    if not (_real(wd) and wd >= 0):
        raise ValueError(f"{where}['weight_decay'] must be a finite number >= 0, got {wd!r}")
    if name == "momentum":
        mom, damp, nesterov = options["momentum"], options["dampening"], options["nesterov"]
        if not (_real(mom) and 0 < mom < 1):
            raise ValueError(f"{where}['momentum'] must be a number in (0, 1), got {mom!r}")
        if not (_real(damp) and 0 <= damp <= 1):
            raise ValueError(f"{where}['dampening'] must be a number in [0, 1], got {damp!r}")
        if not isinstance(nesterov, bool):
            raise TypeError(f"{where}['nesterov'] must be True or False, got {nesterov!r}")
        if nesterov and damp != 0:
            raise ValueError(f"{where}: nesterov=True needs dampening=0 (as torch.optim.SGD), got {damp!r}")
    if name in ("adam", "adamw"):
        betas, eps = options["betas"], options["eps"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_real(b) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"{where}['betas'] must be a pair (beta1, beta2) of numbers in [0, 1), got {betas!r}")
        options["betas"] = (betas[0], betas[1])
        if not (_real(eps) and eps > 0):
            raise ValueError(f"{where}['eps'] must be a finite number > 0, got {eps!r}")


@dataclass(frozen=True, eq=False)
class BoundOptimizer:
    """An :class:`OptimizerSpec` bound to a game's dtype, device and horizon: Adam's bias corrections as tables
    over the step count k, each entry computed in Python as ``torch.optim`` computes it (so the step is bit for
    bit theirs), up to the step where both corrections round to 1 (then constant), past the horizon, or at
    2**20 steps (beyond which the corrections stay at that step's values)."""

    spec: OptimizerSpec
    dtype: torch.dtype
    device: torch.device
    horizon: int
    neg_step_size: Tensor = field(init=False, repr=False)
    """``[L]`` −lr / (1 − β1^k) for k = 0 … L − 1 (entry 0 unused)."""
    bias2_sqrt: Tensor = field(init=False, repr=False)
    """``[L]`` (1 − β2^k)^½."""

    def __post_init__(self) -> None:
        neg, sq = [0.0], [1.0]
        if self.spec.slots == 2:
            opts = self.spec.kwargs
            lr, (b1, b2) = opts["lr"], opts["betas"]
            k = 1
            while k <= min(self.horizon + 1, _MAX_TABLE):
                bc1, bc2 = 1 - b1 ** float(k), 1 - b2 ** float(k)
                neg.append(-(lr / bc1))
                sq.append(bc2**0.5)
                if bc1 == 1.0 and bc2 == 1.0:
                    break
                k += 1
        object.__setattr__(self, "neg_step_size", torch.tensor(neg, dtype=self.dtype, device=self.device))
        object.__setattr__(self, "bias2_sqrt", torch.tensor(sq, dtype=self.dtype, device=self.device))

    @property
    def slots(self) -> int:
        return self.spec.slots

    def init_state(self, batch_size: int, size: int) -> Tensor:
        """Zero state ``[B, S, size]``."""
        return torch.zeros(batch_size, self.slots, size, dtype=self.dtype, device=self.device)

    def step(self, params: Tensor, grads: Tensor, state: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step of B games: ``params [B, d]`` moved by ``grads [B, d]``; ``state [B, S, d]``;
        ``t [B]`` the games' step counters before the step (the optimizer's count is k = t + 1).
        Returns the new parameters and state (nothing is modified in place)."""
        opts = self.spec.kwargs
        name = self.spec.name
        lr, wd = opts["lr"], opts["weight_decay"]
        if name == "adamw" and wd != 0:
            params = params * (1 - lr * wd)
        elif wd != 0:
            grads = grads.add(params, alpha=wd)
        if name == "sgd":
            return torch.add(params, grads, alpha=-lr), state
        if name == "momentum":
            buf = state[:, 0]
            first = (t == 0).unsqueeze(1)
            buf = torch.where(first, grads, torch.add(buf * opts["momentum"], grads, alpha=1 - opts["dampening"]))
            direction = grads.add(buf, alpha=opts["momentum"]) if opts["nesterov"] else buf
            return torch.add(params, direction, alpha=-lr), buf.unsqueeze(1)
        beta1, beta2 = opts["betas"]
        m = torch.lerp(state[:, 0], grads, 1 - beta1)
        v = torch.addcmul(state[:, 1] * beta2, grads, grads, value=1 - beta2)
        k = (t + 1).clamp_max(self.neg_step_size.shape[0] - 1)
        denom = v.sqrt() / self.bias2_sqrt[k].unsqueeze(1) + opts["eps"]
        # addcdiv's order: param + (value · m) / denom.
        params = params + self.neg_step_size[k].unsqueeze(1) * m / denom
        return params, torch.stack([m, v], 1)

    def __repr__(self) -> str:
        return repr(self.spec)
