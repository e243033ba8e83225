"""Learned update rules as batched torch modules acting on per-coordinate inputs ``[B, K]``.

A rule sees, for each of K coordinates of B games, the gradient g, the task's observation features and the
step count, carries its own per-coordinate state, and returns an update. The same module plays inside the
PettingZoo env (one agent's K = h_m + n coordinates, B = 1; see :mod:`agents.learned.policy`) and on the
engine's outputs (all tasks' K = H + M·n coordinates of B games; see :mod:`agents.learned.engine_io`), so
the two forms agree by construction: every operation is per coordinate.

* :class:`MLPRule` — a per-coordinate MLP in the style of learned_optimization's ``small_fc_lopt``: inputs
  the gradient, momenta at several decays and the RMS (all normalised by the RMS), a bounded time embedding
  and the task's features; it modulates an Adam step, −α·exp(c·a)·(m̂/√v̂ + c·b), with the last layer zero at
  initialisation, so an untrained rule plays Adam at a learned step size α (robust beyond its training).
* :class:`LSTMRule` — the coordinatewise two-layer LSTM of Andrychowicz et al. 2016 with their LogAndSign
  gradient preprocessing (p = 10) and output scale 0.1: the canonical learned optimizer.
* :class:`StepRule` — ``step_size`` mode: a small network from a task's 7 features to its log step sizes
  (log α, log β), shared by all tasks, starting at a constant step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Which observation features (indices into :data:`mtg_env.engine.FEATURES`) the update rules read: the
#: loss change, the conflict with the other tasks and the alignment with the last trunk move (bounded,
#: scale-free); the loss and gradient norms are scale-dependent and the progress depends on the horizon.
RULE_FEATURES: tuple[int, ...] = (1, 4, 5)

#: Time scales τ of the embedding tanh(t / τ). Bounded, but not saturated within short training horizons: past its
#: training horizon a rule meets values of tanh(t / 1000) it never saw (see README, "Learned agents").
TIME_SCALES: tuple[float, ...] = (10.0, 100.0, 1000.0)

#: State of a rule for B games of K coordinates: named tensors with leading dimensions ``[B, K]``.
RuleState = dict[str, Tensor]


def seeded_init(module: nn.Module, seed: int) -> None:
    """Re-draw every Linear / LSTMCell weight and bias of ``module`` from U(±1/√fan_in) (PyTorch's default
    scale) with a generator seeded by ``seed``: a rule's initial parameters never depend on the global RNG."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                fan_in = sub.in_features
            elif isinstance(sub, nn.LSTMCell):
                fan_in = sub.hidden_size
            else:
                continue
            bound = 1.0 / math.sqrt(fan_in)
            for p in sub.parameters(recurse=False):
                p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=gen))


@dataclass(frozen=True)
class MLPRuleConfig:
    """Hyper-parameters of :class:`MLPRule`."""

    hidden: int = 32
    """Width of the two hidden layers."""
    decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    """Momentum decay rates; the one equal to ``adam_beta1`` is the Adam step's first moment."""
    adam_beta1: float = 0.9
    """The first-moment decay of the base Adam step (must be one of ``decays``)."""
    beta2: float = 0.999
    """The second-moment (RMS) decay."""
    eps: float = 1e-8
    """Added to the RMS."""
    scale: float = 0.1
    """c: how strongly the network's outputs modulate the Adam step (small, as small_fc_lopt's)."""
    init_lr: float = 0.01
    """Initial step size α of the base Adam step, and η₀ of the gradient step (head and trunk)."""
    init_gate: float = -2.0
    """Initial gate γ: the share sigmoid(γ) of the Barzilai–Borwein step (≈ 0.12; −30: Adam alone)."""
    seed: int = 0
    """Seed of the initial weights."""


