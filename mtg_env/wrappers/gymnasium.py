"""Views of the game for learning libraries.

- :class:`UnitActions`: the same parallel env with every action Box rescaled to [−1, 1], the range
  Gaussian policies (SB3, RLlib, TorchRL) start in. Without it a policy whose initial mean (0) lies outside
  a `step_size` Box such as [−7, −1.5] is always clipped to one end and learns nothing.
- :class:`JointControlEnv`: a Gymnasium single-agent view, one controller setting every task's action at
  once (a joint ``Box``), for single-agent algorithms and hyper-parameter search.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo.utils import BaseParallelWrapper

from mtg_env.engine.layout import from_unit
from mtg_env.envs.parallel import MultiTaskGameEnv


class UnitActions(BaseParallelWrapper):
    """A parallel env whose actions are in [−1, 1], mapped affinely onto the wrapped env's Boxes.

    Actions outside [−1, 1] are clipped (as the policy's own clipping would). Everything else, the
    observations, rewards and the wrapped env's methods (``state``, ``metrics``, ...), passes through.
    """

    def __init__(self, env: Any):
        super().__init__(env)
        self._low = {a: env.action_space(a).low.astype(np.float64) for a in env.possible_agents}
        self._high = {a: env.action_space(a).high.astype(np.float64) for a in env.possible_agents}
        self._unit = {
            a: spaces.Box(-1.0, 1.0, env.action_space(a).shape, env.action_space(a).dtype) for a in env.possible_agents
        }

    def action_space(self, agent: str) -> spaces.Box:
        return self._unit[agent]

    def to_env_action(self, agent: str, action: Any) -> np.ndarray:
        """The wrapped env's action for a [−1, 1] action."""
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return from_unit(unit, self._low[agent], self._high[agent]).astype(self.env.action_space(agent).dtype)

    def step(self, actions: dict[str, Any]) -> Any:
        return self.env.step({a: self.to_env_action(a, x) for a, x in actions.items()})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.env, name)


class JointControlEnv(gymnasium.Env):
    """One controller for all tasks of a :class:`MultiTaskGameEnv`.

    Observation: every agent's observation concatenated in ``possible_agents`` order. Action: every agent's
    action concatenated in the same order (a joint ``Box``), split back per agent. Reward: the sum of the
    agents' rewards, −L_MT on the batch (Eq. 16). The episode ends when the game ends (divergence:
    ``terminated``; ``max_cycles``: ``truncated``). ``info`` holds the game's per-agent infos under
    ``"agents"``.

    Args:
        env: A parallel env (built with :func:`mtg_env.parallel_env`), or ``None`` to build one from
            ``**kwargs``.
        **kwargs: :func:`mtg_env.parallel_env` arguments when ``env`` is ``None``.
    """

    def __init__(self, env: MultiTaskGameEnv | None = None, **kwargs: Any):
        if env is None:
            env = MultiTaskGameEnv(**kwargs)
        elif kwargs:
            raise ValueError("pass either an env or the arguments to build one, not both")
        self.game = env
        self.metadata = {**env.metadata, "render_modes": env.metadata["render_modes"]}
        self.render_mode = env.render_mode
        agents = env.possible_agents
        obs = [env.observation_space(a) for a in agents]
        act = [env.action_space(a) for a in agents]
        self.observation_space = spaces.Box(
            np.concatenate([s.low for s in obs]), np.concatenate([s.high for s in obs]), dtype=env.np_dtype
        )
        self.action_space = spaces.Box(
            np.concatenate([s.low for s in act]), np.concatenate([s.high for s in act]), dtype=env.np_dtype
        )
        self._splits = np.cumsum([s.shape[0] for s in act])[:-1]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        observations, infos = self.game.reset(seed=seed, options=options)
        return self._join(observations), {"agents": infos}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        arr = np.asarray(action, dtype=self.game.np_dtype)
        if arr.shape != self.action_space.shape:
            raise ValueError(f"joint action has shape {arr.shape}, expected {self.action_space.shape}")
        parts = np.split(arr, self._splits)
        actions = dict(zip(self.game.possible_agents, parts, strict=True))
        observations, rewards, terminations, truncations, infos = self.game.step(actions)
        return (
            self._join(observations),
            float(sum(rewards.values())),
            any(terminations.values()),
            any(truncations.values()) and not any(terminations.values()),
            {"agents": infos},
        )

    def _join(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([observations[a] for a in self.game.possible_agents])

    def render(self) -> Any:
        return self.game.render()

    def close(self) -> None:
        self.game.close()
