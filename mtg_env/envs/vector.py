"""Many games at once: the engine behind a batched, torch-in torch-out environment, with autoreset.

    venv = mtg_env.vector_env(num_games=1024, suite="regression", action_mode="step_size")
    obs, infos = venv.reset(seed=0)                 # obs [B, M, d]; game b is seeded seed + b
    obs, rewards, terminated, truncated, infos = venv.step(actions)   # actions [B, M, k]

Game b of the vector env plays exactly the episode that ``parallel_env`` (same options) plays with the same
seed. Finished games reset in the same step (SB3's convention): the returned observation is the new
episode's first, the last one is in ``infos["final_observation"]`` (rows of finished games), and the game
plays its seed's next episode. Adapters (a layer above, :mod:`mtg_env.wrappers`): :func:`~mtg_env.wrappers.to_torchrl`
(a TorchRL ``EnvBase``) and :func:`~mtg_env.wrappers.to_sb3` (an SB3 ``VecEnv`` with every task of every game as
one env, for one shared policy).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from mtg_env import engine
from mtg_env.engine import layout
from mtg_env.engine.game import Game
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.envs.config import EnvConfig
from mtg_env.envs.parallel import MultiTaskGameEnv
from mtg_env.rng import check_seed


class VectorGameEnv:
    """B games of one configuration, stepped together by the engine (see the module docstring).

    Args:
        num_games: B.
        **kwargs: The arguments of :func:`mtg_env.parallel_env` (suite, consensus, action_mode, max_cycles,
            dtype, device, max_update, log_step_range, divergence_reward, suite options, ...).

    Observations ``[B, M, d]``: the 8 features in ``step_size`` mode; in ``update`` mode each task's head
    gradient padded with zeros to the largest head, then its trunk gradient, then the features
    (``d = max_head + n + 8``). Actions ``[B, M, k]`` in the same layout: ``k = 2`` log step sizes, or
    ``max_head + n`` (a task's head update in its first h_m entries; the padding is ignored). The layout and its
    bounds (``observation_low``/``_high``, ``action_low``/``_high``) are :mod:`mtg_env.engine.layout`'s.
    ``VectorGameEnv.from_config(B, cfg)`` takes the options as one :class:`~mtg_env.envs.config.EnvConfig`.
    """

    def __init__(self, num_games: int, **kwargs: Any):
        _check_num_games(num_games)
        self._setup(num_games, EnvConfig.from_kwargs(**kwargs))

    @classmethod
    def from_config(cls, num_games: int, config: EnvConfig) -> VectorGameEnv:
        """``num_games`` games of ``config`` (the same as ``VectorGameEnv(num_games, **config.kwargs())``)."""
        if not isinstance(config, EnvConfig):
            raise TypeError(f"config must be a mtg_env.EnvConfig, got {type(config).__name__}")
        _check_num_games(num_games)
        venv = cls.__new__(cls)
        venv._setup(num_games, config)
        return venv

    def _setup(self, num_games: int, config: EnvConfig) -> None:
        if config.render_mode is not None:
            raise ValueError("render_mode is not supported by the vector env; render a parallel_env instead")
        #: Every option of these games, checked (see :class:`EnvConfig`).
        self.config = config
        self.game: Game = config.make_game()
        self.num_games = num_games
        self.num_tasks = self.game.num_tasks
        self.device, self.dtype = self.game.device, self.game.dtype
        mode, slot, n = config.action_mode, self.game.max_head, self.game.trunk_size
        self.action_size = layout.action_size(mode, slot, n)
        self.observation_size = layout.observation_size(mode, slot, n)
        low, high = config.action_bounds()
        #: Bounds of one task's action ``[k]`` (as the single env's Box, in the padded layout).
        self.action_low = torch.full((self.action_size,), low, dtype=self.dtype, device=self.device)
        self.action_high = torch.full((self.action_size,), high, dtype=self.dtype, device=self.device)
        #: Bounds of one task's observation ``[d]`` (the padded layout).
        self.observation_low, self.observation_high = layout.observation_bounds(mode, slot, n, self.dtype, self.device)
        self._state: GameState | None = None

    @cached_property
    def single(self) -> MultiTaskGameEnv:
        """One game of this configuration as a parallel env, sharing this env's :class:`~mtg_env.engine.Game`
        (built on first use: for its per-agent spaces and queries, e.g. SB3's ``get_attr`` and ``env_method``)."""
        return MultiTaskGameEnv.from_config(self.config, self.game)

    # ------------------------------------------------------------------------------ episodes
    def reset(self, seed: int | list[int] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Start every game: game b gets ``seed + b`` (an int), ``seed[b]`` (a list of B ints) or a random seed.

        Returns ``(observations [B, M, d], infos)`` with ``infos["losses"] [B, M]``, ``infos["seeds"] [B]``, and the
        game's constants that the single env's infos carry, one per game: ``linear_consensus [B]``,
        ``min_bounded_consensus [B]`` and ``stochastic_gradients [B]`` (bools, the game's properties of those names)
        and, where the consensus rule has a unanimity gain, ``sum_scale [B]`` (:attr:`~mtg_env.engine.Game.sum_scale`);
        and ``trunk_grad_norm_mean [B]``, each game's mean over its players of ‖∇_Ψ ℓ_m‖
        (:func:`mtg_env.engine.trunk_grad_norm_mean`; also after every step).
        """
        seeds = self.seeds_for(seed)
        self._state, out = engine.reset(self.game, seeds)
        b, device = self.num_games, self.game.device
        infos = {
            "losses": out.losses.clone(),
            "seeds": self._state.seeds.clone(),
            "linear_consensus": torch.full((b,), self.game.linear_consensus, dtype=torch.bool, device=device),
            "min_bounded_consensus": torch.full((b,), self.game.min_bounded_consensus, dtype=torch.bool, device=device),
            "stochastic_gradients": torch.full((b,), self.game.stochastic_gradients, dtype=torch.bool, device=device),
            "trunk_grad_norm_mean": engine.trunk_grad_norm_mean(self._state.jacobian),
        }
        if self.game.sum_scale is not None:
            infos["sum_scale"] = torch.full((b,), self.game.sum_scale, dtype=self.game.dtype, device=device)
        return self._observe(out), infos

    def seeds_for(self, seed: int | list[int] | None) -> list[int]:
        """The B game seeds that ``reset(seed=...)`` uses (validated: ints in [0, 2**63)); random for ``None``."""
        b = self.num_games
        if seed is None:
            return [secrets.randbits(63) for _ in range(b)]
        if isinstance(seed, (list, tuple)):
            if len(seed) != b:
                raise ValueError(f"seed must list one seed per game ({b}), got {len(seed)}")
            return [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
        first = check_seed(seed)
        if first + b - 1 >= 2**63:
            raise ValueError(f"seed + num_games - 1 must stay below 2**63, got seed {first}")
        return list(range(first, first + b))

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Step every game; finished games reset in the same call (see the module docstring).

        Args:
            actions: ``[B, M, k]`` inside the action bounds (finite).

        Returns:
            ``observations [B, M, d]``, ``rewards [B, M]``, ``terminated [B]`` (diverged, or a loss reached the
            consensus rule's floor: ``infos["out_of_domain"]``), ``truncated [B]``, and ``infos``: ``losses [B, M]``
            (before any reset), ``t [B]``, ``done [B]``, ``out_of_domain [B]``, ``trunk_grad_norm_mean [B]`` (of the
            observations returned: a finished game's fresh start), and, where a game finished,
            ``final_observation [B, M, d]`` (rows of finished games; others zero).

        Raises:
            ValueError: for actions outside the bounds, or a consensus rule that refuses a game (naming the game);
                then no game has changed.
        """
        if self._state is None:
            raise RuntimeError("step() called before reset(); call venv.reset(seed=...) first")
        # RL steps are not unrolls: no autograd graph across steps (mtg_env.engine.step differentiates through them).
        actions = self._check(actions.detach() if isinstance(actions, Tensor) else actions)
        # The engine is pure: a step that raises (a rule refusing one game) leaves every game as it was.
        state, out = engine.step(self.game, self._state, self.engine_actions(actions))
        obs = self._observe(out)
        terminated = out.diverged | out.out_of_domain
        done = terminated | out.truncated
        infos: dict[str, Tensor] = {
            "losses": out.losses.clone(),
            "t": state.t.clone(),
            "done": done,
            "out_of_domain": out.out_of_domain,
        }
        if bool(done.any()):
            infos["final_observation"] = torch.where(done[:, None, None], obs, torch.zeros_like(obs))
            state, fresh = engine.reset_where(self.game, state, done)
            assert fresh is not None
            obs = obs.clone()
            obs[done] = self._observe(fresh)
        self._state = replace(state, done=torch.zeros_like(state.done))
        infos["trunk_grad_norm_mean"] = engine.trunk_grad_norm_mean(state.jacobian)  # of the observations returned
        return obs, out.rewards, terminated, out.truncated, infos

    def engine_actions(self, actions: Tensor) -> Tensor:
        """The engine's actions for (checked) actions of this env: ``step_size`` actions in [−1, 1] become log
        step sizes in ``log_step_range`` (as in the single env); other actions pass through."""
        if self.config.action_mode == "step_size" and self.config.step_size_units == "unit":
            return layout.unit_to_log_steps(actions, self.config.log_step_range)
        return actions

    def _check(self, actions: Tensor) -> Tensor:
        expected = (self.num_games, self.num_tasks, self.action_size)
        if not isinstance(actions, Tensor):
            raise TypeError(f"actions must be a torch.Tensor of shape {expected}, got {type(actions).__name__}")
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"actions must have shape {expected} = (games, tasks, action size), got {tuple(actions.shape)}"
            )
        a = actions.to(self.device, self.dtype)
        ok = torch.isfinite(a) & (a >= self.action_low) & (a <= self.action_high)
        if not bool(ok.all()):
            b, m, i = (int(v) for v in (~ok).nonzero()[0])
            value = float(a[b, m, i])
            raise ValueError(
                f"action of game {b}, task_{m} at index {i} is {value}, outside "
                f"[{float(self.action_low[i])}, {float(self.action_high[i])}] or not finite; clip it to "
                "(venv.action_low, venv.action_high)"
            )
        return a

    def _observe(self, out: StepOutput) -> Tensor:
        if self.config.action_mode == "step_size":
            return out.features
        game = self.game
        return layout.observations(out.features, out.head_grads, out.jacobian, game.padded_head_index, game.max_head)

    # ------------------------------------------------------------------------------ queries
    @property
    def state(self) -> GameState:
        """The engine's state of all games."""
        if self._state is None:
            raise RuntimeError("the vector env has no games yet; call venv.reset(seed=...) first")
        return self._state

    def __repr__(self) -> str:
        return f"VectorGameEnv(num_games={self.num_games}, {self.single!r})"


def _check_num_games(num_games: Any) -> None:
    if isinstance(num_games, bool) or not isinstance(num_games, int) or num_games < 1:
        raise ValueError(f"num_games must be an int >= 1, got {num_games!r}")


def vector_env(num_games: int, **kwargs: Any) -> VectorGameEnv:
    """``num_games`` games at once, torch in and out; takes :func:`mtg_env.parallel_env`'s arguments."""
    return VectorGameEnv(num_games, **kwargs)
