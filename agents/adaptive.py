"""Adaptive-step players (the paper's Remark 11): Adam and RMSprop, each with its own state.

In ``update`` mode they are the textbook per-coordinate rules applied to the agent's own gradient
[∇_Θ ℓ_m; ∇_Ψ ℓ_m] (the trunk part becomes the agent's proposal). In ``step_size`` mode the env fixes
the direction to −g, so only a scalar step per block can adapt: the agents then use the norm form of
the same rule, α = lr / (√v̂ + ε) with v the moving average of ‖g‖²/dim (no momentum direction), which
gives steps whose per-coordinate RMS matches the per-coordinate rule's. The rule itself (both forms) is
:class:`agents.rules.AdaptiveRule`; this module is its numpy players.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.base import ObservationReader, RulePlayer, check_step_sizes
from agents.rules import AdaptiveRule
from mtg_env._args import real_arg


class _AdaptiveAgent(RulePlayer):
    """The numpy player of :class:`~agents.rules.AdaptiveRule`: Adam (beta1 > 0, bias-corrected) and RMSprop
    (beta1 = 0, no bias correction)."""

    _bias_correction = True

    def __init__(self, lr: float, trunk_lr: float | None, beta1: float, beta2: float, eps: float):
        self.lr, self.trunk_lr = check_step_sizes(lr, trunk_lr)
        self._beta1, self._beta2, self.eps = beta1, beta2, real_arg("eps", eps, low=0.0, low_open=True)
        self._reader = None
        self._rule = None

    def make_rule(self, lrs: torch.Tensor) -> AdaptiveRule:
        return AdaptiveRule(lrs, self._beta1, self._beta2, self.eps, self._bias_correction)

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        reader = ObservationReader(info, action_space)
        self._start(reader, per_block=reader.mode == "step_size")

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        reader, rule = self._rule_started()
        if reader.mode == "update":
            return self._update_action(observation)
        assert isinstance(rule, AdaptiveRule)
        norms = torch.tensor([reader.grad_norms(observation)], dtype=torch.float64)
        dims = torch.tensor([[max(reader.head_size, 1), max(reader.trunk_size, 1)]], dtype=torch.float64)
        return reader.step_action(np.log(rule.norm_step(norms, dims)[0].numpy()))


class AdamAgent(_AdaptiveAgent):
    """Adam (Kingma & Ba) on the agent's own gradient.

    Args:
        lr: Head step size.
        trunk_lr: Trunk step size (default: ``lr``).
        betas: Decay rates of the first and second moments.
        eps: Added to the root of the second moment.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        trunk_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if isinstance(betas, (str, bytes)) or not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2) of decay rates in [0, 1), got {betas!r}")
        b1 = real_arg("betas[0]", betas[0], 0.0, 1.0, high_open=True, hint="first-moment decay")
        b2 = real_arg("betas[1]", betas[1], 0.0, 1.0, high_open=True, hint="second-moment decay")
        super().__init__(lr, trunk_lr, b1, b2, eps)
        self.betas = (b1, b2)

    def __repr__(self) -> str:
        trunk = "" if self.trunk_lr is None else f", trunk_lr={self.trunk_lr}"
        return f"AdamAgent(lr={self.lr}{trunk}, betas={self.betas}, eps={self.eps})"


class RMSpropAgent(_AdaptiveAgent):
    """RMSprop (Tieleman & Hinton; as ``torch.optim.RMSprop``: no momentum, no bias correction).

    Args:
        lr: Head step size.
        trunk_lr: Trunk step size (default: ``lr``).
        alpha: Decay rate of the mean squared gradient.
        eps: Added to the root of the mean square.
    """

    _bias_correction = False

    def __init__(self, lr: float = 1e-2, trunk_lr: float | None = None, alpha: float = 0.99, eps: float = 1e-8):
        self.alpha = real_arg("alpha", alpha, 0.0, 1.0, high_open=True, hint="mean-square decay")
        super().__init__(lr, trunk_lr, 0.0, self.alpha, eps)

    def __repr__(self) -> str:
        trunk = "" if self.trunk_lr is None else f", trunk_lr={self.trunk_lr}"
        return f"RMSpropAgent(lr={self.lr}{trunk}, alpha={self.alpha}, eps={self.eps})"
