"""The multi-task training process as a PettingZoo ``ParallelEnv`` (see the class docstring)."""

from __future__ import annotations

import difflib
import math
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper
from torch import Tensor

from mtg_env import engine
from mtg_env._args import bool_arg, int_arg, is_real
from mtg_env.consensus import ConsensusRule, consensus_rule, rule_name
from mtg_env.engine.codec import UPDATE_UNITS, UPHILL, UpdateUnits, decode
from mtg_env.engine.game import FEATURES, NUM_FEATURES, ActionMode, Game
from mtg_env.engine.noise import NoiseSpec, RegSpec, noise_spec, reg_spec
from mtg_env.engine.optim import optimizer_spec
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.envs import checkpoint as _checkpoint
from mtg_env.rng import check_seed
from mtg_env.suites import TaskSuite, make_suite
from mtg_env.suites.base import Split

__all__ = ["FEATURES", "NUM_FEATURES", "ActionMode", "MultiTaskGameEnv", "env", "parallel_env"]


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
    Box is ``Box(-max_update / 4, max_update, (h_m + n,))``: 1 on every coordinate is a gradient step of step size
    1/8 to 1/4, 0 no move, and uphill moves go at most a quarter as far, so a random action (what a library's
    untrained policy sends) descends on average and a random policy plays whole episodes. Each d_i is a power of
    two, so a player converts its intended update exactly (``ObservationReader.update_action``); the paper's
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
    | argument         | default        | meaning                                                   |
    |------------------|----------------|-----------------------------------------------------------|
    | `suite`          | `"digits"`     | `quadratic`, `digits`, `regression`, or a `TaskSuite`     |
    | `consensus`      | `"sum"`        | a name in `mtg_env.CONSENSUS_RULES`, or f(P[M, n]) -> [n]  |
    | `consensus_kwargs` | `None`       | options of a named rule (e.g. `{"c": 0.4}` for `cagrad`)  |
    | `metrics_every`  | `0`            | `infos[a]["metrics"]` every k steps (0: never; `numeric_infos=False`) |
    | `divergence_reward` | `"remaining"` | reward on the step that diverges (see Rewards)          |
    | `numeric_infos`  | `True`         | numbers only, the same keys every step (TorchRL); `False`: v1 infos |
    | `action_mode`    | `"update"`     | `update` or `step_size`                                   |
    | `max_cycles`     | `500`          | steps before truncation                                   |
    | `render_mode`    | `None`         | `human`, `ansi` (text table) or `rgb_array` (loss curves) |
    | `dtype`          | `"float32"`    | `float32` or `float64` (theory work); a suite instance's own |
    | `device`         | `"cpu"`        | where tensors live (`"cuda"` on a GPU); a suite instance's own |
    | `max_update`     | `1.0`          | bound of each `update`-mode action coordinate, in its units (None: none) |
    | `update_units`   | `"relative"`   | `relative`: reference descent steps (Action Space); `raw`: updates (v5) |
    | `log_step_range` | `(-5.0, -1.0)` | log step sizes a `step_size` action spans (α 0.0067 … 0.37) |
    | `step_size_units` | `"unit"`      | `unit`: actions in [−1, 1]; `log`: the log step sizes (v1) |
    | `pad_heads`      | `True`         | `update` mode: head parts padded to the largest (one shape) |
    | `divergence_threshold` | `1e3`    | diverged also when a loss exceeds threshold × its start (None: v1) |
    | `trunk_optimizer` | `None`        | after the rule: `sgd`, `momentum`, `adam`, `adamw`, `torch.optim.Adam`… |
    | `trunk_optimizer_kwargs` | `None` | its options (`lr`, `betas`, `eps`, `momentum`, …; torch's defaults) |
    | `head_optimizer` | `None`         | the same on every head (per coordinate, so per task)      |
    | `head_optimizer_kwargs` | `None`  | its options                                               |
    | `noise_model`    | `None`         | a `NoiseSpec` or dict: gradient, label, Byzantine, delay |
    | `regularisation` | `None`         | a `RegSpec` or dict: λ/2 ‖Θ_m − Θ̂_m‖² toward equilibrium |
    | `**suite_kwargs` |                | options of the suite (see its class)                      |

    ## Infos
    Default (``numeric_infos=True``): numbers only, the same keys at reset and at every step, as TorchRL and
    RLlib build specs from them: ``loss``, ``t``, ``diverged`` (0 or 1), ``nash_gap`` (ℓ_m − min_Θ ℓ_m,
    Definition 1) where the suite computes it cheaply (quadratic, toy2d), and what a player needs to read its
    observation and form its action: ``head_size``, ``trunk_size``, ``step_size_mode`` (0 or 1),
    ``log_step_low``, ``log_step_high``, ``unit_actions`` (0 or 1) and ``relative_updates`` (0 or 1). The task's name is
    ``env.task_name(agent)``. With ``numeric_infos=False`` (v1): ``task`` (name), ``loss``, ``t``, ``nash_gap``
    where cheap; after ``reset`` also ``head_size``, ``trunk_size``, ``action_mode``, ``log_step_range``,
    ``step_size_units`` and ``update_units``; on divergence ``termination == "diverged"`` and a ``reason``
    (``"out_of_domain"`` and a ``reason`` when a loss leaves the consensus rule's domain, see Episode End); and every
    ``metrics_every`` steps ``metrics``: the agent's ``nash_gap``, ``stationarity`` and held-out ``loss``, and
    the game's metrics (see :meth:`metrics`).

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
    * v6: ``update``-mode actions in units of each coordinate's reference descent step (``update_units="relative"``,
      the Box ``[-max_update/4, max_update]``): a random policy plays whole episodes (v5's ±1 per coordinate ended
      every random digits game at its first step), and the baseline agents convert exactly, so they play the same
      updates as in v5. ``update_units="raw"`` restores v5 exactly. Numeric infos gain ``relative_updates``. New
      options, off by default (the game is then unchanged): ``noise_model`` (gradient, label, Byzantine and stale
      noise; Assumption 7) and ``regularisation`` (λ/2 ‖Θ_m − Θ̂_m‖²; Assumption 6).
    * v5: results the same on every CPU, and rules as their sources compute them: game b of a batch equals the
      lone game under every MKL code path (the quadratic suite's A z no longer a GEMM over the games; the digits
      head gradients from a plain backward); ``nash_mtl`` is the exact bargaining solution (torchjd's ECOS
      weights refined by Newton's method; ``rule.refinements`` counts ECOS's misses); ``imtl_g`` from the SVD
      of the proposals (accurate on near-duplicates); ``krum`` from exact distances with ties to the lowest
      index; ``fairgrad`` exact at every scale; ``db_mtl`` defaults to LibMTL's σ = 0 (was 0.5).
    * v4: a feature every player observes alike: symlog of the norm of the trunk's last move (index 7; the
      observation is one longer). A rule that adapts the trunk step to it stays common to all players, where one
      that reads its own gradient moves ``sum``'s fixed point (the learned MLP rule's brake reads it).
    * v3: consensus as the MTL literature computes it: the named rules are exactly positively homogeneous
      (torchjd's absolute cut-offs no longer zero out or average small proposals: ``cagrad``, ``upgrad`` and
      ``dualproj`` differ at small step sizes), ``mgda`` is the exact minimum-norm point for any number of
      tasks, ``nash_mtl`` steps by its unit direction times the proposals' mean norm (``max_norm`` default 0:
      no cap); optional optimizers after the rule (``trunk_optimizer``, ``head_optimizer``) and loss-aware
      rules; every argument checked without coercion (a suite instance keeps its dtype and device).
    * v2: defaults that work with the MARL libraries' plain recipes: ``step_size`` actions in [−1, 1] over
      ``log_step_range=(-5, -1)`` (its middle, α ≈ 0.05, a sound step on every shipped suite); numeric
      infos; a finite divergence reward that never makes divergence
      pay (``"remaining"``), and a game that blows up (a loss 1000 times its start) counts as diverged;
      ``update``-mode heads padded to one shape for every agent. v1's behaviour:
      ``step_size_units="log"``, ``log_step_range=(-20, 2)``,
      ``numeric_infos=False``, ``divergence_reward="clipped_loss"``, ``pad_heads=False``,
      ``divergence_threshold=None``.
    * v1: the game runs on :mod:`mtg_env.engine`. Randomness is counter-based per game (every draw a hash
      of seed, episode, step): the same seed gives other initial parameters and batches than v0;
      ``reset(seed=None)`` plays the seed's next episode; features are computed in the env's dtype.
    * v0: initial release.
    """

    # Not a ClassVar: PettingZoo reads metadata per instance, and __init__ sets a per-suite name.
    metadata: dict[str, Any] = {  # noqa: RUF012
        "name": "mtg_v6",
        "render_modes": ["human", "ansi", "rgb_array"],
        "is_parallelizable": True,
        "render_fps": 10,
    }

    def __init__(
        self,
        suite: str | TaskSuite = "digits",
        consensus: str | ConsensusRule = "sum",
        action_mode: ActionMode = "update",
        max_cycles: int = 500,
        render_mode: str | None = None,
        dtype: str | None = None,
        device: str | torch.device | None = None,
        max_update: float | None = 1.0,
        log_step_range: tuple[float, float] = (-5.0, -1.0),
        consensus_kwargs: Mapping[str, Any] | None = None,
        metrics_every: int = 0,
        divergence_reward: float | Literal["remaining", "clipped_loss"] = "remaining",
        numeric_infos: bool = True,
        step_size_units: Literal["unit", "log"] = "unit",
        pad_heads: bool = True,
        divergence_threshold: float | None = 1e3,
        trunk_optimizer: str | type[torch.optim.Optimizer] | None = None,
        trunk_optimizer_kwargs: Mapping[str, Any] | None = None,
        head_optimizer: str | type[torch.optim.Optimizer] | None = None,
        head_optimizer_kwargs: Mapping[str, Any] | None = None,
        update_units: UpdateUnits = "relative",
        noise_model: NoiseSpec | Mapping[str, Any] | None = None,
        regularisation: RegSpec | Mapping[str, Any] | None = None,
        **suite_kwargs: Any,
    ):
        if action_mode not in ("update", "step_size"):
            raise ValueError(f"action_mode must be 'update' or 'step_size', got {action_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.metrics_every = int_arg("metrics_every", metrics_every, low=0, hint="0: never")
        if not (
            divergence_reward in ("remaining", "clipped_loss")
            if isinstance(divergence_reward, str)
            else is_real(divergence_reward) and math.isfinite(divergence_reward)
        ):
            raise ValueError(
                f"divergence_reward must be 'remaining', 'clipped_loss' or a finite number, got {divergence_reward!r}"
            )
        self.divergence_reward: float | str = (
            divergence_reward if isinstance(divergence_reward, str) else float(divergence_reward)
        )
        bool_arg("pad_heads", pad_heads)
        self.pad_heads = pad_heads
        if step_size_units not in ("unit", "log"):
            raise ValueError(f"step_size_units must be 'unit' ([-1, 1] actions) or 'log', got {step_size_units!r}")
        self.step_size_units = step_size_units
        if update_units not in UPDATE_UNITS:
            raise ValueError(
                f"update_units must be 'relative' (units of a reference descent step) or 'raw' (the update itself, "
                f"v5), got {update_units!r}"
            )
        self.update_units: UpdateUnits = update_units
        bool_arg("numeric_infos", numeric_infos)
        if numeric_infos and self.metrics_every:
            raise ValueError(
                "metrics_every needs numeric_infos=False: numeric infos keep one fixed set of number-valued keys, "
                "and the metrics are a nested dict"
            )
        self.numeric_infos = numeric_infos
        max_cycles = int_arg("max_cycles", max_cycles, low=1, hint="steps before truncation")
        if max_cycles > 2**62:  # the engine counts steps in int64
            raise ValueError(f"max_cycles must be at most 2**62, got {max_cycles}")
        #: The optimizers after the consensus rule (trunk) and on the heads (validated specs, or None).
        self.trunk_optimizer = optimizer_spec(trunk_optimizer, trunk_optimizer_kwargs, "trunk_optimizer")
        self.head_optimizer = optimizer_spec(head_optimizer, head_optimizer_kwargs, "head_optimizer")
        #: The noise models and the regulariser (validated specs; ``None`` when off: the v5 game exactly).
        self.noise_model, self.regularisation = noise_spec(noise_model), reg_spec(regularisation)
        if max_update is not None and not (is_real(max_update) and 0 < max_update < float("inf")):
            raise ValueError(f"max_update must be a finite number > 0 or None (no bound), got {max_update!r}")
        if not (isinstance(log_step_range, (tuple, list)) and len(log_step_range) == 2):
            raise ValueError(f"log_step_range must be a pair (low, high), got {log_step_range!r}")
        if not all(is_real(v) for v in log_step_range):
            raise ValueError(f"log_step_range must hold two numbers, got {log_step_range!r}")
        lo, hi = (float(v) for v in log_step_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"log_step_range must be finite (low, high) with low < high, got {log_step_range}")
        if device is not None:
            _check_device(device)
        self.suite = make_suite(suite, device=device, dtype=dtype, **suite_kwargs)
        self.device = self.suite.device
        self.dtype = self.suite.dtype
        self.np_dtype: Any = np.float32 if self.dtype == torch.float32 else np.float64
        largest = float(torch.finfo(self.dtype).max)
        if max_update is not None and max_update > largest:
            raise ValueError(f"max_update must be at most {largest:.4g} (the largest {self.dtype}), got {max_update!r}")
        if consensus_kwargs is not None and not isinstance(consensus_kwargs, Mapping):
            raise TypeError(f"consensus_kwargs must be a dict of the rule's options or None, got {consensus_kwargs!r}")
        self.consensus = consensus_rule(consensus, num_tasks=self.suite.num_tasks, **dict(consensus_kwargs or {}))
        self.action_mode: ActionMode = action_mode
        self.max_cycles = max_cycles
        self.render_mode = render_mode
        self.max_update = float("inf") if max_update is None else float(max_update)
        self.log_step_range = (lo, hi)
        self.metadata = {**type(self).metadata, "name": f"mtg_{self.suite.name}_v6"}

        self.possible_agents = [f"task_{m}" for m in range(self.suite.num_tasks)]
        self.agents: list[str] = []
        self._index = {a: m for m, a in enumerate(self.possible_agents)}
        self._head_sizes = self.suite.head_sizes
        self._offsets = self.suite.head_offsets
        self._uniform_heads = len(set(self._head_sizes)) == 1
        # Update mode with heads of unequal sizes: every agent's head part padded to the largest head, so all
        # agents share one observation and one action shape (SuperSuit, TorchRL's groups and one shared policy
        # expect that). The padding of an observation is zero; the padding of an action is ignored.
        self._pad = pad_heads and action_mode == "update" and not self._uniform_heads
        widest = max(self._head_sizes) if self._head_sizes else 0
        self._slots = tuple(widest if self._pad else h for h in self._head_sizes)
        #: The game this env plays: one game (B = 1) of the engine.
        self.game = Game(
            self.suite,
            self.consensus,
            action_mode=action_mode,
            horizon=self.max_cycles,
            divergence_reward=self.divergence_reward,  # type: ignore[arg-type]  # checked above
            divergence_threshold=divergence_threshold,
            trunk_optimizer=self.trunk_optimizer,
            head_optimizer=self.head_optimizer,
            update_units=update_units,
            noise_model=self.noise_model,
            regularisation=self.regularisation,
        )
        self._build_spaces()
        # Actions of all agents stack into one [M, k] array unless update-mode heads differ in size;
        # then they are concatenated and split by these positions (one gather each).
        self._stackable = action_mode == "step_size" or self._uniform_heads or self._pad
        self._seed: int | None = None
        self._episode = 0
        self._state: GameState | None = None
        self._loss_history: list[list[float]] = []

    # --------------------------------------------------------------------------------- spaces
    def _build_spaces(self) -> None:
        # The feature bounds are the engine's (features are clipped into them there).
        big = self.game.big
        f_low = self.game.feature_low.cpu().numpy()
        f_high = self.game.feature_high.cpu().numpy()
        self._big = big
        n = self.suite.trunk_size
        self._observation_spaces: dict[str, spaces.Box] = {}
        self._action_spaces: dict[str, spaces.Box] = {}
        for agent, h in zip(self.possible_agents, self._slots, strict=True):  # h: the head's slot (padded)
            if self.action_mode == "update":
                grad_lim: np.ndarray = np.full(h + n, big, dtype=self.np_dtype)
                low = np.concatenate([-grad_lim, f_low])
                high = np.concatenate([grad_lim, f_high])
                self._observation_spaces[agent] = spaces.Box(low, high, dtype=self.np_dtype)
                low_update = UPHILL * self.max_update if self.update_units == "relative" else -self.max_update
                self._action_spaces[agent] = spaces.Box(low_update, self.max_update, (h + n,), self.np_dtype)
            else:
                self._observation_spaces[agent] = spaces.Box(f_low, f_high, dtype=self.np_dtype)
                lo, hi = self.log_step_range if self.step_size_units == "log" else (-1.0, 1.0)
                self._action_spaces[agent] = spaces.Box(lo, hi, (2,), self.np_dtype)
        m = self.suite.num_tasks
        self.state_space = spaces.Box(np.tile(f_low, m), np.tile(f_high, m), dtype=self.np_dtype)
        # Every agent's Box has these bounds, in the Box's own dtype: an action clipped to the Box passes the range
        # check whatever numpy's casting rules (numpy 1.x compares a float32 array with a Python float in float64).
        first = self._action_spaces[self.possible_agents[0]]
        self._action_low, self._action_high = first.low.flat[0], first.high.flat[0]

    def observation_space(self, agent: str) -> spaces.Box:
        """The agent's observation space (the same object on every call)."""
        return self._observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Box:
        """The agent's action space (the same object on every call)."""
        return self._action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self._index:
            raise KeyError(f"unknown agent {agent!r}; agents are {self.possible_agents}")
        return agent

    @property
    def trunk_size(self) -> int:
        """Number of trunk parameters n (length of every trunk proposal)."""
        return self.suite.trunk_size

    def head_size(self, agent: str) -> int:
        """Number of head parameters h_m of ``agent``."""
        return self._head_sizes[self._index[self._check_agent(agent)]]

    def head_slot(self, agent: str) -> int:
        """Length of the head part of ``agent``'s ``update``-mode observation and action: h_m, or the largest
        head when heads are padded (``pad_heads``); the trunk part starts there."""
        return self._slots[self._index[self._check_agent(agent)]]

    def step_size_action(self, alpha: float, beta: float | None = None) -> np.ndarray:
        """The ``step_size``-mode action (in this env's units) that plays head step α and trunk step β (default α).

        Raises:
            ValueError: outside ``step_size`` mode, for a step that is not > 0, or one whose log is outside
                ``log_step_range`` (the env would have to clip it: widen the range instead).
        """
        if self.action_mode != "step_size":
            raise ValueError("step_size_action is for action_mode='step_size'; in update mode the action is the update")
        steps = [alpha, alpha if beta is None else beta]
        if not all(is_real(v) and 0 < v < float("inf") for v in steps):
            raise ValueError(f"step sizes must be finite numbers > 0, got alpha={alpha!r}, beta={beta!r}")
        log = np.log(np.asarray(steps, dtype=np.float64))
        lo, hi = self.log_step_range
        if not (lo <= log.min() and log.max() <= hi):
            raise ValueError(
                f"step sizes {steps} (log {log.round(3).tolist()}) are outside log_step_range {[lo, hi]}: "
                f"steps from {math.exp(lo):.3g} to {math.exp(hi):.3g}; set log_step_range=... to widen it"
            )
        if self.step_size_units == "log":
            return np.clip(log, lo, hi).astype(self.np_dtype)
        # Into [-1, 1]; the clip only absorbs round-off of the affine map at the ends.
        return np.clip(2.0 * (log - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(self.np_dtype)

    def task_name(self, agent: str) -> str:
        """The task an agent plays, e.g. ``"digit"``."""
        return self.suite.tasks[self._index[self._check_agent(agent)]].name

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
        start = self._start_params(options)  # validate before touching any state
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
        infos = self._infos(losses, None)
        if self.numeric_infos:
            return observations, infos
        for agent, h, slot in zip(self.agents, self._head_sizes, self._slots, strict=True):
            infos[agent].update(
                head_size=h,
                head_slot=slot,
                trunk_size=self.trunk_size,
                action_mode=self.action_mode,
                log_step_range=self.log_step_range,
                step_size_units=self.step_size_units,
                update_units=self.update_units,
            )
        if not finite:  # a start that is already non-finite: report it, the first step will terminate
            for info in infos.values():
                info["warning"] = "non-finite loss or parameter at reset"
        elif bool(out.out_of_domain[0]):  # likewise a start outside the rule's domain
            for info in infos.values():
                info["warning"] = f"a loss at reset is outside the domain of {rule_name(self.consensus)!r}"
        return observations, infos

    def _start_params(self, options: Mapping[str, Any] | None) -> dict[str, Tensor | None]:
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
        for key, size in (("heads", self._offsets[-1]), ("trunk", self.trunk_size)):
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

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]]:
        """Play one round: every live agent's action at once (see the class docstring)."""
        if self._state is None:
            raise RuntimeError("step() called before reset(); call env.reset(seed=...) first")
        if not self.agents:
            raise RuntimeError("step() called after the episode ended (all agents done); call env.reset()")
        actions_t = self._parse_actions(actions)
        # The engine is pure: a rule that raises leaves self._state, the game, exactly as it was.
        state, out = engine.step(self.game, self._state, actions_t)
        self._state = state
        observations, losses, finite = self._observe(out)
        agents = self.agents
        rewards = dict(zip(agents, out.rewards[0].tolist(), strict=True))
        stuck = bool(out.out_of_domain[0])
        reason = self._divergence_reason(losses) if not finite else self._domain_reason(losses) if stuck else None
        truncated = bool(out.truncated[0])
        terminated = not finite or stuck
        terminations = dict.fromkeys(agents, terminated)
        truncations = dict.fromkeys(agents, truncated)
        infos = self._infos(losses, reason, diverged=not finite)
        if terminated or truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def _parse_actions(self, actions: Mapping[str, Any]) -> Tensor | tuple[Tensor, Tensor]:
        """Validate every action, then make them the engine's actions of one game."""
        if not isinstance(actions, Mapping):
            raise TypeError(f"actions must be a dict {{agent: action}}, got {type(actions).__name__}")
        unknown = [a for a in actions if a not in self._index]
        if unknown:
            raise ValueError(f"action for unknown agent(s) {unknown}; live agents are {self.agents}")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"no action for agent(s) {missing}; every live agent {self.agents} must act each step")
        arrays = [self._as_array(a, actions[a]) for a in self.agents]
        low, high = self._action_low, self._action_high
        if self._stackable:
            joint = np.stack(arrays)
            parts: tuple[np.ndarray, ...] = (joint,)
        else:  # heads of different sizes: copy each action's two parts straight to where they belong
            heads = np.empty(self._offsets[-1], dtype=self.np_dtype)
            trunk = np.empty((len(arrays), self.trunk_size), dtype=self.np_dtype)
            for m, arr in enumerate(arrays):
                h = self._head_sizes[m]
                heads[self._offsets[m] : self._offsets[m + 1]] = arr[:h]
                trunk[m] = arr[h:]
            parts = (heads, trunk)
        # One range test over all actions at once; NaN fails it too (comparisons with NaN are false).
        # Only when it fails does the slow path look for the agent to name.
        if not all(low <= p.min() and p.max() <= high and np.isfinite(p).all() for p in parts if p.size):
            for agent, arr in zip(self.agents, arrays, strict=True):
                self._check_values(agent, arr, low, high)
        tensors = [torch.from_numpy(p).to(self.device).unsqueeze(0) for p in parts]
        if self.action_mode == "step_size" and self.step_size_units == "unit":
            lo, hi = self.log_step_range
            return lo + (tensors[0] + 1.0) * (0.5 * (hi - lo))  # [−1, 1] onto the log step sizes [lo, hi]
        if self._stackable:
            return tensors[0]  # [1, M, k]: log step sizes, or updates of equal-size heads
        if self.action_mode == "update" and self.update_units == "relative":
            # The engine takes the parts as the updates themselves: decode them here, with the one codec.
            state = self.engine_state
            return decode(tensors[0], state.head_grads), decode(tensors[1], state.jacobian)
        return tensors[0], tensors[1]  # (head updates [1, H], proposals [1, M, n])

    def check_action(self, agent: str, action: Any) -> None:
        """Refuse one agent's action as :meth:`step` would (unknown or finished agent, shape, NaN, outside the
        Box), with the same message; the AEC API checks each action when it is given, not when the last agent
        acts."""
        if agent not in self.agents:
            raise ValueError(f"{agent!r} is not a live agent; live agents are {self.agents}")
        self._check_values(agent, self._as_array(agent, action), self._action_low, self._action_high)

    def _as_array(self, agent: str, action: Any) -> np.ndarray:
        shape = self._action_spaces[agent].shape
        if isinstance(action, Tensor):
            action = action.detach().cpu().numpy()
        try:
            arr = np.asarray(action, dtype=self.np_dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"action for {agent!r} is not a numeric array ({err}); expected shape {shape}") from None
        if arr.shape != shape:
            h, slot = self.head_size(agent), self.head_slot(agent)
            head = f"head {h}" if h == slot else f"head {h} padded to {slot}"
            what = f"{head} + trunk {self.trunk_size}" if self.action_mode == "update" else "(head step, trunk step)"
            raise ValueError(f"action for {agent!r} has shape {arr.shape}, expected {shape} = {what}")
        return arr

    def _check_values(self, agent: str, arr: np.ndarray, low: Any, high: Any) -> None:
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(
                f"action for {agent!r} is not finite (value {arr[bad]} at index {bad}); send finite numbers"
            )
        lo, hi = arr.min(), arr.max()
        if lo < low or hi > high:
            digits = 9 if self.np_dtype == np.float32 else 17  # enough to tell a value 1 ulp outside the bound
            if self.action_mode == "update":
                limit = f"[{float(low):g}, {float(high):g}] (raise max_update=... or clip the action)"
            elif self.step_size_units == "unit":
                limit = f"[-1, 1], mapped onto the log step sizes {list(self.log_step_range)} (clip the action)"
            else:
                limit = f"{list(self.log_step_range)} (set log_step_range=... or clip the action)"
            raise ValueError(
                f"action for {agent!r} is outside its action space: values span [{lo:.{digits}g}, {hi:.{digits}g}], "
                f"allowed {limit}; np.clip(action, space.low, space.high) does it"
            )

    def _observe(self, out: StepOutput) -> tuple[dict[str, np.ndarray], list[float], bool]:
        """Observations of all agents, the losses as floats, and whether everything is finite."""
        feats = out.features[0].cpu().numpy()
        losses = out.losses[0].tolist()
        finite = not bool(out.diverged[0])
        self._feats = feats
        self._loss_history.append(losses)
        if self.action_mode == "step_size":
            return dict(zip(self.agents, feats.copy(), strict=True)), losses, finite
        heads = out.head_grads[0].cpu().numpy()
        jac = out.jacobian[0].cpu().numpy()
        obs = {}
        for m, agent in enumerate(self.agents):
            head = heads[self._offsets[m] : self._offsets[m + 1]]
            pad = np.zeros(self._slots[m] - head.shape[0], dtype=self.np_dtype)
            obs[agent] = np.concatenate((head, pad, jac[m], feats[m]))
        # Keep observations inside their Box (after a divergence, or gradients beyond the float range).
        if not (finite and np.isfinite(heads).all() and np.isfinite(jac).all()):
            for agent, o in obs.items():
                obs[agent] = np.nan_to_num(o, nan=0.0, posinf=self._big, neginf=-self._big)
        return obs, losses, finite

    def _infos(self, losses: list[float], reason: str | None, diverged: bool = False) -> dict[str, dict[str, Any]]:
        gaps = self._cheap_gaps()
        if self.numeric_infos:  # the same numeric keys at reset and at every step (TorchRL builds specs from them)
            numeric: dict[str, dict[str, Any]] = {}
            lo, hi = self.log_step_range
            constants = {
                "step_size_mode": float(self.action_mode == "step_size"),
                "log_step_low": lo,
                "log_step_high": hi,
                "unit_actions": float(self.step_size_units == "unit"),
                "relative_updates": float(self.update_units == "relative"),
            }
            for m, agent in enumerate(self.agents):
                values = {"loss": losses[m], "t": float(self._t), "diverged": float(diverged)}
                if gaps is not None:
                    values["nash_gap"] = gaps[m]
                values.update(
                    head_size=float(self._head_sizes[m]),
                    head_slot=float(self._slots[m]),
                    trunk_size=float(self.trunk_size),
                    **constants,
                )
                numeric[agent] = values
            return numeric
        metrics = (
            self.metrics() if self.metrics_every and self._t % self.metrics_every == 0 and reason is None else None
        )
        infos: dict[str, dict[str, Any]] = {}
        for m, agent in enumerate(self.agents):
            info: dict[str, Any] = {"task": self.suite.tasks[m].name, "loss": losses[m], "t": self._t}
            if gaps is not None:
                info["nash_gap"] = gaps[m]
            if reason is not None:
                info["termination"] = "diverged" if diverged else "out_of_domain"
                info["reason"] = reason
            if metrics is not None:
                info["metrics"] = {**metrics["agents"][agent], **metrics["game"]}
            infos[agent] = info
        return infos

    def _cheap_gaps(self) -> list[float] | None:
        """Per-task Nash gaps where the suite computes them cheaply (reported every step), else None."""
        if not self.suite.cheap_nash_gap:
            return None
        return self.suite.nash_gaps(self._heads, self._trunk).tolist()

    def _domain_reason(self, losses: list[float]) -> str:
        """Why a game left its consensus rule's domain (a loss at or below the rule's floor)."""
        floor = self.game.loss_floor
        assert floor is not None
        low = [
            f"{a} is {loss:.6g} (floor {f:.3g})"
            for a, loss, f in zip(self.agents, losses, floor.tolist(), strict=True)
            if math.isfinite(loss) and loss <= f
        ]
        where = ", ".join(low) if low else "was at or below its floor at reset"
        return (
            f"loss of {where}: consensus rule {rule_name(self.consensus)!r} takes logarithms or ratios of the losses "
            "and needs every loss above its floor, so the game cannot step on"
        )

    def _divergence_reason(self, losses: list[float]) -> str:
        bad = [a for a, loss in zip(self.agents, losses, strict=True) if not np.isfinite(loss)]
        if bad:
            return f"non-finite loss for {bad}"
        threshold = self.game.divergence_threshold
        if threshold is not None:
            start = self.engine_state.start_losses[0].tolist()
            high = [
                a
                for a, loss, s in zip(self.agents, losses, start, strict=True)
                if abs(loss) > threshold * max(1, abs(s))
            ]
            if high:
                return f"loss of {high} above {threshold:g} times its start (divergence_threshold)"
        return "non-finite parameters"

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
        if self.game.rule_kind == "object":
            raise TypeError(
                f"consensus rule {rule_name(self.consensus)!r} keeps its state on itself (a callable with reset()): "
                "its games cannot be restored from data; give it init_state and step (see mtg_env.consensus)"
            )
        restored = _checkpoint.verify(self, checkpoint)
        # Everything checked: install.
        self._state = restored.state
        self._seed, self._episode = restored.seed, restored.episode
        self.agents = restored.agents
        self._feats = restored.features
        self._loss_history = restored.loss_history

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
        from mtg_env.metrics import game_metrics

        state = self.engine_state
        rule = state.rule_objects[0] if state.rule_objects else self.consensus
        game_state = {k: v[0] for k, v in state.rule_state.items()} if state.rule_state else None
        values = game_metrics(self.suite, self._heads, self._trunk, rule, split, rule_state=game_state)
        per_agent = {
            agent: {
                "loss": values["loss"][m],
                "nash_gap": values["nash_gap"][m],
                "stationarity": values["stationarity"][m],
            }
            for m, agent in enumerate(self.possible_agents)
        }
        game = {k: v for k, v in values.items() if k not in ("loss", "nash_gap", "stationarity")}
        return {"agents": per_agent, "game": game}

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Per agent: task name, loss on the whole training objective, and the suite's held-out metrics."""
        self._require_started()
        with torch.no_grad():
            train = self.suite.losses(self._heads, self._trunk, self.suite.train_batch()).tolist()
        held_out = self.suite.evaluate(self._heads, self._trunk)
        return {
            agent: {"task": task.name, "train_loss": train[m], **held_out[task.name]}
            for m, (agent, task) in enumerate(zip(self.possible_agents, self.suite.tasks, strict=True))
        }

    def _require_started(self) -> None:
        if self._state is None:
            raise RuntimeError("the env has no game yet; call env.reset(seed=...) first")

    # ----------------------------------------------------------------------------- render
    def render(self, mode: str | None = None) -> str | np.ndarray | None:
        """Render per ``render_mode`` (or ``mode``, for wrappers that pass it): ``ansi`` a text table,
        ``human`` the same printed, ``rgb_array`` the loss curves as an ``[H, W, 3]`` uint8 image."""
        mode = mode or self.render_mode
        if mode is None:
            return None
        if mode not in self.metadata["render_modes"]:
            raise ValueError(f"render mode must be one of {self.metadata['render_modes']}, got {mode!r}")
        self._require_started()
        if mode == "rgb_array":
            return self._render_rgb()
        text = self._render_text()
        if mode == "human":
            print(text)
            return None
        return text

    def _render_text(self) -> str:
        losses = self.engine_state.losses[0].tolist()
        gaps = self._cheap_gaps()
        head_norm = self._feats[:, 2].tolist()
        trunk_norm = self.engine_state.jacobian[0].norm(dim=1).tolist()
        lines = [
            f"{self.metadata['name']}  t={self._t}/{self.max_cycles}  consensus={rule_name(self.consensus)}",
            f"{'agent':<9}{'task':<14}{'loss':>12}{'|g_head|':>12}{'|g_trunk|':>12}"
            + (f"{'nash_gap':>12}" if gaps else ""),
        ]
        for m, agent in enumerate(self.possible_agents):
            head = float(np.expm1(head_norm[m]))  # undo symlog (norms are >= 0)
            row = f"{agent:<9}{self.suite.tasks[m].name:<14}{losses[m]:>12.5g}{head:>12.4g}{trunk_norm[m]:>12.4g}"
            if gaps:
                row += f"{gaps[m]:>12.4g}"
            lines.append(row)
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError as err:  # pragma: no cover - matplotlib is a dependency
            raise ImportError("rgb_array rendering needs matplotlib: pip install matplotlib") from err
        fig = Figure(figsize=(6.4, 4.0), dpi=80)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        history = np.asarray(self._loss_history, dtype=np.float64)
        for m, task in enumerate(self.suite.tasks):
            ax.plot(history[:, m], label=task.name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"{self.metadata['name']} ({rule_name(self.consensus)} consensus)")
        ax.legend(loc="upper right", fontsize="small")
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        """Release rendering resources. None are held between calls (each ``rgb_array`` frame draws on its own
        canvas), so this changes nothing: ``render()`` after ``close()`` still shows the last episode."""

    def __repr__(self) -> str:
        return (
            f"MultiTaskGameEnv(suite={self.suite.name!r}, consensus={rule_name(self.consensus)!r}, "
            f"action_mode={self.action_mode!r}, max_cycles={self.max_cycles})"
        )


def _check_device(device: Any) -> None:
    """A CPU or a usable CUDA device, or an error naming ``device``."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r} ({err})") from None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asks for CUDA, but this torch build has no usable GPU; use device='cpu'")


def parallel_env(**kwargs: Any) -> MultiTaskGameEnv:
    """The environment in PettingZoo's parallel API. Takes :class:`MultiTaskGameEnv`'s arguments."""
    return MultiTaskGameEnv(**kwargs)


class _CheckedAEC(parallel_to_aec_wrapper):
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


def env(**kwargs: Any) -> AECEnv:
    """The environment in PettingZoo's AEC API (agents act in turn), via PettingZoo's ``parallel_to_aec`` wrapper
    (order enforcement included), with every action checked as its agent gives it."""
    return OrderEnforcingWrapper(_CheckedAEC(MultiTaskGameEnv(**kwargs)))