class MLPRule(nn.Module):
    """Per-coordinate MLP update rule (see the module docstring).

    The rule mixes two steps that work without training: Adam's, −α m̂/(√v̂ + ε), and a Barzilai–Borwein
    gradient step −η g, η = sᵀy / yᵀy from the player's last update s and gradient change y over each block
    (a task's head, or its trunk proposal; kept from the last step where sᵀy ≤ 0; at most doubling per step).
    Per coordinate, with the network's outputs (a, b, d), the update is
    exp(c·a)·[(1 − σ)(−α (m̂/(√v̂ + ε) + c·b)) + σ(−η g)], σ = sigmoid(γ + c·d). Parameters: the MLP, log α,
    log η₀ (η before the first BB estimate) and the gate γ (head and trunk each).
    """

    def __init__(self, config: MLPRuleConfig | None = None):
        super().__init__()
        self.config = config = config or MLPRuleConfig()
        if config.adam_beta1 not in config.decays:
            raise ValueError(f"adam_beta1 ({config.adam_beta1}) must be one of decays {config.decays}")
        self._adam_index = config.decays.index(config.adam_beta1)
        inputs = 1 + len(config.decays) + len(TIME_SCALES) + 1 + len(RULE_FEATURES)
        self.net = nn.Sequential(
            nn.Linear(inputs, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, 3),
        )
        seeded_init(self, config.seed)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.log_lr = nn.Parameter(torch.full((2,), math.log(config.init_lr)))
        self.log_eta0 = nn.Parameter(torch.full((2,), math.log(config.init_lr)))
        self.gate = nn.Parameter(torch.full((2,), float(config.init_gate)))

    def init_state(self, g: Tensor, num_groups: int = 2) -> RuleState:
        """Zero moments for gradients ``g [B, K]`` whose coordinates fall in ``num_groups`` blocks."""
        b, k = g.shape
        dtype = self.log_lr.dtype
        zeros = torch.zeros(b, k, dtype=dtype, device=g.device)
        return {
            "m": torch.zeros(b, k, len(self.config.decays), dtype=dtype, device=g.device),
            "v": zeros,
            "prev_g": zeros,
            "prev_u": zeros,
            "eta": torch.zeros(b, num_groups, dtype=dtype, device=g.device),
        }

    def forward(
        self, g: Tensor, features: Tensor, is_trunk: Tensor, t: Tensor, state: RuleState, groups: Tensor | None = None
    ) -> tuple[Tensor, RuleState]:
        """The update ``[B, K]`` and the next state.

        Args:
            g: ``[B, K]`` gradients.
            features: ``[B, K, 7]`` the observation features of each coordinate's task.
            is_trunk: ``[K]`` bool: the coordinate is a trunk proposal (else a head coordinate).
            t: ``[B]`` steps already taken this episode (0 on the first action).
            state: From :meth:`init_state` or the previous call.
            groups: ``[K]`` the block of each coordinate (default: ``is_trunk``, one player's head and trunk).
        """
        cfg = self.config
        dtype = self.log_lr.dtype
        g = g.detach().to(dtype)
        b, k = g.shape
        groups = is_trunk.long() if groups is None else groups
        block = is_trunk.long()
        t1 = (t.to(dtype) + 1.0).unsqueeze(1)  # [B, 1]
        decays = torch.tensor(cfg.decays, dtype=dtype, device=g.device)
        m = decays * state["m"] + (1.0 - decays) * g.unsqueeze(2)
        v = cfg.beta2 * state["v"] + (1.0 - cfg.beta2) * g.square()
        rms = (v / (1.0 - cfg.beta2**t1)).sqrt() + cfg.eps
        m_hat = m / (1.0 - decays ** t1.unsqueeze(2))
        normed = torch.cat([(g / rms).unsqueeze(2), m_hat / rms.unsqueeze(2)], dim=2).clamp(-10.0, 10.0)
        # Barzilai–Borwein (short) step per block: η = sᵀy / yᵀy, kept where the curvature estimate is not positive.
        s, y = state["prev_u"], g - state["prev_g"]
        num_groups = state["eta"].shape[1]
        sy = torch.zeros(b, num_groups, dtype=dtype, device=g.device).index_add_(1, groups, s * y)
        yy = torch.zeros(b, num_groups, dtype=dtype, device=g.device).index_add_(1, groups, y * y)
        fresh = (sy > 0) & (yy > 0)
        estimate = (sy / torch.where(fresh, yy, 1.0)).clamp(1e-6, 1e2)
        # Safeguard: η at most doubles per step (a noisy or game-distorted curvature estimate cannot blow up).
        prev = state["eta"]
        estimate = torch.where(prev > 0, torch.minimum(estimate, 2.0 * prev), estimate)
        eta = torch.where(fresh, estimate, prev)
        eta0 = self.log_eta0.exp()[block]  # [K]
        eta_k = eta[:, groups]
        eta_k = torch.where(eta_k > 0, eta_k, eta0)
        time = torch.tanh(t1.unsqueeze(2) / torch.tensor(TIME_SCALES, dtype=dtype, device=g.device))  # [B, 1, 3]
        inputs = torch.cat(
            [
                normed,
                time.expand(b, k, len(TIME_SCALES)),
                is_trunk.to(dtype).view(1, k, 1).expand(b, k, 1),
                features[:, :, list(RULE_FEATURES)].to(dtype),
            ],
            dim=2,
        )
        out = self.net(inputs)
        adam = normed[:, :, 1 + self._adam_index]
        lr = self.log_lr.exp()[block]  # [K]
        mix = torch.sigmoid(self.gate[block] + cfg.scale * out[..., 2])
        step_adam = -lr * (adam + cfg.scale * out[..., 1])
        update = torch.exp(cfg.scale * out[..., 0]) * ((1.0 - mix) * step_adam - mix * eta_k * g)
        return update, {"m": m, "v": v, "prev_g": g, "prev_u": update.detach(), "eta": eta}


