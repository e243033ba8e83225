"""The PettingZoo form of a learned agent: a :class:`~agents.base.Policy` playing one task with a rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.base import ObservationReader, ReaderPlayer
from agents.learned.batched import (
    adam_allowed,
    balance_allowed,
    boost_allowed,
    heads_adam_allowed,
    noisy_bounded_allowed,
    trunk_scale,
)
from agents.learned.blocks import Blocks
from agents.learned.portfolio import PortfolioRule
from agents.learned.rules import LSTMRule, MLPRule, Rule, RuleState, StepRule
from mtg_env.engine import NUM_FEATURES


class LearnedAgent(ReaderPlayer):
    """One task's player driven by a learned rule (the same module as the batched
    :class:`~agents.learned.batched.EngineDriver`, with B = 1 and this task's K = h_m + n coordinates).

    Args:
        rule: An :class:`MLPRule` or :class:`LSTMRule` (``update`` mode) or a :class:`StepRule` (``step_size``
            mode), or a :class:`~agents.learned.portfolio.PortfolioRule` (``update`` mode), whose expert for the env
            (:meth:`~agents.learned.portfolio.PortfolioRule.expert_for_info`, from the reset's infos: the same for
            every player) plays from each reset. Its parameters are not changed by playing.
        name: The registry name (for ``repr``), e.g. ``"learned_mlp"``.
        weights: Where the rule's weights came from (for ``repr``), if from a file.
        sha256: The sha256 of that file's bytes, if known (``mtg-env run`` records it in its summary).
    """

    def __init__(
        self,
        rule: Rule | PortfolioRule,
        name: str = "learned",
        weights: str | Path | None = None,
        sha256: str | None = None,
    ):
        if not isinstance(rule, (MLPRule, LSTMRule, StepRule, PortfolioRule)):
            raise TypeError(f"rule must be an MLPRule, LSTMRule, StepRule or PortfolioRule, got {type(rule).__name__}")
        #: The rule given (a portfolio, or the rule that plays).
        self.given = rule
        #: The rule that plays: ``rule``, or for a portfolio its expert for the env of the last reset (before the
        #: first reset its first expert: the batched forms take ``given``, which picks per game).
        self.rule: Rule = rule if not isinstance(rule, PortfolioRule) else rule.expert(0)
        #: For a portfolio, the label of the expert that plays since the last reset (``None`` before the first).
        self.expert: str | None = None
        self.name = name
        self.weights = None if weights is None else str(weights)
        self.sha256 = sha256
        self.t = 0
        self._reader = None
        self._memory: RuleState = {}
        self.trunk_scale = 1.0

    @property
    def mode(self) -> str:
        """The action mode this agent plays."""
        return "step_size" if isinstance(self.given, StepRule) else "update"

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        reader = ObservationReader(info, action_space)
        if reader.mode != self.mode:
            raise ValueError(
                f"{self.name} plays action_mode={self.mode!r}; this env has action_mode={reader.mode!r} "
                f"(make the env with action_mode={self.mode!r})"
            )
        if isinstance(self.given, PortfolioRule):  # first the expert: what follows reads its config
            self.rule = self.given.expert_for_info(info, reader.trunk_size)
            self.expert = self.given.config.labels[list(self.given.experts).index(self.rule)]
        scale = info.get("sum_scale")  # absent where the game's consensus rule has no constant unanimity gain
        #: The factor of this player's trunk proposals: the env's ``sum_scale`` for a rule with ``sum_scaled``, else 1.
        self.trunk_scale = trunk_scale(self.rule, lambda: None if scale is None else float(scale))
        self._reader = reader
        self.t = 0
        self._memory = {}
        h, n = reader.head_size, reader.trunk_size
        device = next(self.rule.parameters()).device
        if isinstance(self.rule, StepRule):
            self._sizes = torch.tensor([[float(h), float(n)]], device=device)
            self._memory = self.rule.init_state(1)
        else:
            is_trunk = torch.cat([torch.zeros(h, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(device)
            self._blocks = Blocks(is_trunk)  # block 0 its head, block 1 its trunk proposal
            g = torch.zeros(1, h + n, device=device)
            if isinstance(self.rule, MLPRule):  # gated boost and share: they play where the infos say
                linear = info.get("linear_consensus")  # absent from an env before the key: told nothing, as linear
                allowed = boost_allowed(self.rule, lambda: True if linear is None else bool(linear))
                bounded = info.get("min_bounded_consensus")  # absent: told nothing, as not min-bounded
                min_bounded = bool(bounded) and linear is not None and not bool(linear)
                share = adam_allowed(self.rule, lambda: min_bounded)
                # balanced where min-bounded and not linear, and where the env gives G (absent: told nothing, off)
                balanced = "trunk_grad_norm_mean" in info and balance_allowed(self.rule, lambda: min_bounded)
                # estimates where the infos say so (absent: told nothing, as exact)
                stochastic = bool(info.get("stochastic_gradients", False))
                noisy = stochastic and min_bounded
                self._memory = self.rule.init_state(
                    g, self._blocks, linear_consensus=allowed, min_bounded_consensus=share, balanced=balanced,
                    noisy_bounded=noisy_bounded_allowed(self.rule, lambda: noisy),
                    stochastic=heads_adam_allowed(self.rule, lambda: stochastic),
                )  # fmt: skip
            else:
                self._memory = self.rule.init_state(g, self._blocks)

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        reader = self._started()
        device = next(self.rule.parameters()).device
        feats = torch.as_tensor(np.asarray(observation[-NUM_FEATURES:], dtype=np.float64), device=device)
        with torch.no_grad():
            if isinstance(self.rule, StepRule):
                assert reader.log_step_range is not None
                log_steps, self._memory = self.rule.play(
                    feats.view(1, 1, -1), reader.log_step_range, self._sizes, self._memory
                )
                self.t += 1
                return reader.step_action(log_steps.view(2).double().cpu().numpy())
            g_head, g_trunk = reader.grads(observation)
            g = torch.as_tensor(np.concatenate([g_head, g_trunk]).astype(np.float64), device=device).unsqueeze(0)
            if "balance_on" in self._memory:  # balance_min_bounded, where it plays: G of this step, from the infos
                if "trunk_grad_norm_mean" not in info:
                    raise ValueError(
                        f"{self.name}: the env's info lacks 'trunk_grad_norm_mean', which this rule's "
                        "balance_min_bounded reads every step (it was there at reset); pass each step's infos"
                    )
                value = float(info["trunk_grad_norm_mean"])
                common = torch.tensor([[value]], dtype=torch.float64, device=device)
                self._memory = self._memory | {"trunk_grad_norm_mean": common}
            update, self._memory = self.rule(
                g,
                feats.view(1, 1, -1).expand(1, 2, -1),  # both blocks read the player's features
                self._blocks,
                torch.tensor([self.t], device=device),
                self._memory,
            )
        self.t += 1
        u = update.view(-1).double().cpu().numpy()
        return reader.update_action(u[: reader.head_size], u[reader.head_size :] * self.trunk_scale, observation)

    def __repr__(self) -> str:
        weights = "" if self.weights is None else f", weights={Path(self.weights).name!r}"
        expert = "" if self.expert is None else f", expert={self.expert!r}"
        return f"LearnedAgent({self.name!r}{weights}{expert})"
