"""Learned meta-agents: update rules meta-trained on the engine, each a PettingZoo :class:`~agents.base.Policy`
(:class:`LearnedAgent`) and a batched torch form (:class:`EngineDriver`) acting on the engine's outputs."""

from agents.learned.batched import EngineDriver
from agents.learned.checkpoint import (
    GENERAL,
    LEARNED,
    learned_agent,
    load_rule,
    new_rule,
    pretrained_path,
    save_rule,
    shipped,
    with_options,
)
from agents.learned.policy import LearnedAgent
from agents.learned.portfolio import PortfolioConfig, PortfolioRule
from agents.learned.rules import (
    LSTMRule,
    LSTMRuleConfig,
    MLPRule,
    MLPRuleConfig,
    StepRule,
    StepRuleConfig,
)

__all__ = [
    "GENERAL",
    "LEARNED",
    "EngineDriver",
    "LSTMRule",
    "LSTMRuleConfig",
    "LearnedAgent",
    "MLPRule",
    "MLPRuleConfig",
    "PortfolioConfig",
    "PortfolioRule",
    "StepRule",
    "StepRuleConfig",
    "learned_agent",
    "load_rule",
    "new_rule",
    "pretrained_path",
    "save_rule",
    "shipped",
    "with_options",
]
