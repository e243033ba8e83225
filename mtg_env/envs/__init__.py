"""The environments: one game as a PettingZoo parallel (and AEC) env, many games as a torch vector env, the options
of both (:class:`EnvConfig`) and their checkpoints. A layer above the engine (:mod:`mtg_env.engine`) and below the
wrappers and players.
"""

from mtg_env.envs.config import EnvConfig
from mtg_env.envs.parallel import FEATURES, NUM_FEATURES, MultiTaskGameEnv, env, parallel_env
from mtg_env.envs.vector import VectorGameEnv, vector_env

__all__ = [
    "FEATURES",
    "NUM_FEATURES",
    "EnvConfig",
    "MultiTaskGameEnv",
    "VectorGameEnv",
    "env",
    "parallel_env",
    "vector_env",
]
