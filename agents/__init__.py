"""Players of the multi-task game: the paper's gradient rules and adaptive ones, and a runner."""

from agents.adaptive import AdamAgent, RMSpropAgent
from agents.base import ObservationReader, Policy, PolicyWarning
from agents.gradient import SCHEDULES, GradientAgent, step_size
from agents.momentum import MomentumAgent
from agents.runner import AGENTS, History, make_agents, run_episode
from agents.selfish import SelfishAgent

__all__ = [
    "AGENTS",
    "SCHEDULES",
    "AdamAgent",
    "GradientAgent",
    "History",
    "MomentumAgent",
    "ObservationReader",
    "Policy",
    "PolicyWarning",
    "RMSpropAgent",
    "SelfishAgent",
    "make_agents",
    "run_episode",
    "step_size",
]
