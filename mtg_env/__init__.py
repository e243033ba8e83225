"""mtg_env: multi-task learning with a shared trunk as a PettingZoo parallel environment.

Each task is an agent that owns its head, its action is a parameter update and its reward its negative
loss; the shared trunk moves by a consensus rule of the agents' proposals (Lee, "Multi-Task Deep
Learning Games", Axioms 2023).
"""

from mtg_env.coalitions import CoalitionAnalysis
from mtg_env.coalitions import analyse as analyse_coalitions
from mtg_env.consensus import CONSENSUS_RULES, RULE_TABLE, ConsensusRule, ConsensusWarning, consensus_rule
from mtg_env.engine import Game, GameState, NoiseSpec, RegSpec, StepOutput
from mtg_env.envs import FEATURES, EnvConfig, MultiTaskGameEnv, VectorGameEnv, env, parallel_env, vector_env
from mtg_env.suites import (
    SUITES,
    DigitsSuite,
    ModuleSuite,
    MultiDigits,
    QuadraticSuite,
    RegressionSuite,
    TaskSpec,
    TaskSuite,
    Toy2DSuite,
    make_suite,
)

__version__ = "0.1.0"

__all__ = [
    "CONSENSUS_RULES",
    "FEATURES",
    "RULE_TABLE",
    "SUITES",
    "CoalitionAnalysis",
    "ConsensusRule",
    "ConsensusWarning",
    "DigitsSuite",
    "EnvConfig",
    "Game",
    "GameState",
    "ModuleSuite",
    "MultiDigits",
    "MultiTaskGameEnv",
    "NoiseSpec",
    "QuadraticSuite",
    "RegSpec",
    "RegressionSuite",
    "StepOutput",
    "TaskSpec",
    "TaskSuite",
    "Toy2DSuite",
    "VectorGameEnv",
    "analyse_coalitions",
    "consensus_rule",
    "env",
    "make_suite",
    "parallel_env",
    "vector_env",
]
