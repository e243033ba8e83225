"""The multi-task training process as a PettingZoo ``ParallelEnv`` (see the class docstring).

The class is the PettingZoo API and its documentation; its parts live beside it: the options and their checks
(:mod:`mtg_env.envs.config`), the agents' spaces, actions in and observations out (:mod:`mtg_env.envs.spaces`,
after the layout of :mod:`mtg_env.engine.layout`), the infos (:mod:`mtg_env.envs.infos`), rendering
(:mod:`mtg_env.envs.render`) and checkpoints (:mod:`mtg_env.envs.checkpoint`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from torch import Tensor

from mtg_env import engine
from mtg_env.consensus import rule_name
from mtg_env.engine.game import Game
from mtg_env.engine.layout import FEATURES, NUM_FEATURES, ActionMode
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.envs import checkpoint as _checkpoint
from mtg_env.envs import infos as _infos
from mtg_env.envs import queries as _queries
from mtg_env.envs import render as _render
from mtg_env.envs.aec import aec_env
from mtg_env.envs.config import RENDER_MODES, EnvConfig
from mtg_env.envs.spaces import AgentSpaces
from mtg_env.rng import check_seed
from mtg_env.suites.base import Split

__all__ = ["FEATURES", "NUM_FEATURES", "ActionMode", "EnvConfig", "MultiTaskGameEnv", "env", "parallel_env"]


class MultiTaskGameEnv(ParallelEnv):
    """Multi-task learning with a shared trunk, played as a game (Lee, Axioms 2023).

    ## Description
    Each task m of a suite is an agent ``task_m``. It owns its head Θ_m and wants its own loss
    ℓ_m(Θ_m, Ψ) low; all agents share the trunk Ψ. Every step each agent proposes an update of its head
    and of the trunk; heads move by their own updates (Eq. 23) and the trunk by a *consensus rule* C of
    the trunk proposals: Ψ ← Ψ + C(p_1, ..., p_M) (`sum` = Eq. 24, `mean` = Eq. 21, the MTL literature's
    MGDA, PCGrad, CAGrad, Nash-MTL, UPGrad, ... by name, or any callable).
    Then the next batch is drawn and all losses and per-task gradients are computed in one forward and
    one batched backward pass.

    Two orders of optimizer and rule. Without ``trunk_optimizer`` (the game's players) each agent's own rule
    (its step size, its Adam) shapes its proposal and the trunk moves by the rule of the steps, Ψ ← Ψ + C(P).
    With ``trunk_optimizer="adam"`` (the literature's training) the optimizer comes after the rule: it treats
    −C(P) as the trunk's gradient and keeps its own state, reset on ``reset`` and carried by checkpoints. With
    agents that report their gradients (unit steps: a ``step_size`` log step of 0, or ``GradientAgent(lr=1.0)``
    in ``update`` mode, so p_m = −∇_Ψ ℓ_m) a named rule plus ``trunk_optimizer="adam"`` trains as LibMTL and
    the papers do: Adam on the aggregated gradient. ``head_optimizer`` does the same for every head.

    ## Action Space
    ``update`` mode (the paper's literal game): concat[u_head, u_trunk], the head update and the trunk proposal,
    in units of each coordinate's *reference descent step* (``update_units="relative"``, :mod:`mtg_env.engine.codec`):
    coordinate i of the action plays u_i = a_i · d_i, d_i = −sign(g_i) · 2^k_i, where g_i is the agent's own
    observed gradient of that coordinate and 2^k_i is 2^-3 |g_i| rounded up to a power of two, at least 2^-6. The
    Box is ``Box(-max_update / 4, max_update, (h_m + n,))``: 1 is a gradient step of step size 1/8 to 1/4 where
    |g_i| ≥ 1/8 and a sign step of 2^-6 below, 0 no move, and uphill moves go at most a quarter as far, so a random
    action (what a library's untrained policy sends) descends on average (how long per rule: docs/engine.md). Each
    d_i is a power of two, so a player converts its update exactly (``ObservationReader.update_action``); the paper's
    gradient player (α ≤ 1/8) and Adam (lr 1e-3) play their rules unclipped, the same updates bit for bit as in raw
    units. ``update_units="raw"``: the action is the update itself, in ``Box(-max_update, max_update)`` (v5; ±1 per
    coordinate on the digits suite's 17 000 parameters ends a random game at its first step). An action given to
    the engine as the tuple ``(head_updates, proposals)`` is always the update itself. ``max_update=None`` removes
    the bound (an unbounded Box: no player's rule is ever clipped; PettingZoo's and Gymnasium's checkers warn about
    it). The baseline agents never clip silently: they warn once and count the clipped steps. Sizes:
    ``env.head_size(agent)`` and ``env.trunk_size``.

    ``step_size`` mode: a ``Box(-1, 1, (2,))`` (the range Gaussian policies start in) mapped affinely onto
    natural-log step sizes (log α, log β) in ``log_step_range`` = (lo, hi): −1 is lo, 1 is hi, 0 the middle;
    the env applies u_head = −α ∇_{Θ_m} ℓ_m and p_m = −β ∇_Ψ ℓ_m. With ``step_size_units="log"`` the Box is
    ``Box(lo, hi, (2,))`` of the log step sizes themselves (v1).

    Actions outside the Box, of the wrong shape, or not finite are refused with a ``ValueError`` that
    names the agent; the game is then left exactly as it was.

    ## Observation Space
    ``update`` mode: concat[∇_{Θ_m} ℓ_m, ∇_Ψ ℓ_m, features] (length h_m + n + 8), the gradients at the
    current parameters on the current batch. Heads of unequal sizes are padded (``pad_heads=True``) to the
    largest head H: the head gradient is followed by H − h_m zeros, and the action's head part is H long (its
    last H − h_m entries are ignored); ``env.head_slot(agent)`` is the head part's length.
    ``step_size`` mode: the 8 features alone, the same shape
    for every agent (one shared policy can act for all tasks). Gradients are bounded by the dtype's
    largest finite value; non-finite values (only after divergence) are clipped into the Box.

    | index | feature                                              | range            |
    |-------|------------------------------------------------------|------------------|
    | 0     | symlog(ℓ_m), symlog(x) = sign(x)·log(1 + \\|x\\|)      | ±symlog(max)     |
    | 1     | symlog(ℓ_m − ℓ_m at the previous step) (0 at reset)  | ±symlog(max)     |
    | 2     | symlog(‖∇_{Θ_m} ℓ_m‖)                                | [0, symlog(max)] |
    | 3     | symlog(‖∇_Ψ ℓ_m‖)                                    | [0, symlog(max)] |
    | 4     | cos(∇_Ψ ℓ_m, mean_j ∇_Ψ ℓ_j): conflict with the others | [−1, 1]        |
    | 5     | cos(−∇_Ψ ℓ_m, last trunk move ΔΨ) (0 at reset)       | [−1, 1]          |
    | 6     | progress t / max_cycles                              | [0, 1]           |
    | 7     | symlog(‖ΔΨ‖), the last trunk move: the same for all  | [0, symlog(max)] |

    symlog(max) is about 88.7 in float32 and 709.8 in float64. ``state()`` concatenates every agent's
    features (an ``[8 M]`` vector) for centralised critics.

    ## Rewards
    reward_m = −ℓ_m on the current batch. On the step that diverges, by ``divergence_reward``: ``"remaining"``
    (default) −(max_cycles − t + 1)·max(1, |ℓ_m at reset|), the return of a task stuck at its starting loss
    for the rest of the episode, so that ending an episode by divergence never pays and the reward stays
    finite; a number; or ``"clipped_loss"``, −ℓ_m clipped to the finite float range (v1).

    ## Starting State
    Parameters drawn by the suite from the env's seed (``reset(seed=...)``), or given by
    ``reset(options={"heads": ..., "trunk": ...})`` (flat arrays; heads of all tasks concatenated).

    ## Episode End
    Truncation: after ``max_cycles`` steps. Termination (divergence): when any loss or parameter stops being
    finite, or a loss blows up beyond ``divergence_threshold`` · max(1, |its value at reset|), every agent
    terminates (``infos[a]["diverged"] == 1``). Termination (out of the rule's domain): a consensus rule that takes
    logarithms or ratios of the losses (``dwa``, ``famo``, ``db_mtl``, ``gls``, ``gradnorm``) needs every loss above
    its floor; it is refused at construction on a suite whose losses go below it, and a game whose loss still
    reaches it before ``max_cycles`` (0 by rounding) ends there: every agent terminates with ``diverged == 0`` and
    the usual rewards (v1 infos: ``termination == "out_of_domain"`` and a ``reason`` naming the task).

    ## Arguments
    Every option is a field of :class:`~mtg_env.envs.config.EnvConfig`, documented there with its default and
    checked once: ``suite``, ``consensus`` (+ ``consensus_kwargs``), ``action_mode``, ``max_cycles``, ``render_mode``,
    ``dtype``, ``device``, ``max_update``, ``update_units``, ``log_step_range``, ``step_size_units``, ``pad_heads``,
    ``metrics_every``, ``numeric_infos``, ``divergence_reward``, ``divergence_threshold``, ``trunk_optimizer`` /
    ``head_optimizer`` (+ ``_kwargs``), ``noise_model``, ``regularisation``; any other keyword is an option of the
    suite (see its class). ``MultiTaskGameEnv.from_config(cfg)`` takes them as one ``EnvConfig``.

    ## Infos
    Default (``numeric_infos=True``): numbers only, the same keys at reset and at every step, as TorchRL and RLlib build
    specs from them: ``loss``, ``t``, ``diverged`` (0 or 1), ``trunk_grad_norm_mean`` (the mean over the players of ‖∇_Ψ
    ℓ_m‖, the same for all: :func:`mtg_env.engine.trunk_grad_norm_mean`), ``nash_gap`` (ℓ_m − min_Θ ℓ_m, Definition 1)
    where the suite computes it cheaply (quadratic, toy2d), and what a player needs to read its observation and form its
    action: ``head_size``, ``trunk_size``, ``step_size_mode`` (0 or 1), ``log_step_low``, ``log_step_high``,
    ``unit_actions`` (0 or 1), ``relative_updates`` (0 or 1), ``linear_consensus`` (0 or 1: the consensus rule is a
    fixed weighted sum of the proposals, as ``sum`` and ``mean``; ``Game.linear_consensus``), ``min_bounded_consensus``
    (0 or 1: no move is longer than the shortest proposal, as under ``mgda``; ``Game.min_bounded_consensus``),
    ``stochastic_gradients`` (0 or 1: the gradients are estimates; ``Game.stochastic_gradients``) and ``sum_scale`` (M /
    γ for a consensus rule that moves unanimous proposals by γ times one: the factor that makes them move the trunk as
    under ``sum``, 1 under ``sum``, M under ``mean``; absent for a rule without such a gain; ``Game.sum_scale``; the
    properties of :class:`mtg_env.engine.Game`). The task's name is ``env.task_name(agent)``. With
    ``numeric_infos=False`` (v1): ``task``, ``loss``, ``t``, ``trunk_grad_norm_mean``, ``nash_gap`` where cheap; after
    ``reset`` also ``head_size``, ``trunk_size``, ``action_mode``, ``log_step_range``, ``step_size_units``,
    ``update_units``, ``linear_consensus``, ``min_bounded_consensus``, ``stochastic_gradients`` (bools), ``sum_scale``;
    on divergence ``termination == "diverged"`` and a ``reason`` (``"out_of_domain"`` and a ``reason`` when a loss
    leaves the consensus rule's domain, see Episode End); and every ``metrics_every`` steps ``metrics``: the agent's
    ``nash_gap``, ``stationarity`` and held-out ``loss``, and the game's metrics (see :meth:`metrics`).

    ## Threads and determinism
    The env never sets torch's thread count (a library must not change its host's global settings); set it
    yourself: ``torch.set_num_threads(1)``. The game's tensors are small, so a second thread buys little,
    and on a busy machine torch's default (every core) is far slower: the digits env measured 2.0 steps/s
    with 2 threads against 160.6 with one on a 2-core machine with another process spinning. Results are
    bit-identical for the same seed at a fixed thread count on the same machine and torch build; a different
    thread count may change the last bits of float sums (the order of a parallel reduction), so compare runs
    at one count. ``mtg-env`` and the examples use 1 thread unless told otherwise (``--threads``). On CPU, game
    b of an engine batch equals the lone game with its seed bit for bit, in float32 and float64, under every
    MKL code path (tested under ``MKL_CBWR=COMPATIBLE, SSE4_2, AVX, AVX2, AVX512``). Across machines (another
    instruction set or BLAS) results agree to round-off, not to the bit.

    ## Version History
    Each version in one line; what changed and how to get the old behaviour back: ``CHANGELOG.md``.

    * v6: ``update``-mode actions in units of each coordinate's reference descent step (``update_units="raw"``: v5);
      off-by-default ``noise_model`` and ``regularisation``.
    * v5: results the same on every CPU (game b of a batch equals the lone game under every MKL code path), and
      ``nash_mtl``, ``imtl_g``, ``krum``, ``fairgrad``, ``db_mtl`` as their sources compute them.
    * v4: a feature every player observes alike: symlog of the norm of the trunk's last move (index 7).
    * v3: consensus as the MTL literature computes it (exactly homogeneous rules, exact ``mgda``); optimizers after
      the rule; loss-aware rules; every argument checked without coercion.
    * v2: defaults that work with the MARL libraries' plain recipes (``step_size`` actions in [−1, 1], numeric infos,
      a finite divergence reward, padded heads, a divergence threshold).
    * v1: the game runs on :mod:`mtg_env.engine`; counter-based randomness per game.
    * v0: initial release.
    """

    # Not a ClassVar: PettingZoo reads metadata per instance, and __init__ sets a per-suite name.
    metadata: dict[str, Any] = {  # noqa: RUF012
        "name": "mtg_v6",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,
        "render_fps": 10,
    }

    def __init__(self, **kwargs: Any):
        """Build the env from the options of the Arguments table (the fields of :class:`EnvConfig`, every other
        keyword a suite option); ``MultiTaskGameEnv.from_config(cfg)`` takes them as one :class:`EnvConfig`."""
        self._setup(EnvConfig.from_kwargs(**kwargs))

    @classmethod
    def from_config(cls, config: EnvConfig, game: Game | None = None) -> MultiTaskGameEnv:
        """The env of ``config`` (the same env as ``MultiTaskGameEnv(**config.kwargs())``).

        Args:
            config: Every option, checked.
            game: ``config.make_game()`` when the caller has already built it: the env plays it (sharing its
                suite) instead of building another.
        """
        if not isinstance(config, EnvConfig):
            raise TypeError(f"config must be a mtg_env.EnvConfig, got {type(config).__name__}")
        env = cls.__new__(cls)
        env._setup(config, game)
        return env

    def _setup(self, config: EnvConfig, game: Game | None = None) -> None:
        #: Every option of this env, checked (see :class:`EnvConfig`).
        self.config = config
        #: The game this env plays: one game (B = 1) of the engine.
        self.game = config.make_game() if game is None else game
        self.suite = self.game.suite
        self.consensus = self.game.consensus
        self.device, self.dtype = self.game.device, self.game.dtype
        # The options as attributes, as before the config: copies that the env never reads back (PettingZoo's API
        # test sets max_cycles; the game, frozen, keeps its own), so setting one changes nothing.
        self.render_mode = config.render_mode
        self.action_mode, self.max_cycles = config.action_mode, config.max_cycles
        self.metrics_every, self.numeric_infos = config.metrics_every, config.numeric_infos
        self.divergence_reward, self.pad_heads = config.divergence_reward, config.pad_heads
        self.step_size_units, self.update_units = config.step_size_units, config.update_units
        self.log_step_range, self.max_update = config.log_step_range, config.update_bound
        #: The optimizers after the consensus rule (trunk) and on the heads (validated specs, or None).
        self.trunk_optimizer, self.head_optimizer = config.trunk_spec, config.head_spec
        #: The noise models and the regulariser (validated specs; ``None`` when off: the v5 game exactly).
        self.noise_model, self.regularisation = config.noise, config.reg
        self.metadata = {**type(self).metadata, "name": f"mtg_{self.suite.name}_v6"}
        self._spaces = AgentSpaces(config, self.game)
        self.np_dtype: Any = self._spaces.np_dtype
        self.state_space = self._spaces.state_space
        self.possible_agents = list(self._spaces.agents)
        self.agents: list[str] = []
        self._seed: int | None = None
        self._episode = 0
        self._state: GameState | None = None
        self._loss_history: list[list[float]] = []

    # --------------------------------------------------------------------------------- spaces
    def observation_space(self, agent: str) -> spaces.Box:
        """The agent's observation space (the same object on every call)."""
        return self._spaces.observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Box:
        """The agent's action space (the same object on every call)."""
        return self._spaces.action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self._spaces.index:
            raise KeyError(f"unknown agent {agent!r}; agents are {self.possible_agents}")
        return agent

    @property
    def trunk_size(self) -> int:
        """Number of trunk parameters n (length of every trunk proposal)."""
        return self.suite.trunk_size

    def head_size(self, agent: str) -> int:
        """Number of head parameters h_m of ``agent``."""
        return self._spaces.head_sizes[self._spaces.index[self._check_agent(agent)]]

    def head_slot(self, agent: str) -> int:
        """Length of the head part of ``agent``'s ``update``-mode observation and action: h_m, or the largest
        head when heads are padded (``pad_heads``); the trunk part starts there."""
        return self._spaces.slots[self._spaces.index[self._check_agent(agent)]]

    def step_size_action(self, alpha: float, beta: float | None = None) -> np.ndarray:
        """The ``step_size``-mode action (in this env's units) that plays head step α and trunk step β (default α).

        Raises:
            ValueError: outside ``step_size`` mode, for a step that is not > 0, or one whose log is outside
                ``log_step_range`` (the env would have to clip it: widen the range instead).
        """
        return self._spaces.step_size_action(alpha, beta)

    def task_name(self, agent: str) -> str:
        """The task an agent plays, e.g. ``"digit"``."""
        return self.suite.tasks[self._spaces.index[self._check_agent(agent)]].name

    # ---------------------------------------------------------------------------- episodes
    def reset(
        self, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """Start an episode.

        Args:
            seed: Seeds the env's generator (initial parameters and batches). ``None`` continues the
                current stream (or seeds from the OS on the very first reset).
            options: Optional ``{"heads": array[H], "trunk": array[n]}`` starting parameters; keys the
                env does not know are ignored (PettingZoo's API test passes a dummy one), except near misses of
                these two (``"head"``, ``"Trunk"``), which are refused as typos.
        """
        start = self._spaces.start_params(options)  # validate before touching any state
        if seed is not None:
            self._seed, self._episode = check_seed(seed), 0
        elif self._seed is None:
            self._seed, self._episode = secrets.randbits(63), 0
        else:  # no new seed: the seed's next episode (other parameters and batches, still reproducible)
            self._episode += 1
        heads, trunk = (None if v is None else v.unsqueeze(0) for v in (start["heads"], start["trunk"]))
        self._state, out = engine.reset(self.game, [self._seed], [self._episode], heads=heads, trunk=trunk)
        self.agents = self.possible_agents[:]
        self._loss_history = []
        observations, losses, finite = self._observe(out)
        infos = _infos.step_infos(self, losses, None)
        if not self.config.numeric_infos:
            _infos.reset_extras(self, infos, finite, bool(out.out_of_domain[0]))
        return observations, infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        """Play one round: every live agent's action at once (see the class docstring)."""
        if self._state is None:
            raise RuntimeError("step() called before reset(); call env.reset(seed=...) first")
        if not self.agents:
            raise RuntimeError("step() called after the episode ended (all agents done); call env.reset()")
        actions_t = self._spaces.parse(actions, self.agents, self._state)
        # The engine is pure: a rule that raises leaves self._state, the game, exactly as it was.
        state, out = engine.step(self.game, self._state, actions_t)
        self._state = state
        observations, losses, finite = self._observe(out)
        agents = self.agents
        rewards = dict(zip(agents, out.rewards[0].tolist(), strict=True))
        stuck = bool(out.out_of_domain[0])
        reason = (
            _infos.divergence_reason(self, losses)
            if not finite
            else _infos.domain_reason(self, losses)
            if stuck
            else None
        )
        truncated = bool(out.truncated[0])
        terminated = not finite or stuck
        terminations = dict.fromkeys(agents, terminated)
        truncations = dict.fromkeys(agents, truncated)
        infos = _infos.step_infos(self, losses, reason, diverged=not finite)
        if terminated or truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def check_action(self, agent: str, action: Any) -> None:
        """Refuse one agent's action as :meth:`step` would (unknown or finished agent, shape, NaN, outside the
        Box), with the same message; the AEC API checks each action when it is given, not when the last agent
        acts."""
        if agent not in self.agents:
            raise ValueError(f"{agent!r} is not a live agent; live agents are {self.agents}")
        self._spaces.check_values(agent, self._spaces.as_array(agent, action))

    def _observe(self, out: StepOutput) -> tuple[dict[str, np.ndarray], list[float], bool]:
        """Observations of all agents, the losses as floats, and whether everything is finite."""
        observations, self._feats = self._spaces.observe(out, self.agents)
        losses = out.losses[0].tolist()
        self._loss_history.append(losses)
        return observations, losses, not bool(out.diverged[0])

    # ----------------------------------------------------------------------------- queries
    @property
    def engine_state(self) -> GameState:
        """The engine's state of this game (B = 1): parameters, gradients, counters (see :mod:`mtg_env.engine`)."""
        self._require_started()
        assert self._state is not None
        return self._state

    @property
    def _heads(self) -> Tensor:
        return self.engine_state.heads[0]

    @property
    def _trunk(self) -> Tensor:
        return self.engine_state.trunk[0]

    @property
    def _t(self) -> int:
        return int(self.engine_state.t[0])

    def state(self) -> np.ndarray:
        """Global state for centralised critics: every agent's 8 features, concatenated."""
        self._require_started()
        return self._feats.reshape(-1).copy()

    # ------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the game mid-episode: the engine state (parameters, gradients, step, seed and episode;
        the randomness is a function of these, so nothing else is needed), the consensus rule's state as tensors,
        the live agents, the loss history and a fingerprint of every option that shapes the game. Plain data (CPU
        tensors, numbers, strings, lists; no pickle inside): ``torch.save`` stores it and
        ``torch.load(path, weights_only=True)`` reads it back without running code. ``load_state_dict`` on an env
        of the same configuration continues the episode bit for bit (see :mod:`mtg_env.envs.checkpoint`).

        Raises:
            TypeError: for a consensus callable that keeps its state on itself (give it ``init_state`` and ``step``).
        """
        self._require_started()
        return _checkpoint.make(self)

    def load_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Everything is verified before anything changes: a checkpoint of another
        configuration, or with a value no game of this one reaches (a tampered or corrupted one), raises a
        ``ValueError`` that names the field (expected vs found), and leaves the env exactly as it was. Nothing in
        it is unpickled: a checkpoint of the old format (the rule as a pickle) is refused with how to convert it."""
        _checkpoint.restore(self, checkpoint)

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` (``torch.save``)."""
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Read a checkpoint written by :meth:`save` with ``torch.load(path, weights_only=True)`` (which runs no code
        from the file) and restore it (:meth:`load_state_dict`)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    @property
    def consensus_failures(self) -> int:
        """Steps of this episode at which the consensus rule could not do what it promises (Nash-MTL's bargaining
        solve failed: :class:`~mtg_env.ConsensusWarning`); 0 for rules that cannot fail."""
        failures = self.engine_state.rule_state.get("failures")
        return 0 if failures is None else int(failures[0])

    @property
    def consensus_refinements(self) -> int:
        """Steps of this episode at which Nash-MTL's ECOS solve missed the bargaining solution and Newton's
        refinement found it; 0 for other rules."""
        refinements = self.engine_state.rule_state.get("refinements")
        return 0 if refinements is None else int(refinements[0])

    def get_parameters(self) -> tuple[Tensor, Tensor]:
        """Copies of the current ``(heads, trunk)`` flat parameter vectors."""
        self._require_started()
        return self._heads.clone(), self._trunk.clone()

    def nash_gap(self, split: Split = "train") -> dict[str, float]:
        """Head Nash gap per agent (Definition 1), ℓ_m(Θ_m, Ψ) − min_Θ ℓ_m(Θ, Ψ), on the ``split`` objective
        (exact where ``env.suite.exact_best_response``, else a lower bound from an inner solve)."""
        self._require_started()
        gaps = self.suite.nash_gaps(self._heads, self._trunk, split)
        return dict(zip(self.possible_agents, gaps.tolist(), strict=True))

    def metrics(self, split: Split = "eval") -> dict[str, dict[str, Any]]:
        """How far play is from an equilibrium, on the whole ``split`` objective (default: held out).

        Returns ``{"agents": {agent: {"loss", "nash_gap", "stationarity"}}, "game": {...}}`` where the game
        part has ``nash_gap_total``, ``nash_gap_exact``, ``consensus_residual``, ``pareto_stationarity``
        and, where the equilibrium is known, ``lyapunov`` (Eq. 28) and ``distance``. See
        :func:`mtg_env.metrics.game_metrics`.
        """
        self._require_started()
        return _queries.metrics(self, split)

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Per agent: task name, loss on the whole training objective, and the suite's held-out metrics."""
        self._require_started()
        return _queries.evaluate(self)

    def _require_started(self) -> None:
        if self._state is None:
            raise RuntimeError("the env has no game yet; call env.reset(seed=...) first")

    # ----------------------------------------------------------------------------- render
    def render(self, mode: str | None = None) -> str | np.ndarray | None:
        """Render per ``render_mode`` (or ``mode``, for wrappers that pass it): ``ansi`` a text table,
        ``human`` the same printed, ``rgb_array`` the loss curves as an ``[H, W, 3]`` uint8 image
        (:mod:`mtg_env.envs.render`)."""
        mode = mode or self.render_mode
        if mode is None:
            return None
        if mode not in RENDER_MODES:
            raise ValueError(f"render mode must be one of {list(RENDER_MODES)}, got {mode!r}")
        self._require_started()
        if mode == "rgb_array":
            return _render.render_rgb(self)
        text = _render.render_text(self)
        if mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Release rendering resources. None are held between calls (each ``rgb_array`` frame draws on its own
        canvas), so this changes nothing: ``render()`` after ``close()`` still shows the last episode."""

    def __repr__(self) -> str:
        return (
            f"MultiTaskGameEnv(suite={self.suite.name!r}, consensus={rule_name(self.consensus)!r}, "
            f"action_mode={self.config.action_mode!r}, max_cycles={self.config.max_cycles})"
        )


def parallel_env(**kwargs: Any) -> MultiTaskGameEnv:
    """The environment in PettingZoo's parallel API. Takes :class:`MultiTaskGameEnv`'s arguments."""
    return MultiTaskGameEnv(**kwargs)


def env(**kwargs: Any) -> AECEnv:
    """The environment in PettingZoo's AEC API (agents act in turn), via PettingZoo's ``parallel_to_aec`` wrapper
    (order enforcement included), with every action checked as its agent gives it (:mod:`mtg_env.envs.aec`)."""
    return aec_env(MultiTaskGameEnv(**kwargs))