@dataclass(frozen=True)
class LSTMRuleConfig:
    """Hyper-parameters of :class:`LSTMRule` (Andrychowicz et al. 2016's values)."""

    hidden: int = 20
    """Units of each of the two LSTM layers."""
    preprocess_p: float = 10.0
    """p of the LogAndSign preprocessing."""
    output_scale: float = 0.1
    """The network's output times this is the update."""
    seed: int = 0
    """Seed of the initial weights."""


class LSTMRule(nn.Module):
    """Coordinatewise 2-layer LSTM optimizer (Andrychowicz et al. 2016), shared by every coordinate."""

    def __init__(self, config: LSTMRuleConfig | None = None):
        super().__init__()
        self.config = config = config or LSTMRuleConfig()
        self.cell1 = nn.LSTMCell(2, config.hidden)
        self.cell2 = nn.LSTMCell(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, 1)
        seeded_init(self, config.seed)
        # Zero output at initialisation: an untrained rule leaves the parameters where they are (no random walk).
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def init_state(self, g: Tensor, num_groups: int = 2) -> RuleState:
        """Zero hidden and cell states ``[B, K, 4, hidden]`` for gradients ``g [B, K]``."""
        b, k = g.shape
        return {"h": torch.zeros(b, k, 4, self.config.hidden, dtype=self.out.weight.dtype, device=g.device)}

    def preprocess(self, g: Tensor) -> Tensor:
        """LogAndSign: (log|g| / p, sign g) where |g| ≥ e^−p, else (−1, e^p·g); ``[B, K] -> [B, K, 2]``."""
        p = self.config.preprocess_p
        big = g.abs() >= math.exp(-p)
        log_part = torch.where(big, g.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(g, -1.0))
        sign_part = torch.where(big, torch.sign(g), g * math.exp(p))
        return torch.stack([log_part, sign_part], dim=2)

    def forward(
        self, g: Tensor, features: Tensor, is_trunk: Tensor, t: Tensor, state: RuleState, groups: Tensor | None = None
    ) -> tuple[Tensor, RuleState]:
        """The update ``[B, K]`` and the next state (``features``, ``is_trunk``, ``t`` and ``groups`` are not
        read: the canonical rule sees the gradient alone)."""
        g = g.detach().to(self.out.weight.dtype)
        b, k = g.shape
        hidden = self.config.hidden
        s = state["h"].reshape(b * k, 4, hidden)
        h1, c1 = self.cell1(self.preprocess(g).reshape(b * k, 2), (s[:, 0], s[:, 1]))
        h2, c2 = self.cell2(h1, (s[:, 2], s[:, 3]))
        update = self.config.output_scale * self.out(h2).view(b, k)
        return update, {"h": torch.stack([h1, c1, h2, c2], dim=1).view(b, k, 4, hidden)}


@dataclass(frozen=True)
class StepRuleConfig:
    """Hyper-parameters of :class:`StepRule`."""

    hidden: int = 32
    """Width of the hidden layer."""
    init_log_step: float = -3.0
    """Initial natural-log step size (head and trunk) of the untrained rule."""
    seed: int = 0
    """Seed of the initial weights."""


class StepRule(nn.Module):
    """Step-size controller: features ``[B, M, 7]`` -> log step sizes ``[B, M, 2]`` (log α, log β), one
    network for every task, clamped into the env's ``log_step_range``."""

    def __init__(self, config: StepRuleConfig | None = None):
        super().__init__()
        self.config = config = config or StepRuleConfig()
        self.net = nn.Sequential(nn.Linear(7, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 2))
        seeded_init(self, config.seed)
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.base = nn.Parameter(torch.full((2,), float(config.init_log_step)))

    def forward(self, features: Tensor, log_step_range: tuple[float, float]) -> Tensor:
        """Log step sizes ``[B, M, 2]`` for features ``[B, M, 7]``, inside ``log_step_range``."""
        lo, hi = log_step_range
        raw = self.base + self.net(features.detach().to(self.base.dtype))
        return raw.clamp(lo, hi)


#: Any learned rule.
Rule = MLPRule | LSTMRule | StepRule
