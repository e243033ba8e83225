"""The vector env as a TorchRL ``EnvBase``: B games as one env of ``batch_size=[B]``.

    env = mtg_env.wrappers.to_torchrl(mtg_env.vector_env(num_games=64, suite="regression", action_mode="step_size"))
    env.set_seed(0)                                  # game b plays seed 0 + b
    data = env.rollout(200, policy, break_when_any_done=False)

Keys: ``"observation"`` ``[B, M, d]``, ``"action"`` ``[B, M, k]``, ``"reward"`` ``[B, M, 1]`` (one per task,
the layout of TorchRL's multi-agent modules such as ``MultiAgentMLP``) and ``"done"``, ``"terminated"``
(diverged, or out of the consensus rule's domain), ``"truncated"`` (``max_cycles``) ``[B, 1]``, one per game.
Unlike :meth:`VectorGameEnv.step`, ``_step`` never resets a game: TorchRL resets finished games through ``_reset``
with a ``"_reset"`` mask (``rollout(..., break_when_any_done=False)`` and the collectors do it), and a reset game
plays its seed's next episode. Drive the games through this env only: it caches the last observation of every game.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from mtg_env import engine
from mtg_env.engine.state import GameState
from mtg_env.envs.vector import VectorGameEnv

__all__ = ["TorchRLGameEnv"]

#: Actions this far beyond a bound (a fraction of the bound's width) are snapped onto it rather than refused:
#: TanhNormal's affine map onto [low, high] can overshoot a bound by a rounding error.
_SNAP_FRACTION = 1e-5


class TorchRLGameEnv(EnvBase):
    """A :class:`~mtg_env.envs.VectorGameEnv` as a batched TorchRL env (see the module docstring).

    Args:
        venv: The games. The env steps them through :mod:`mtg_env.engine` and keeps ``venv.state`` current.
        seed: Seed of the first reset (game b gets ``seed + b``), as :meth:`set_seed` would set it. Without
            one the first reset draws a random seed per game, unless ``set_seed`` is called first.

    Seeding: :meth:`set_seed` (``_set_seed``) fixes the seeds of the next reset: every game it resets starts
    episode 0 of ``seed + b``. A reset without a new seed plays each reset game's next episode, so a
    sequence of rollouts after one ``set_seed`` is reproducible.
    """

    def __init__(self, venv: VectorGameEnv, seed: int | None = None):
        if not isinstance(venv, VectorGameEnv):
            raise TypeError(f"venv must be a mtg_env.envs.VectorGameEnv, got {type(venv).__name__}")
        super().__init__(device=venv.device, batch_size=torch.Size([venv.num_games]))
        self.venv = venv
        b, m, d, k = venv.num_games, venv.num_tasks, venv.observation_size, venv.action_size
        dtype, device = venv.dtype, venv.device
        # The padded layout (mtg_env.engine.layout): gradients within the dtype's range, then the features.
        obs_low, obs_high = venv.observation_low, venv.observation_high
        self.observation_spec = Composite(
            observation=Bounded(
                low=obs_low.expand(b, m, d).clone(),
                high=obs_high.expand(b, m, d).clone(),
                shape=(b, m, d),
                dtype=dtype,
                device=device,
            ),
            shape=(b,),
            device=device,
        )
        if bool(torch.isfinite(venv.action_low).all() and torch.isfinite(venv.action_high).all()):
            self.action_spec = Bounded(
                low=venv.action_low.expand(b, m, k).clone(),
                high=venv.action_high.expand(b, m, k).clone(),
                shape=(b, m, k),
                dtype=dtype,
                device=device,
            )
        else:  # update mode without max_update: the updates are unbounded
            self.action_spec = Unbounded(shape=(b, m, k), dtype=dtype, device=device)
        self.reward_spec = Unbounded(shape=(b, m, 1), dtype=dtype, device=device)
        flag = Categorical(2, shape=(b, 1), dtype=torch.bool, device=device)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(b,), device=device
        )
        self._pending_seeds: list[int] | None = None if seed is None else venv.seeds_for(seed)
        # The last observation and end flags of every game: _step fills games it does not step (a partial
        # "_step" mask) and _reset the games it does not reset from them.
        self._obs: Tensor | None = None
        self._terminated = torch.zeros(b, dtype=torch.bool, device=device)
        self._truncated = torch.zeros(b, dtype=torch.bool, device=device)

    # ------------------------------------------------------------------------------ TorchRL API
    def _set_seed(self, seed: int | None) -> None:
        """Seed the next reset: every game it resets starts episode 0 of ``seed + b`` (``None``: no new seed)."""
        # venv.seeds_for validates the seed (an int in [0, 2**63), seed + B - 1 too) before anything changes.
        self._pending_seeds = None if seed is None else self.venv.seeds_for(seed)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        venv, b = self.venv, self.venv.num_games
        mask = tensordict.get("_reset", None) if tensordict is not None else None
        if mask is not None:
            mask = mask.reshape(b).to(device=self.device, dtype=torch.bool)
        if venv._state is None or self._obs is None or (mask is None or bool(mask.all())):
            if venv._state is None or self._obs is None or self._pending_seeds is not None:
                # First reset, or a new seed for every game: the venv's own reset (game b gets seed + b).
                obs, _ = venv.reset(seed=self._pending_seeds)
            else:  # no new seed: every game plays its seed's next episode
                obs = self._reset_games(torch.ones(b, dtype=torch.bool, device=self.device), None)
            self._terminated = torch.zeros_like(self._terminated)
            self._truncated = torch.zeros_like(self._truncated)
        else:
            seeds = None
            if self._pending_seeds is not None:
                seeds = torch.tensor(self._pending_seeds, dtype=torch.int64, device=self.device)
            obs = self._reset_games(mask, seeds)
            self._terminated = self._terminated & ~mask
            self._truncated = self._truncated & ~mask
        self._pending_seeds = None
        self._obs = obs
        return self._output(obs, None)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        venv = self.venv
        if venv._state is None or self._obs is None:
            raise RuntimeError("step() called before reset(); call env.reset() (or env.rollout(...)) first")
        actions = venv.engine_actions(self._actions(tensordict.get("action")))
        partial = tensordict.get("_step", None)
        if partial is not None:
            partial = partial.reshape(venv.num_games).to(device=self.device, dtype=torch.bool)
        state = venv._state
        if partial is None or bool(partial.all()):
            state, out = engine.step(venv.game, state, actions)
            obs = venv._observe(out)
            rewards, terminated, truncated = out.rewards, out.diverged | out.out_of_domain, out.truncated
        else:  # TorchRL's partial steps (rollout(break_when_all_done=True)): only the games still playing move
            index = partial.nonzero().flatten()
            sub, out = engine.step(venv.game, _take(state, index), actions[index])
            state = _put(state, index, sub)
            obs, terminated, truncated = self._obs.clone(), self._terminated.clone(), self._truncated.clone()
            rewards = torch.zeros(obs.shape[:2], dtype=venv.dtype, device=self.device)
            obs[index] = venv._observe(out)
            rewards[index] = out.rewards
            terminated[index], truncated[index] = out.diverged | out.out_of_domain, out.truncated
        venv._state = state
        self._obs, self._terminated, self._truncated = obs, terminated, truncated
        return self._output(obs, rewards)

    # ------------------------------------------------------------------------------ helpers
    def _reset_games(self, mask: Tensor, seeds: Tensor | None) -> Tensor:
        """Reset the games in ``mask`` (their next episode, or episode 0 of ``seeds``); all observations."""
        venv = self.venv
        state, out = engine.reset_where(venv.game, venv.state, mask, seeds)
        assert self._obs is not None
        obs = self._obs.clone()
        if out is not None:
            obs[mask] = venv._observe(out)
        venv._state = state
        return obs

    def _actions(self, action: Tensor) -> Tensor:
        """The policy's actions as the engine's: detached (RL does not differentiate through the game), cast,
        snapped onto a bound they overshoot by a rounding error, and checked (shape, range, finite)."""
        venv = self.venv
        if not isinstance(action, Tensor):
            raise TypeError(f"the 'action' entry must be a tensor of shape {tuple(self.action_spec.shape)}")
        a = action.detach().to(self.device, venv.dtype)
        low, high = venv.action_low, venv.action_high
        slack = _SNAP_FRACTION * (high - low)
        a = torch.where((a > high) & (a <= high + slack), high, a)
        a = torch.where((a < low) & (a >= low - slack), low, a)
        return venv._check(a)

    def _output(self, obs: Tensor, rewards: Tensor | None) -> TensorDict:
        done = self._terminated | self._truncated
        values: dict[str, Tensor] = {
            "observation": obs,
            "done": done.unsqueeze(-1),
            "terminated": self._terminated.unsqueeze(-1).clone(),
            "truncated": self._truncated.unsqueeze(-1).clone(),
        }
        if rewards is not None:
            values["reward"] = rewards.unsqueeze(-1)
        return TensorDict(values, batch_size=self.batch_size, device=self.device)

    def __repr__(self) -> str:
        return f"TorchRLGameEnv({self.venv!r})"


def _take(state: GameState, index: Tensor) -> GameState:
    """The games ``index`` of ``state`` as a state of their own (the rule's state included; a stateful callable's
    objects shared, not copied: the engine never moves them)."""
    tensors: dict[str, Any] = {name: value[index] for name, value in state.tensors().items()}
    objects = state.rule_objects
    if len(objects) == state.batch_size:
        objects = tuple(objects[i] for i in index.tolist())
    return replace(state.with_tensors(tensors), rule_objects=objects)


def _put(state: GameState, index: Tensor, sub: GameState) -> GameState:
    """``state`` with the games ``index`` replaced by ``sub`` (the rule's state included; a stateful callable's
    objects too, where there is one per game)."""
    merged: dict[str, Any] = {}
    sub_tensors = sub.tensors()
    for name, value in state.tensors().items():
        new_value = value.clone()
        new_value[index] = sub_tensors[name].to(new_value.dtype)
        merged[name] = new_value
    objects = state.rule_objects
    if len(objects) == state.batch_size and len(sub.rule_objects) == len(index):
        listed = list(objects)
        for i, b in enumerate(index.tolist()):
            listed[b] = sub.rule_objects[i]
        objects = tuple(listed)
    return replace(state.with_tensors(merged), rule_objects=objects)
