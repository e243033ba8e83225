"""What every player shares: the policy protocol and reading an observation."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces

from agents.rules import Rule, coordinate_lrs
from mtg_env._args import real_arg
from mtg_env.engine.codec import decode_numpy, encode
from mtg_env.engine.layout import FEATURES, log_steps_to_unit

_HEAD_NORM = FEATURES.index("symlog_head_grad_norm")
_TRUNK_NORM = FEATURES.index("symlog_trunk_grad_norm")


@runtime_checkable
class Policy(Protocol):
    """A player: sees its observation and info, returns its action (as any MARL library's policy)."""

    def reset(self, observation: np.ndarray, info: Mapping[str, Any], action_space: spaces.Box) -> None:
        """Start an episode; ``info`` is the one ``env.reset`` returned (it has the sizes and mode)."""

    def act(self, observation: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """The action for this step."""


class PolicyWarning(UserWarning):
    """A player could not play its rule as written this step (its action left the action space and was clipped)."""


class ReaderPlayer:
    """What the players that read their observation with an :class:`ObservationReader` share: the reader their
    ``reset`` sets, its count of clipped steps, and the check that ``reset`` came before ``act``."""

    _reader: ObservationReader | None = None

    @property
    def clipped_steps(self) -> int:
        """Steps of this episode whose intended action was clipped into the action space."""
        return 0 if self._reader is None else self._reader.clipped_steps

    def _started(self) -> ObservationReader:
        """The episode's reader, or a ``RuntimeError`` when ``act`` comes before ``reset``."""
        if self._reader is None:
            raise RuntimeError("call agent.reset(observation, info, action_space) before act()")
        return self._reader


class RulePlayer(ReaderPlayer):
    """A player whose arithmetic is a rule of :mod:`agents.rules`, run with B = 1 on its own gradient: this is the
    adapter from its observation to the rule's tensors and from the rule's update to its action."""

    lr: float
    """The head step size."""
    trunk_lr: float | None
    """The trunk step size (``None``: ``lr``)."""
    _rule: Rule | None = None

    def make_rule(self, lrs: torch.Tensor) -> Rule:
        """This player's rule for B players with step sizes ``lrs [B, D]`` (its other settings its own)."""
        raise NotImplementedError

    @property
    def t(self) -> int:
        """Steps played this episode."""
        return 0 if self._rule is None else self._rule.t

    def _start(self, reader: ObservationReader, per_block: bool = False) -> None:
        """Begin an episode with ``reader`` and a fresh rule: one step size per coordinate [∇_Θ ℓ; ∇_Ψ ℓ], or per
        block (head, trunk) when ``per_block``."""
        trunk_lr = self.lr if self.trunk_lr is None else self.trunk_lr
        sizes = (1, 1) if per_block else (reader.head_size, reader.trunk_size)
        self._rule = self.make_rule(coordinate_lrs([self.lr], [trunk_lr], *sizes))
        self._reader = reader

    def _rule_started(self) -> tuple[ObservationReader, Rule]:
        reader = self._started()
        assert self._rule is not None
        return reader, self._rule

    def _update_action(self, observation: np.ndarray) -> np.ndarray:
        """The ``update``-mode action: the rule's update for the gradients of ``observation``."""
        reader, rule = self._rule_started()
        g = torch.from_numpy(np.concatenate(reader.grads(observation)))[None]
        update = rule.step(g)[0].numpy()
        return reader.update_action(update[: reader.head_size], update[reader.head_size :], observation)


class ObservationReader:
    """Splits an observation into the parts a gradient-based player needs, and turns the player's intended
    update or step sizes into an action, from the reset info alone (numeric infos or named ones).

    An intended action outside the action space is clipped into it, as MARL libraries do, but never silently:
    the first clipped step of an episode raises a :class:`PolicyWarning`, and ``clipped_steps`` counts them all
    (the episode runner reports it), since a clipped action no longer plays the player's rule.
    """

    def __init__(self, info: Mapping[str, Any], action_space: spaces.Box):
        missing = [k for k in ("head_size", "trunk_size") if k not in info]
        if "action_mode" not in info and "step_size_mode" not in info:
            missing.append("action_mode")
        if missing:
            raise ValueError(f"agent.reset needs the info returned by env.reset (it lacks {missing})")
        self.head_size = int(info["head_size"])
        self.trunk_size = int(info["trunk_size"])
        #: Length of the head part of an update-mode observation and action (≥ head_size when heads are padded).
        self.head_slot = int(info.get("head_slot", self.head_size))
        if "action_mode" in info:
            self.mode = str(info["action_mode"])
        else:
            self.mode = "step_size" if info["step_size_mode"] else "update"
        #: ``update`` mode: actions in units of each coordinate's reference descent step (v6's default), else the
        #: update itself (``update_units="raw"``, or an env older than v6).
        self.relative = bool(info.get("relative_updates", 0)) or info.get("update_units") == "relative"
        self.log_step_range: tuple[float, float] | None = None
        self.unit_actions = False
        if self.mode == "step_size":
            if "log_step_range" in info:
                lo, hi = info["log_step_range"]
                self.unit_actions = info.get("step_size_units", "log") == "unit"
            elif "log_step_low" in info:
                lo, hi = info["log_step_low"], info["log_step_high"]
                self.unit_actions = bool(info.get("unit_actions", 0))
            else:
                lo, hi = float(action_space.low[0]), float(action_space.high[0])  # a v1 env: log units
            self.log_step_range = (float(lo), float(hi))
        self.low = action_space.low
        self.high = action_space.high
        self.dtype = action_space.dtype
        self.clipped_steps = 0
        self._warned = False

    def grads(self, observation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(∇_Θ ℓ, ∇_Ψ ℓ) from an ``update``-mode observation (views, no copy)."""
        h, slot, n = self.head_size, self.head_slot, self.trunk_size
        return observation[:h], observation[slot : slot + n]

    def update_action(self, head_update: np.ndarray, trunk_proposal: np.ndarray, observation: np.ndarray) -> np.ndarray:
        """The ``update``-mode action that plays a head update ``[h]`` and a trunk proposal ``[n]`` (padding zero),
        in the env's units: in relative units (:mod:`mtg_env.engine.codec`) against the gradients of
        ``observation``, the one the action answers; the conversion is exact, so the env plays these updates
        bit for bit."""
        action = np.zeros(self.head_slot + self.trunk_size, dtype=np.float64)
        action[: self.head_size] = head_update
        action[self.head_slot :] = trunk_proposal
        if self.relative:
            action = encode(action, observation[: self.head_slot + self.trunk_size])
        return self.clip(action)

    def update_of(self, action: np.ndarray, observation: np.ndarray) -> np.ndarray:
        """The update ``[head slot + n]`` (float64) that an ``update``-mode ``action`` plays against ``observation``
        (the inverse of :meth:`update_action`)."""
        action = np.asarray(action, dtype=np.float64)
        if not self.relative:
            return action
        return decode_numpy(action, observation[: self.head_slot + self.trunk_size])

    def grad_norms(self, observation: np.ndarray) -> tuple[float, float]:
        """(‖∇_Θ ℓ‖, ‖∇_Ψ ℓ‖) from the features (either mode): the inverse of symlog."""
        feats = observation[-len(FEATURES) :]
        return float(np.expm1(feats[_HEAD_NORM])), float(np.expm1(feats[_TRUNK_NORM]))

    def step_action(self, log_steps: np.ndarray) -> np.ndarray:
        """The ``step_size``-mode action that plays natural-log step sizes ``(log α, log β)``."""
        assert self.log_step_range is not None
        action = np.asarray(log_steps, dtype=np.float64)
        if self.unit_actions:
            action = log_steps_to_unit(action, self.log_step_range)
        return self.clip(action)

    def clip(self, action: np.ndarray) -> np.ndarray:
        """The action as the env's dtype, clipped into the action space (as MARL libraries do); a clip that
        changes the action beyond round-off is counted and warned about (once per episode)."""
        clipped = np.clip(action, self.low, self.high)
        slack = 1e-6 * (np.abs(self.high) + np.abs(self.low) + 1.0)
        if np.any(np.abs(clipped - action) > slack):
            self.clipped_steps += 1
            if not self._warned:
                self._warned = True
                warnings.warn(
                    PolicyWarning(
                        f"the player's intended action left the action space [{self.low.min():.4g}, "
                        f"{self.high.max():.4g}] and was clipped: this step it does not play its rule as written "
                        "(raise max_update / widen log_step_range, or lower its step size; max_update=None: no bound); "
                        "warned once per "
                        "episode, clipped_steps counts every such step"
                    ),
                    stacklevel=3,
                )
        return clipped.astype(self.dtype, copy=False)


def check_step_sizes(lr: Any, trunk_lr: Any) -> tuple[float, float | None]:
    """An agent's ``lr`` and optional ``trunk_lr`` as finite floats > 0, or an error naming the argument."""
    lr = real_arg("lr", lr, low=0.0, low_open=True, hint="a step size")
    return lr, None if trunk_lr is None else real_arg("trunk_lr", trunk_lr, low=0.0, low_open=True, hint="or None")
