"""The env in PettingZoo's AEC API (agents act in turn): PettingZoo's ``parallel_to_aec`` conversion of the parallel
env, order enforcement included, with every action checked as its agent gives it (see :func:`mtg_env.env`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pettingzoo import AECEnv
from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

if TYPE_CHECKING:
    from mtg_env.envs.parallel import MultiTaskGameEnv


class CheckedAEC(parallel_to_aec_wrapper):
    """PettingZoo's parallel-to-AEC conversion, with each action checked when its agent gives it: a refused
    action is not kept (the agent stays selected and may act again), and a step the game refuses (e.g. a consensus
    callable that raises) leaves the turn order and the other agents' actions as they were."""

    env: MultiTaskGameEnv

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if not (self.terminations[agent] or self.truncations[agent]):
            self.env.check_action(agent, action)
        try:
            super().step(action)
        except Exception:
            self._actions.pop(agent, None)
            raise


def aec_env(parallel: MultiTaskGameEnv) -> AECEnv:
    """``parallel`` in the AEC API, order enforced and every action checked when given."""
    return OrderEnforcingWrapper(CheckedAEC(parallel))
