"""One game's layout on the numpy side: every agent's Boxes, actions in (checked, then the engine's tensors) and
observations out. The layout itself (what each number means, its bounds and units) is
:mod:`mtg_env.engine.layout`'s; this module applies it to the agents of one game.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from mtg_env._args import is_real
from mtg_env.engine import layout
from mtg_env.engine.codec import decode
from mtg_env.engine.game import Game
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.envs.config import EnvConfig


class AgentSpaces:
    """The agents of one game and their spaces (each Box the same object on every call).

    ``update`` mode with heads of unequal sizes and ``pad_heads``: every agent's head part is padded to the largest
    head, so all agents share one observation and one action shape (SuperSuit, TorchRL's groups and one shared
    policy expect that). The padding of an observation is zero; the padding of an action is ignored.
    """

    def __init__(self, config: EnvConfig, game: Game):
        self.config = config
        self.trunk_size = game.trunk_size
        self.device = game.device
        self.np_dtype: Any = np.float32 if game.dtype == torch.float32 else np.float64
        self.agents = tuple(f"task_{m}" for m in range(game.num_tasks))
        self.index = {a: m for m, a in enumerate(self.agents)}
        self.head_sizes = game.head_sizes
        self.offsets = game.suite.head_offsets
        uniform = len(set(self.head_sizes)) == 1
        pad = config.pad_heads and config.action_mode == "update" and not uniform
        widest = max(self.head_sizes) if self.head_sizes else 0
        #: Length of each agent's head part (its head, or the largest head when padded).
        self.slots = tuple(widest if pad else h for h in self.head_sizes)
        #: Actions of all agents stack into one [M, k] array unless update-mode heads differ in size; then they
        #: are concatenated and split by ``offsets`` (one gather each).
        self.stackable = config.action_mode == "step_size" or uniform or pad
        self._padded_index, self._max_head = game.padded_head_index, game.max_head
        #: Every head slot is the widest head (padded, or heads of one size): observations are the padded layout.
        self._every_slot_full = all(slot == game.max_head for slot in self.slots)
        low, high = config.action_bounds()
        self.observation_spaces: dict[str, spaces.Box] = {}
        self.action_spaces: dict[str, spaces.Box] = {}
        n, mode = self.trunk_size, config.action_mode
        for agent, slot in zip(self.agents, self.slots, strict=True):
            o_low, o_high = layout.observation_bounds(mode, slot, n, game.dtype)
            self.observation_spaces[agent] = spaces.Box(o_low.numpy(), o_high.numpy(), dtype=self.np_dtype)
            shape = (layout.action_size(mode, slot, n),)
            self.action_spaces[agent] = spaces.Box(low, high, shape, self.np_dtype)
        f_low, f_high = (b.numpy() for b in layout.feature_bounds(game.dtype))
        m = game.num_tasks
        self.state_space = spaces.Box(np.tile(f_low, m), np.tile(f_high, m), dtype=self.np_dtype)
        # Every agent's Box has these bounds, in the Box's own dtype: an action clipped to the Box passes the range
        # check whatever numpy's casting rules (numpy 1.x compares a float32 array with a Python float in float64).
        first = self.action_spaces[self.agents[0]]
        self.action_low, self.action_high = first.low.flat[0], first.high.flat[0]

    # ------------------------------------------------------------------------------------------ actions
    def step_size_action(self, alpha: float, beta: float | None = None) -> np.ndarray:
        """The ``step_size``-mode action that plays head step α and trunk step β (default α); see
        :meth:`mtg_env.MultiTaskGameEnv.step_size_action`."""
        cfg = self.config
        if cfg.action_mode != "step_size":
            raise ValueError("step_size_action is for action_mode='step_size'; in update mode the action is the update")
        steps = [alpha, alpha if beta is None else beta]
        if not all(is_real(v) and 0 < v < float("inf") for v in steps):
            raise ValueError(f"step sizes must be finite numbers > 0, got alpha={alpha!r}, beta={beta!r}")
        log = np.log(np.asarray(steps, dtype=np.float64))
        lo, hi = cfg.log_step_range
        if not (lo <= log.min() and log.max() <= hi):
            raise ValueError(
                f"step sizes {steps} (log {log.round(3).tolist()}) are outside log_step_range {[lo, hi]}: "
                f"steps from {math.exp(lo):.3g} to {math.exp(hi):.3g}; set log_step_range=... to widen it"
            )
        if cfg.step_size_units == "log":
            return np.clip(log, lo, hi).astype(self.np_dtype)
        # Into [-1, 1]; the clip only absorbs round-off of the affine map at the ends.
        return np.clip(layout.log_steps_to_unit(log, cfg.log_step_range), -1.0, 1.0).astype(self.np_dtype)

    def parse(
        self, actions: Mapping[str, Any], live: Sequence[str], state: GameState
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Check every live agent's action, then make them the engine's actions of one game (``state``: the game's,
        whose gradients relative-unit updates answer)."""
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict {{agent: action}}, got {type(actions).__name__}")
        unknown = [a for a in actions if a not in self.index]
        if unknown:
            raise ValueError(f"action for unknown agent(s) {unknown}; live agents are {list(live)}")
        missing = [a for a in live if a not in actions]
        if missing:
            raise ValueError(f"no action for agent(s) {missing}; every live agent {list(live)} must act each step")
        arrays = [self.as_array(a, actions[a]) for a in live]
        low, high = self.action_low, self.action_high
        if self.stackable:
            parts: tuple[np.ndarray, ...] = (np.stack(arrays),)
        else:  # heads of different sizes: copy each action's two parts straight to where they belong
            heads = np.empty(self.offsets[-1], dtype=self.np_dtype)
            trunk = np.empty((len(arrays), self.trunk_size), dtype=self.np_dtype)
            for m, arr in enumerate(arrays):
                h = self.head_sizes[m]
                heads[self.offsets[m] : self.offsets[m + 1]] = arr[:h]
                trunk[m] = arr[h:]
            parts = (heads, trunk)
        # One range test over all actions at once; NaN fails it too (comparisons with NaN are false).
        # Only when it fails does the slow path look for the agent to name.
        if not all(low <= p.min() and p.max() <= high and np.isfinite(p).all() for p in parts if p.size):
            for agent, arr in zip(live, arrays, strict=True):
                self.check_values(agent, arr)
        tensors = [torch.from_numpy(p).to(self.device).unsqueeze(0) for p in parts]
        cfg = self.config
        if cfg.action_mode == "step_size" and cfg.step_size_units == "unit":
            return layout.unit_to_log_steps(tensors[0], cfg.log_step_range)
        if self.stackable:
            return tensors[0]  # [1, M, k]: log step sizes, or updates of equal-size heads
        if cfg.action_mode == "update" and cfg.update_units == "relative":
            # The engine takes the parts as the updates themselves: decode them here, with the one codec.
            return decode(tensors[0], state.head_grads), decode(tensors[1], state.jacobian)
        return tensors[0], tensors[1]  # (head updates [1, H], proposals [1, M, n])

    def as_array(self, agent: str, action: Any) -> np.ndarray:
        """``agent``'s action as an array of the Box's dtype and shape, or a ``ValueError`` naming the agent."""
        shape = self.action_spaces[agent].shape
        if isinstance(action, Tensor):
            action = action.detach().cpu().numpy()
        try:
            arr = np.asarray(action, dtype=self.np_dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"action for {agent!r} is not a numeric array ({err}); expected shape {shape}") from None
        if arr.shape != shape:
            m = self.index[agent]
            h, slot = self.head_sizes[m], self.slots[m]
            head = f"head {h}" if h == slot else f"head {h} padded to {slot}"
            what = (
                f"{head} + trunk {self.trunk_size}"
                if self.config.action_mode == "update"
                else "(head step, trunk step)"
            )
            raise ValueError(f"action for {agent!r} has shape {arr.shape}, expected {shape} = {what}")
        return arr

    def check_values(self, agent: str, arr: np.ndarray) -> None:
        """Refuse a non-finite action or one outside the Box, naming the agent and how to fix it."""
        low, high = self.action_low, self.action_high
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(
                f"action for {agent!r} is not finite (value {arr[bad]} at index {bad}); send finite numbers"
            )
        lo, hi = arr.min(), arr.max()
        if lo < low or hi > high:
            cfg = self.config
            digits = 9 if self.np_dtype == np.float32 else 17  # enough to tell a value 1 ulp outside the bound
            if cfg.action_mode == "update":
                limit = f"[{float(low):g}, {float(high):g}] (raise max_update=... or clip the action)"
            elif cfg.step_size_units == "unit":
                limit = f"[-1, 1], mapped onto the log step sizes {list(cfg.log_step_range)} (clip the action)"
            else:
                limit = f"{list(cfg.log_step_range)} (set log_step_range=... or clip the action)"
            raise ValueError(
                f"action for {agent!r} is outside its action space: values span [{lo:.{digits}g}, {hi:.{digits}g}], "
                f"allowed {limit}; np.clip(action, space.low, space.high) does it"
            )

    # ------------------------------------------------------------------------------ observations, starts
    def start_params(self, options: Mapping[str, Any] | None) -> dict[str, Tensor | None]:
        """``reset``'s options as the starting ``{"heads": [H], "trunk": [n]}`` tensors (``None`` where not given),
        or an error naming the option."""
        out: dict[str, Tensor | None] = {"heads": None, "trunk": None}
        if options is None:
            return out
        if not isinstance(options, Mapping):
            raise TypeError(f"reset options must be a dict such as {{'heads': ..., 'trunk': ...}}, got {options!r}")
        # Keys the env does not use are ignored, as Gymnasium's envs do (PettingZoo's API test passes a dummy
        # one); a near miss of a key it does use is a typo that would silently drop the starting point.
        for key in options:
            near = difflib.get_close_matches(str(key), list(out), n=1, cutoff=0.6)
            if key not in out and near:
                raise ValueError(f"unknown reset option {key!r}; did you mean {near[0]!r}? (options: 'heads', 'trunk')")
        for key, size in (("heads", self.offsets[-1]), ("trunk", self.trunk_size)):
            if key not in options or options[key] is None:
                continue
            given = options[key]
            if isinstance(given, Tensor):
                given = given.detach().cpu()  # a starting point, not a node of the caller's graph
            try:
                array = np.asarray(given, dtype=self.np_dtype)
            except (TypeError, ValueError) as err:
                raise ValueError(f"reset option {key!r} must be a numeric array of shape ({size},) ({err})") from None
            value = torch.as_tensor(array, device=self.device)
            if value.shape != (size,):
                raise ValueError(f"reset option {key!r} must have shape ({size},), got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"reset option {key!r} must be finite")
            out[key] = value.clone()
        return out

    def observe(self, out: StepOutput, live: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every live agent's observation of one game's step output, and the features ``[M, 8]``."""
        feats = out.features[0].cpu().numpy()
        if self.config.action_mode == "step_size":
            return dict(zip(live, feats.copy(), strict=True)), feats
        rows = layout.observations(out.features, out.head_grads, out.jacobian, self._padded_index, self._max_head)
        padded = rows[0].cpu().numpy()  # [M, max_head + n + 8]
        if self._every_slot_full:
            return dict(zip(live, padded, strict=True)), feats
        # Heads of unequal sizes, unpadded (pad_heads=False): each agent's head part is its own h_m.
        widest = self._max_head
        obs = {a: np.concatenate((padded[m, : self.head_sizes[m]], padded[m, widest:])) for m, a in enumerate(live)}
        return obs, feats
