"""Views of the game for learning libraries: a layer above the envs (:mod:`mtg_env.envs`), below the players.

- :class:`UnitActions`, :class:`JointControlEnv` (:mod:`mtg_env.wrappers.gymnasium`): PettingZoo and Gymnasium
  views of one game.
- :func:`to_sb3` (:mod:`mtg_env.wrappers.sb3`) and :func:`to_torchrl` (:mod:`mtg_env.wrappers.torchrl`): the
  vector env as a Stable-Baselines3 ``VecEnv`` or a TorchRL ``EnvBase``; their libraries are imported only when
  called (``pip install 'mtg-env[marl]'``).
"""

from __future__ import annotations

from typing import Any

from mtg_env.envs.vector import VectorGameEnv
from mtg_env.wrappers.gymnasium import JointControlEnv, UnitActions


def to_torchrl(venv: VectorGameEnv) -> Any:
    """The vector env as a TorchRL ``EnvBase`` with ``batch_size=[B]`` (needs ``pip install mtg-env[marl]``);
    see :mod:`mtg_env.wrappers.torchrl`."""
    try:
        from mtg_env.wrappers.torchrl import TorchRLGameEnv
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError("to_torchrl needs TorchRL: pip install 'mtg-env[marl]'") from err
    return TorchRLGameEnv(venv)


def to_sb3(venv: VectorGameEnv) -> Any:
    """The vector env as a Stable-Baselines3 ``VecEnv`` with every task of every game as one of its B · M envs
    (one shared policy); needs ``pip install mtg-env[marl]``; see :mod:`mtg_env.wrappers.sb3`."""
    try:
        from mtg_env.wrappers.sb3 import SB3GameVecEnv
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ImportError("to_sb3 needs Stable-Baselines3: pip install 'mtg-env[marl]'") from err
    return SB3GameVecEnv(venv)


__all__ = ["JointControlEnv", "UnitActions", "to_sb3", "to_torchrl"]
