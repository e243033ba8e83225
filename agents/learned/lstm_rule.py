"""The canonical learned optimizer: the coordinatewise two-layer LSTM of Andrychowicz et al. 2016 (one of the rules
of :mod:`agents.learned.rules`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agents.learned.blocks import Blocks
from agents.learned.guard import apply_guard, guard_state
from agents.learned.rule_base import MOVE, RuleState, seeded_init, zero_init
from agents.learned.rule_configs import LSTMRuleConfig

__all__ = ["LSTMRule"]


class LSTMRule(nn.Module):
    """Coordinatewise 2-layer LSTM optimizer (Andrychowicz et al. 2016), shared by every coordinate."""

    def __init__(self, config: LSTMRuleConfig | None = None):
        super().__init__()
        self.config = config = config or LSTMRuleConfig()
        self.cell1 = nn.LSTMCell(2, config.hidden)
        self.cell2 = nn.LSTMCell(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, 1)
        seeded_init(self, config.seed)
        zero_init(self.out)  # an untrained rule leaves the parameters where they are (no random walk)

    def init_state(self, g: Tensor, blocks: Blocks) -> RuleState:
        """Zero hidden and cell states ``[B, K, 4, hidden]`` for gradients ``g [B, K]`` laid out as ``blocks`` (every
        coordinate alike)."""
        b, k = g.shape
        dtype = self.out.weight.dtype
        guard = guard_state(g, blocks.num_groups, dtype) if self.config.guard else {}
        return {"h": torch.zeros(b, k, 4, self.config.hidden, dtype=dtype, device=g.device)} | guard

    def preprocess(self, g: Tensor) -> Tensor:
        """LogAndSign: (log|g| / p, sign g) where |g| ≥ e^−p, else (−1, e^p·g); ``[B, K] -> [B, K, 2]``."""
        p = self.config.preprocess_p
        big = g.abs() >= math.exp(-p)
        log_part = torch.where(big, g.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(g, -1.0))
        sign_part = torch.where(big, torch.sign(g), g * math.exp(p))
        return torch.stack([log_part, sign_part], dim=2)

    def forward(
        self, g: Tensor, features: Tensor, blocks: Blocks, t: Tensor, state: RuleState
    ) -> tuple[Tensor, RuleState]:
        """The update ``[B, K]`` and the next state (the canonical rule sees the gradient alone; the guard reads
        ``features [B, G, 8]``' trunk move and the ``blocks``; as :meth:`MLPRule.forward`)."""
        g = g.detach().to(self.out.weight.dtype)
        b, k = g.shape
        hidden = self.config.hidden
        s = state["h"].reshape(b * k, 4, hidden)
        h1, c1 = self.cell1(self.preprocess(g).reshape(b * k, 2), (s[:, 0], s[:, 1]))
        h2, c2 = self.cell2(h1, (s[:, 2], s[:, 3]))
        update = self.config.output_scale * self.out(h2).view(b, k)
        guard: RuleState = {}
        if self.config.guard:  # every block a step along g (the LSTM's update is bounded, not curvature-aware)
            cfg = self.config
            move = torch.expm1(features[:, 0, MOVE].to(g.dtype))
            parts, _, guard = apply_guard(blocks.split(update), None, g, blocks, move, state, cfg, fallback=True)
            update = blocks.join(*parts)
        return update, guard | {"h": torch.stack([h1, c1, h2, c2], dim=1).view(b, k, 4, hidden)}
