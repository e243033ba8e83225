"""The vector env as a Stable-Baselines3 ``VecEnv``, every task of every game one env (see ``to_sb3``).

    vec = mtg_env.wrappers.to_sb3(mtg_env.vector_env(num_games=16, suite="regression", action_mode="step_size"))
    model = PPO("MlpPolicy", vec, seed=0)            # game b plays seed 0 + b
    model.learn(20_000)

Env ``i = b · M + m`` is task m of game b: one shared policy acts for every task, as with SuperSuit's
``pettingzoo_env_to_vec_env_v1``, but B games are stepped at once by the engine. Observations ``[B · M, d]``,
actions ``[B · M, k]`` (the padded layout of :class:`~mtg_env.envs.VectorGameEnv` in ``update`` mode),
rewards ``[B · M]``; a game's end is every one of its M envs' end. Finished games reset in the same step, the
last observation in ``infos[i]["terminal_observation"]``, as SB3 expects.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn
from torch import Tensor

from mtg_env import engine
from mtg_env.envs.vector import VectorGameEnv

__all__ = ["SB3GameVecEnv"]


class SB3GameVecEnv(VecEnv):
    """A :class:`~mtg_env.envs.VectorGameEnv` as an SB3 ``VecEnv`` of ``B · M`` envs (see the module docstring).

    Args:
        venv: The games; this adapter resets and steps them (``venv.state`` stays current).

    Spaces: ``observation_space`` is one task's ``Box`` of shape ``(d,)`` (``venv.observation_low`` and ``_high``):
    the single env's in ``step_size`` mode (every task has the same), in ``update`` mode the padded layout
    (gradients within the dtype's range, the features within theirs). ``action_space`` is
    ``Box(venv.action_low, venv.action_high, (k,))`` in float32; actions are clipped into it before the step (SB3
    clips too, but rounding can leave a value a hair outside).

    Seeding: :meth:`seed` (which ``PPO(seed=...)`` calls) seeds the next :meth:`reset`: game b, that is envs
    ``b · M`` to ``b · M + M − 1``, plays episode 0 of ``seed + b``, the episode ``parallel_env`` plays after
    ``reset(seed=seed + b)``. A reset without a new seed plays every game's next episode (random seeds on the
    very first reset). Attributes (``get_attr``, ``env_method``) are those of ``venv.single``, the one-game env
    of the configuration every env shares (``venv.config``).
    """

    def __init__(self, venv: VectorGameEnv):
        if not isinstance(venv, VectorGameEnv):
            raise TypeError(f"venv must be a mtg_env.envs.VectorGameEnv, got {type(venv).__name__}")
        self.venv = venv
        self.num_games, self.num_tasks = venv.num_games, venv.num_tasks
        # One task's Box in the padded layout (mtg_env.engine.layout): every task has the same.
        obs_low, obs_high = venv.observation_low.cpu().numpy(), venv.observation_high.cpu().numpy()
        observation_space = spaces.Box(obs_low, obs_high, dtype=obs_low.dtype)
        # Actions are clipped in the games' dtype: in float64 games a float32 bound can round above the true one.
        self._low, self._high = venv.action_low.cpu().numpy(), venv.action_high.cpu().numpy()
        action_space = spaces.Box(self._low.astype(np.float32), self._high.astype(np.float32), dtype=np.float32)
        self._actions: np.ndarray | None = None
        super().__init__(self.num_games * self.num_tasks, observation_space, action_space)

    # ------------------------------------------------------------------------------ episodes
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset`: game b (envs ``b·M`` to ``b·M + M − 1``) gets ``seed + b``.

        Args:
            seed: An int in [0, 2**63 − B]; ``None`` draws one (as SB3's ``VecEnv.seed`` does).

        Returns:
            The seed of every env (the M envs of a game share their game's).
        """
        if seed is None:  # numpy's global generator, as SB3's VecEnv.seed: set_random_seed makes it reproducible
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))  # noqa: NPY002
        game_seeds = self.venv.seeds_for(seed)  # validates: an int, seed + B − 1 below 2**63
        self._seeds = [game_seeds[i // self.num_tasks] for i in range(self.num_envs)]
        return self._seeds

    def reset(self) -> VecEnvObs:
        """Start every game: episode 0 of the seed set by :meth:`seed` (or in ``_seeds``), else the next episode.

        Returns:
            Observations ``[B · M, d]``.
        """
        if any(self._options):
            raise ValueError("reset options are not supported by the vector env (set_options must stay empty)")
        m, venv = self.num_tasks, self.venv
        game_seeds: list[int | None] = []
        for b in range(self.num_games):
            seeds = set(self._seeds[b * m : (b + 1) * m])
            if len(seeds) > 1:
                raise ValueError(
                    f"_seeds must give the {m} envs of game {b} (envs {b * m}..{(b + 1) * m - 1}) one seed, got {seeds}"
                )
            game_seeds.append(seeds.pop())
        given = [s is not None for s in game_seeds]
        if venv._state is None or all(given):
            # Games without a seed on the very first reset draw one at random (as venv.reset(seed=None) does).
            seeds_now = [s if s is not None else secrets.randbits(63) for s in game_seeds]
            obs, infos = venv.reset(seed=seeds_now)
            losses = infos["losses"]
        else:
            obs, losses = self._reset_rest(game_seeds)
        self._reset_seeds()
        self._reset_options()
        losses_np = losses.detach().cpu().numpy().reshape(-1)
        self.reset_infos = [{"loss": float(loss)} for loss in losses_np]
        return self._flat(obs)

    def _reset_rest(self, game_seeds: list[int | None]) -> tuple[Tensor, Tensor]:
        """Reset started games: those with a seed to its episode 0, the others to their next episode."""
        venv, device = self.venv, self.venv.device
        given = torch.tensor([s is not None for s in game_seeds], dtype=torch.bool, device=device)
        seeds = torch.tensor([0 if s is None else s for s in game_seeds], dtype=torch.int64, device=device)
        obs = torch.empty(self.num_games, self.num_tasks, venv.observation_size, dtype=venv.dtype, device=device)
        losses = torch.empty(self.num_games, self.num_tasks, dtype=venv.dtype, device=device)
        state = venv.state
        for mask, mask_seeds in ((given, seeds), (~given, None)):
            state, out = engine.reset_where(venv.game, state, mask, mask_seeds)
            if out is not None:
                obs[mask], losses[mask] = venv._observe(out), out.losses
        venv._state = state
        return obs, losses

    def step_async(self, actions: np.ndarray) -> None:
        """Keep the actions ``[B · M, k]`` for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every game (finished games reset in the same step).

        Returns:
            ``observations [B · M, d]``, ``rewards [B · M]`` float32, ``dones [B · M]`` and one info dict per
            env: an env whose game ended holds ``terminal_observation`` (``[d]``) and ``TimeLimit.truncated``
            (the game reached ``max_cycles`` without diverging).
        """
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions); call vec.step(actions)")
        venv = self.venv
        b, m, k = self.num_games, self.num_tasks, venv.action_size
        actions = np.asarray(self._actions)
        self._actions = None
        if actions.shape != (self.num_envs, k):
            raise ValueError(
                f"actions must have shape ({self.num_envs}, {k}) = (games · tasks, action size), got {actions.shape}"
            )
        # np.clip keeps NaN, so the venv still refuses non-finite actions (with the game and task named).
        clipped = np.clip(actions.astype(self._low.dtype), self._low, self._high)
        actions_t = torch.as_tensor(clipped).reshape(b, m, k).to(venv.device, venv.dtype)
        obs, rewards, terminated, truncated, infos = venv.step(actions_t)
        done = (terminated | truncated).cpu().numpy()
        dones = np.repeat(done, m)
        env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.any():
            final = self._flat(infos["final_observation"])
            time_limit = (truncated & ~terminated).cpu().numpy()
            for i in np.flatnonzero(dones):
                env_infos[i]["terminal_observation"] = final[i].copy()
                env_infos[i]["TimeLimit.truncated"] = bool(time_limit[i // m])
        rewards_np = rewards.detach().cpu().numpy().reshape(-1).astype(np.float32)
        return self._flat(obs), rewards_np, dones, env_infos

    def _flat(self, values: Tensor) -> np.ndarray:
        """``[B, M, d]`` tensor → ``[B · M, d]`` numpy array (a copy: the engine's tensors stay the engine's)."""
        return values.detach().cpu().numpy().reshape(self.num_envs, -1).copy()

    def close(self) -> None:
        """Nothing to release: the games are tensors (``venv`` stays usable)."""
        self._actions = None

    # ------------------------------------------------------------------------------ attributes
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of ``venv.single`` (the configuration every env shares), once per env in ``indices``."""
        value = getattr(self.venv.single, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of ``venv.single``, the configuration all envs share: ``indices`` must be all envs.

        The game already built (``venv.game``) is frozen: options such as ``max_cycles`` do not change by this.
        """
        selected = self._indices(indices)
        if sorted(selected) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) must set every env (indices=None): the {self.num_envs} envs share one "
                f"configuration, got indices {selected}"
            )
        setattr(self.venv.single, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of ``venv.single`` (the shared configuration), one result per env in ``indices``."""
        method = getattr(self.venv.single, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Always ``False``: the envs are slots of the engine's batch, not gymnasium envs with wrappers."""
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        selected: Iterable[int] = self._get_indices(indices)
        out = [int(i) for i in selected]
        bad = [i for i in out if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"indices must lie in [0, {self.num_envs}), got {bad}")
        return out

    def __repr__(self) -> str:
        return f"SB3GameVecEnv({self.venv!r}, num_envs={self.num_envs})"
