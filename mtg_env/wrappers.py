"""Views of the game for tools that are not multi-agent.

:class:`JointControlEnv` is a Gymnasium single-agent view: one controller sets every task's action at once
(a joint ``Box``), for single-agent algorithms and hyper-parameter search.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from mtg_env.env import MultiTaskGameEnv


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
