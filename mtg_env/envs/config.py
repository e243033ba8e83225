"""Every option of the environment, in one frozen dataclass checked once (gymnax's ``EnvParams``).

    cfg = EnvConfig(suite="regression", action_mode="step_size", max_cycles=100)
    env = MultiTaskGameEnv.from_config(cfg)            # the same as mtg_env.parallel_env(**the same options)
    venv = VectorGameEnv.from_config(64, cfg)
    game = cfg.make_game()                             # the engine's frozen Game (suite and rule built)

Each option is checked in one place: here the env's own options and those that need no suite, early and cheap
(before a suite loads its data); the game's options that need the suite's dtype or data (``divergence_threshold``,
``divergence_reward``'s range, the noise models against the suite, the consensus rule's domain) in
:class:`mtg_env.engine.Game`; the suite's options in its class; the rule's options in :mod:`mtg_env.consensus`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from mtg_env._args import bool_arg, int_arg, is_real
from mtg_env.consensus import ConsensusRule, consensus_rule
from mtg_env.engine.codec import UpdateUnits
from mtg_env.engine.game import Game, check_divergence_reward, check_horizon
from mtg_env.engine.layout import (
    ActionMode,
    StepSizeUnits,
    action_bounds,
    check_action_mode,
    check_step_size_units,
    check_update_units,
    largest,
)
from mtg_env.engine.noise import NoiseSpec, RegSpec, noise_spec, reg_spec
from mtg_env.engine.optim import OptimizerSpec, optimizer_spec
from mtg_env.suites import TaskSuite, make_suite

__all__ = ["RENDER_MODES", "EnvConfig", "check_device"]

#: What ``render_mode`` may be (besides ``None``).
RENDER_MODES: tuple[str, ...] = ("human", "ansi", "rgb_array")


@dataclass(frozen=True)
class EnvConfig:
    """Every option of :class:`~mtg_env.MultiTaskGameEnv`, checked at construction (the same errors as the env's).

    Options are kept as given (normalised where that changes no meaning: ints, floats, a pair of floats); the
    validated specs they stand for are the derived fields ``trunk_spec``, ``head_spec``, ``noise`` and ``reg``.
    Options that need the suite (``max_update`` within the dtype, the consensus rule's options, the game's
    checks) are checked when the game is built (:meth:`make_game`).
    """

    suite: str | TaskSuite = "digits"
    """``quadratic``, ``digits``, ``regression``, ``toy2d``, ... (:data:`mtg_env.SUITES`), an import path, or a
    ``TaskSuite`` instance (which keeps its own dtype and device)."""
    consensus: str | ConsensusRule = "sum"
    """A rule name of :data:`mtg_env.CONSENSUS_RULES`, or a callable f(P[M, n]) -> [n]."""
    action_mode: ActionMode = "update"
    """``update`` (actions are updates) or ``step_size`` (actions are two log step sizes)."""
    max_cycles: int = 500
    """Steps before truncation (the game's horizon)."""
    render_mode: str | None = None
    """``human``, ``ansi`` (a text table), ``rgb_array`` (loss curves) or ``None``."""
    dtype: str | None = None
    """``float32`` (default) or ``float64``; a suite instance's own."""
    device: str | torch.device | None = None
    """Where tensors live (``cpu`` default, ``cuda``); a suite instance's own."""
    max_update: float | None = 1.0
    """Bound of each ``update``-mode action coordinate, in its units; ``None``: no bound."""
    log_step_range: tuple[float, float] = (-5.0, -1.0)
    """Natural-log step sizes (lo, hi) a ``step_size`` action spans."""
    consensus_kwargs: Mapping[str, Any] | None = None
    """Options of a named rule (e.g. ``{"c": 0.4}`` for ``cagrad``)."""
    metrics_every: int = 0
    """``infos[a]["metrics"]`` every k steps (0: never; needs ``numeric_infos=False``)."""
    divergence_reward: float | Literal["remaining", "clipped_loss"] = "remaining"
    """Reward on the step a game diverges (see the env's Rewards)."""
    numeric_infos: bool = True
    """Numbers only, the same keys every step (TorchRL); ``False``: v1 infos."""
    step_size_units: StepSizeUnits = "unit"
    """``unit``: ``step_size`` actions in [−1, 1]; ``log``: the log step sizes themselves (v1)."""
    pad_heads: bool = True
    """``update`` mode: every head part padded to the largest head (one shape for every agent)."""
    divergence_threshold: float | None = 1e3
    """Diverged also when a loss exceeds threshold × max(1, |its start|); ``None``: only when not finite (v1)."""
    trunk_optimizer: str | type[torch.optim.Optimizer] | None = None
    """The optimizer after the consensus rule: ``sgd``, ``momentum``, ``adam``, ``adamw``, ``torch.optim.Adam``…"""
    trunk_optimizer_kwargs: Mapping[str, Any] | None = None
    """Its options (``lr``, ``betas``, ``eps``, ``momentum``, …; torch's defaults)."""
    head_optimizer: str | type[torch.optim.Optimizer] | None = None
    """The same on every head (per coordinate, so per task)."""
    head_optimizer_kwargs: Mapping[str, Any] | None = None
    """Its options."""
    update_units: UpdateUnits = "relative"
    """``relative``: ``update`` actions in reference descent steps (:mod:`mtg_env.engine.codec`); ``raw``: updates."""
    noise_model: NoiseSpec | Mapping[str, Any] | None = None
    """A ``NoiseSpec`` or dict: gradient, label, Byzantine, delay (Assumption 7)."""
    regularisation: RegSpec | Mapping[str, Any] | None = None
    """A ``RegSpec`` or dict: λ/2 ‖Θ_m − Θ̂_m‖² toward the equilibrium (Assumption 6)."""
    suite_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Options of the suite (see its class)."""

    trunk_spec: OptimizerSpec | None = field(init=False, repr=False, compare=False)
    """``trunk_optimizer`` and its options, validated (``None``: Ψ ← Ψ + C(P))."""
    head_spec: OptimizerSpec | None = field(init=False, repr=False, compare=False)
    """``head_optimizer`` and its options, validated."""
    noise: NoiseSpec | None = field(init=False, repr=False, compare=False)
    """``noise_model`` validated (``None`` when every model is off)."""
    reg: RegSpec | None = field(init=False, repr=False, compare=False)
    """``regularisation`` validated (``None`` at λ = 0)."""

    def __post_init__(self) -> None:
        self.check()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvConfig:
        """The config of ``MultiTaskGameEnv(**kwargs)``: the env's options by name, every other keyword a suite
        option (as the env's ``**suite_kwargs``)."""
        names = {f.name for f in fields(cls) if f.init and f.name != "suite_kwargs"}
        options = {k: v for k, v in kwargs.items() if k in names}
        return cls(**options, suite_kwargs={k: v for k, v in kwargs.items() if k not in names})

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments that build this config (and the env): ``EnvConfig.from_kwargs(**cfg.kwargs())``."""
        options = {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name != "suite_kwargs"}
        return {**options, **self.suite_kwargs}

    def check(self) -> None:
        """Check every option that needs no suite, in the env's order, naming the option; normalise the plain
        ones (an int, a float, a pair of floats). Raises ``TypeError`` or ``ValueError``."""
        set_ = object.__setattr__
        check_action_mode(self.action_mode)
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {list(RENDER_MODES)} or None, got {self.render_mode!r}")
        set_(self, "metrics_every", int_arg("metrics_every", self.metrics_every, low=0, hint="0: never"))
        set_(self, "divergence_reward", check_divergence_reward(self.divergence_reward))
        bool_arg("pad_heads", self.pad_heads)
        check_step_size_units(self.step_size_units)
        check_update_units(self.update_units)
        bool_arg("numeric_infos", self.numeric_infos)
        if self.numeric_infos and self.metrics_every:
            raise ValueError(
                "metrics_every needs numeric_infos=False: numeric infos keep one fixed set of number-valued keys, "
                "and the metrics are a nested dict"
            )
        set_(self, "max_cycles", check_horizon(self.max_cycles, "max_cycles"))
        set_(self, "trunk_spec", optimizer_spec(self.trunk_optimizer, self.trunk_optimizer_kwargs, "trunk_optimizer"))
        set_(self, "head_spec", optimizer_spec(self.head_optimizer, self.head_optimizer_kwargs, "head_optimizer"))
        set_(self, "noise", noise_spec(self.noise_model))
        set_(self, "reg", reg_spec(self.regularisation))
        max_update = self.max_update
        if max_update is not None and not (is_real(max_update) and 0 < max_update < math.inf):
            raise ValueError(f"max_update must be a finite number > 0 or None (no bound), got {max_update!r}")
        span = self.log_step_range
        if not (isinstance(span, (tuple, list)) and len(span) == 2):
            raise ValueError(f"log_step_range must be a pair (low, high), got {span!r}")
        if not all(is_real(v) for v in span):
            raise ValueError(f"log_step_range must hold two numbers, got {span!r}")
        lo, hi = (float(v) for v in span)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"log_step_range must be finite (low, high) with low < high, got {span}")
        set_(self, "log_step_range", (lo, hi))
        if self.device is not None:
            check_device(self.device)
        if self.consensus_kwargs is not None and not isinstance(self.consensus_kwargs, Mapping):
            raise TypeError(
                f"consensus_kwargs must be a dict of the rule's options or None, got {self.consensus_kwargs!r}"
            )
        if not isinstance(self.suite_kwargs, Mapping):
            raise TypeError(f"suite_kwargs must be a dict of the suite's options, got {self.suite_kwargs!r}")

    # ---------------------------------------------------------------------------------------- derived
    @property
    def update_bound(self) -> float:
        """``max_update`` as a float (``inf`` for ``None``: no bound)."""
        return math.inf if self.max_update is None else float(self.max_update)

    def action_bounds(self) -> tuple[float, float]:
        """``(low, high)`` of every coordinate of an action (:func:`mtg_env.engine.layout.action_bounds`)."""
        return action_bounds(
            self.action_mode,
            update_units=self.update_units,
            max_update=self.update_bound,
            step_size_units=self.step_size_units,
            log_step_range=self.log_step_range,
        )

    # ---------------------------------------------------------------------------------------- building
    def make_suite(self) -> TaskSuite:
        """The suite (a name built with ``dtype``, ``device`` and ``suite_kwargs``; an instance checked against
        them), and ``max_update`` checked against its dtype."""
        suite = make_suite(self.suite, device=self.device, dtype=self.dtype, **dict(self.suite_kwargs))
        big = largest(suite.dtype)
        if self.max_update is not None and self.max_update > big:
            raise ValueError(
                f"max_update must be at most {big:.4g} (the largest {suite.dtype}), got {self.max_update!r}"
            )
        return suite

    def make_game(self, suite: TaskSuite | None = None) -> Game:
        """The engine's frozen :class:`~mtg_env.engine.Game` of this config (on ``suite``, default
        :meth:`make_suite`): the consensus rule built with its options, the game's own checks run."""
        suite = self.make_suite() if suite is None else suite
        rule = consensus_rule(self.consensus, num_tasks=suite.num_tasks, **dict(self.consensus_kwargs or {}))
        return Game(
            suite,
            rule,
            action_mode=self.action_mode,
            horizon=self.max_cycles,
            divergence_reward=self.divergence_reward,
            divergence_threshold=self.divergence_threshold,
            trunk_optimizer=self.trunk_spec,
            head_optimizer=self.head_spec,
            update_units=self.update_units,
            noise_model=self.noise,
            regularisation=self.reg,
        )


def check_device(device: Any) -> None:
    """A CPU or a usable CUDA device, or an error naming ``device``."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({err})") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asks for CUDA, but this torch build has no usable GPU; use device='cpu'")
