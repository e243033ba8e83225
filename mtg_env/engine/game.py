"""The frozen description of a game: what the engine plays (suite, consensus rule, action mode, horizon)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from mtg_env._args import int_arg, is_real
from mtg_env.consensus import (
    ConsensusRule,
    is_linear,
    is_min_bounded,
    rule_loss_floor,
    rule_name,
    rule_state_kind,
    unanimity_gain,
)
from mtg_env.engine.codec import UpdateUnits
from mtg_env.engine.layout import ActionMode, check_action_mode, check_update_units, feature_bounds, largest
from mtg_env.engine.noise import NoiseSpec, RegSpec, noise_spec, reg_spec
from mtg_env.engine.optim import BoundOptimizer, OptimizerSpec

if TYPE_CHECKING:  # the suites import the engine's randomness: no runtime import back
    from mtg_env.suites.base import TaskSuite

#: The engine counts steps in int64.
MAX_HORIZON = 2**62


def check_horizon(horizon: object, name: str = "horizon") -> int:
    """``horizon`` (the env's ``max_cycles``) as an int in [1, 2**62], or an error naming ``name``."""
    value = int_arg(name, horizon, low=1, hint="steps before truncation")
    if value > MAX_HORIZON:  # the engine counts steps in int64
        raise ValueError(f"{name} must be at most 2**62, got {value}")
    return value


def check_divergence_reward(
    reward: object, dtype: torch.dtype | None = None
) -> float | Literal["remaining", "clipped_loss"]:
    """``reward`` as ``"remaining"``, ``"clipped_loss"`` or a float (finite, and within ``dtype``'s range where
    given), or a ``ValueError`` naming ``divergence_reward``."""
    if isinstance(reward, str) and reward in ("remaining", "clipped_loss"):
        return reward  # type: ignore[return-value]
    if isinstance(reward, str) or not (is_real(reward) and math.isfinite(reward)):  # type: ignore[arg-type]
        raise ValueError(f"divergence_reward must be 'remaining', 'clipped_loss' or a finite number, got {reward!r}")
    if dtype is not None and abs(reward) > largest(dtype):  # type: ignore[arg-type]
        raise ValueError(f"divergence_reward must be finite in {dtype} (|r| <= {largest(dtype):.4g}), got {reward!r}")
    return float(reward)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Game:
    """A game spec. The suite fixes the dtype and device; everything here is fixed for the game's life.

    The derived fields (sizes, index tensors, feature bounds) are computed once, so a step does no Python
    work that grows with the number of parameters.
    """

    suite: TaskSuite
    """The tasks, their data, trunk and heads (fixes ``dtype`` and ``device``)."""
    consensus: ConsensusRule
    """How the trunk proposals ``[M, n]`` become one move ``[n]`` (a rule of :mod:`mtg_env.consensus`)."""
    action_mode: ActionMode = "update"
    """``update``: actions are updates; ``step_size``: actions are natural-log step sizes (head, trunk)."""
    horizon: int = 500
    """Steps before truncation (``max_cycles``)."""
    divergence_reward: float | Literal["remaining", "clipped_loss"] = "remaining"
    """Reward of each task on the step a game diverges: ``"remaining"`` −(horizon − t + 1)·max(1, |ℓ_m at reset|),
    as if the task's loss stayed at its start for the rest of the episode (so ending an episode by divergence
    never pays); a number; or ``"clipped_loss"``, −loss clipped to the finite range (v1)."""
    divergence_threshold: float | None = 1e3
    """A game also diverges when a loss leaves ±threshold · max(1, |its value at reset|) (a blow-up that is
    still finite); ``None``: only when a loss or parameter stops being finite (v1). It keeps rewards in a
    range RL learners handle (a loss of 1e30 before it overflows would otherwise be a reward)."""
    second_order: bool = False
    """In a differentiable unroll, keep the gradients (observations) differentiable too (full second order)
    instead of detaching them (the first-order meta-gradient of Andrychowicz et al. 2016)."""
    trunk_optimizer: OptimizerSpec | None = None
    """The optimizer after the consensus rule (:mod:`mtg_env.engine.optim`): Ψ ← opt(Ψ, gradient −C(P)), its
    state in :attr:`GameState.trunk_opt`; ``None``: Ψ ← Ψ + C(P) (Eq. 21/24)."""
    update_units: UpdateUnits = "relative"
    """``update`` mode: ``relative``, an action is the update in units of each coordinate's reference descent step
    (:mod:`mtg_env.engine.codec`); ``raw``, the action is the update itself (v5). An action given as the tuple
    ``(head_updates, proposals)`` is always the update itself."""
    head_optimizer: OptimizerSpec | None = None
    """The same for the heads (Θ_m ← opt(Θ_m, gradient −u_m), one state per coordinate, so per task);
    ``None``: Θ_m ← Θ_m + u_m (Eq. 23)."""
    noise_model: NoiseSpec | None = None
    """Noise models (Assumption 7; :mod:`mtg_env.engine.noise`): gradient, label, Byzantine, stale proposals;
    ``None`` (or a spec with every model off, stored as ``None``): today's game bit for bit."""
    regularisation: RegSpec | None = None
    """λ/2 ‖Θ_m − Θ̂_m‖² added to each player's loss (Assumption 6; :mod:`mtg_env.engine.noise`); ``None`` or
    λ = 0: off."""

    num_tasks: int = field(init=False)
    trunk_size: int = field(init=False)
    head_sizes: tuple[int, ...] = field(init=False)
    max_head: int = field(init=False)
    uniform_head_size: int | None = field(init=False, repr=False)
    """The size of every head when all are equal (0 for empty heads), else ``None``."""
    head_index: Tensor = field(init=False, repr=False)
    """``[H]`` the task of each head coordinate."""
    head_indicator: Tensor = field(init=False, repr=False)
    """``[H, M]`` one-hot of ``head_index``: sums per-coordinate values into their task."""
    padded_head_index: Tensor = field(init=False, repr=False)
    """``[H]`` where each head coordinate sits in a flattened ``[M, max_head]`` padded layout."""
    feature_low: Tensor = field(init=False, repr=False)
    """``[8]`` the lower bound of each feature."""
    feature_high: Tensor = field(init=False, repr=False)
    """``[8]`` the upper bound of each feature."""
    feature_index: Tensor = field(init=False, repr=False)
    """``[M · 8]`` where feature f of task m sits in the row of ``6M + 3`` values per game that
    :func:`~mtg_env.engine.features.features` computes (symlog of the M losses, M loss changes, M head norms, M
    trunk norms, the mean's norm and the move's norm; M · 2 cosines; progress)."""
    feature_row_low: Tensor = field(init=False, repr=False)
    """``[6M + 3]`` the lower bound of each value of that row."""
    feature_row_high: Tensor = field(init=False, repr=False)
    """``[6M + 3]`` the upper bound of each value of that row."""
    big: float = field(init=False)
    """The dtype's largest finite value."""
    zero_losses: Tensor = field(init=False, repr=False)
    """``[M]`` zeros: losses @ zero_losses is 0 exactly when every loss is finite."""
    zero_heads: Tensor = field(init=False, repr=False)
    """``[H]`` zeros: heads @ zero_heads is 0 exactly when every head coordinate is finite."""
    zero_trunk: Tensor = field(init=False, repr=False)
    """``[n]`` zeros, the same for the trunk."""
    trunk_opt: BoundOptimizer | None = field(init=False, repr=False)
    """``trunk_optimizer`` bound to the game's dtype, device and horizon."""
    head_opt: BoundOptimizer | None = field(init=False, repr=False)
    """``head_optimizer`` bound likewise."""
    rule_kind: str = field(init=False, repr=False)
    """How the consensus rule keeps state (:func:`mtg_env.consensus.rule_state_kind`): ``"tensors"`` (in
    :attr:`GameState.rule_state`), ``"object"`` (per-game copies in :attr:`GameState.rule_objects`) or ``"none"``."""
    rule_init: dict[str, Tensor] = field(init=False, repr=False)
    """One game's rule state at reset (``"tensors"`` rules; empty otherwise)."""
    loss_floor: Tensor | None = field(init=False, repr=False)
    """``[M]`` the floor every finite loss must stay above for the rule (a rule that takes logarithms or ratios
    of the losses), in the game's dtype; ``None`` for a rule that takes any losses."""

    def __post_init__(self) -> None:
        check_action_mode(self.action_mode)
        check_update_units(self.update_units)
        object.__setattr__(self, "divergence_reward", check_divergence_reward(self.divergence_reward, self.dtype))
        big = largest(self.suite.dtype)
        threshold = self.divergence_threshold
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 1.0 < threshold < math.inf
        ):
            raise ValueError(f"divergence_threshold must be a finite number > 1 or None, got {threshold!r}")
        if threshold is not None:
            if float(threshold) > big:
                raise ValueError(
                    f"divergence_threshold must be at most {big:.4g} (the largest {self.suite.dtype}), "
                    f"got {threshold!r}"
                )
            object.__setattr__(self, "divergence_threshold", float(threshold))
        object.__setattr__(self, "horizon", check_horizon(self.horizon, "horizon (max_cycles)"))
        for name in ("trunk_optimizer", "head_optimizer"):
            spec = getattr(self, name)
            if spec is not None and not isinstance(spec, OptimizerSpec):
                raise TypeError(f"{name} must be an OptimizerSpec (mtg_env.engine.optim.optimizer_spec) or None")
        suite = self.suite
        noise, reg = noise_spec(self.noise_model), reg_spec(self.regularisation)
        if noise is not None:
            noise.check(suite)
        if reg is not None:
            reg.check(suite)
        object.__setattr__(self, "noise_model", noise)
        object.__setattr__(self, "regularisation", reg)
        sizes = suite.head_sizes
        device = suite.device
        index = suite.head_task_index()
        set_ = object.__setattr__
        set_(self, "num_tasks", suite.num_tasks)
        set_(self, "trunk_size", suite.trunk_size)
        set_(self, "head_sizes", sizes)
        set_(self, "max_head", max(sizes) if sizes else 0)
        set_(self, "uniform_head_size", sizes[0] if sizes and len(set(sizes)) == 1 else None)
        set_(self, "head_index", index)
        set_(self, "head_indicator", torch.nn.functional.one_hot(index, suite.num_tasks).to(suite.dtype))
        offsets = torch.tensor(suite.head_offsets[:-1], device=device)
        within = torch.arange(index.numel(), device=device) - offsets[index]
        set_(self, "padded_head_index", index * max(1, self.max_head) + within)
        low, high = feature_bounds(suite.dtype, device)
        set_(self, "feature_low", low)
        set_(self, "feature_high", high)
        m = suite.num_tasks
        tasks = torch.arange(m, device=device)
        columns = [tasks, m + tasks, 2 * m + tasks, 3 * m + tasks]  # features 0-3 of task m
        columns += [4 * m + 2 + 2 * tasks, 4 * m + 3 + 2 * tasks, torch.full_like(tasks, 6 * m + 2)]  # 4-6
        columns.append(torch.full_like(tasks, 4 * m + 1))  # 7: the move's norm, the same for every task
        set_(self, "feature_index", torch.stack(columns, 1).reshape(-1))
        row_of = [0] * m + [1] * m + [2] * m + [3] * m + [3, 7] + [4, 5] * m + [6]  # the feature of each row value
        set_(self, "feature_row_low", low[row_of])
        set_(self, "feature_row_high", high[row_of])
        set_(self, "big", big)
        set_(self, "zero_losses", torch.zeros(suite.num_tasks, dtype=suite.dtype, device=device))
        set_(self, "zero_heads", torch.zeros(index.numel(), dtype=suite.dtype, device=device))
        set_(self, "zero_trunk", torch.zeros(suite.trunk_size, dtype=suite.dtype, device=device))
        for name, spec in (("trunk_opt", self.trunk_optimizer), ("head_opt", self.head_optimizer)):
            set_(self, name, None if spec is None else BoundOptimizer(spec, suite.dtype, device, self.horizon))
        kind = rule_state_kind(self.consensus)
        init: dict[str, Tensor] = {}
        if kind == "tensors":
            init = dict(self.consensus.init_state(suite.num_tasks, suite.trunk_size, suite.dtype, device))  # type: ignore[attr-defined]
            kind = "tensors" if init else "none"
        set_(self, "rule_kind", kind)
        set_(self, "rule_init", init)
        floor = rule_loss_floor(self.consensus, suite.num_tasks, suite.dtype, device)
        if floor is not None:
            _check_domain(self.consensus, suite, floor)
        set_(self, "loss_floor", floor)

    @property
    def dtype(self) -> torch.dtype:
        return self.suite.dtype

    @property
    def device(self) -> torch.device:
        return self.suite.device

    @cached_property
    def sum_scale(self) -> float | None:
        """M / γ, γ the consensus rule's unanimity gain (:func:`mtg_env.consensus.unanimity_gain`, measured in float64
        at the game's trunk size, on its device): the factor by which every player scales its trunk proposal so that
        unanimous proposals move the trunk as their sum would (1 under ``sum``, M under ``mean``, ``mgda`` and
        ``upgrad``). ``None`` where the rule has no constant gain: the loss-aware rules (their weights follow the
        losses), a rule that is not positively homogeneous (``fairgrad`` fixes the move's norm), one that does not move
        the trunk along a proposal every player makes, or one that fails on such proposals (a rule of your own may not
        expect M equal rows; its error then surfaces where it plays, not in an info). Computed on first use, which
        calls the rule once on a unanimous matrix (the env's infos carry it as ``sum_scale``)."""
        try:
            return self.num_tasks / unanimity_gain(self.consensus, self.num_tasks, self.trunk_size, device=self.device)
        except Exception:  # any failure of a user's rule on unanimous proposals means: no gain known
            return None

    @cached_property
    def linear_consensus(self) -> bool:
        """Whether the consensus rule is a fixed weighted sum of the proposals, C(P) = Σ_m w_m p_m with the same w at
        every step (:func:`mtg_env.consensus.is_linear`, a finite probe in float64 at the game's number of tasks and
        trunk size, on its device): with two or more players ``sum`` and ``mean`` are; ``mgda``, ``upgrad`` and the
        projection, bargaining, randomized and loss-aware rules are not. Under a linear rule, with every player's trunk
        step the same multiple of its gradient, the trunk's fixed points do not depend on that step; under the others
        the point a game reaches depends on its path. ``False`` where the rule fails on the test matrices. Computed on
        first use, which calls the rule on fixed matrices (the env's infos carry it as ``linear_consensus``)."""
        try:
            return is_linear(self.consensus, self.num_tasks, self.trunk_size, device=self.device)
        except Exception:  # any failure of a user's rule on the test matrices means: not known to be linear
            return False

    @cached_property
    def min_bounded_consensus(self) -> bool:
        """Whether no move of the consensus rule is longer than the shortest proposal, ‖C(P)‖ ≤ min_m ‖p_m‖
        (:func:`mtg_env.consensus.is_min_bounded`, a finite probe in float64 at the game's number of tasks and trunk
        size, on its device): of the named rules only ``mgda`` is; ``sum``, ``mean``, ``upgrad`` and the others are not
        (with one player every rule that moves by at most the proposal is). Under such a rule every player's proposal
        caps the move, so how the players' proposal sizes compare steers the point a game reaches. ``False`` where the
        rule fails on the test matrices. Computed on first use, which calls the rule on fixed matrices (the env's infos
        carry it as ``min_bounded_consensus``)."""
        try:
            return is_min_bounded(self.consensus, self.num_tasks, self.trunk_size, device=self.device)
        except Exception:  # any failure of a user's rule on the test matrices means: not known to be min-bounded
            return False

    @cached_property
    def stochastic_gradients(self) -> bool:
        """Whether the gradients the players observe are random estimates: the suite's
        (:attr:`~mtg_env.suites.TaskSuite.stochastic_gradients`: a minibatch each step), or a noise model that adds
        gradient or label noise (:attr:`noise_model`). The env's infos carry it as ``stochastic_gradients``."""
        noise = self.noise_model
        noisy = noise is not None and (noise.grad_std > 0 or noise.has_label_noise)
        return bool(self.suite.stochastic_gradients) or noisy

    @property
    def uniform_heads(self) -> bool:
        return len(set(self.head_sizes)) <= 1

    @property
    def action_size(self) -> int:
        """Length of one task's action in the engine's ``[B, M, k]`` layout (heads padded to the largest)."""
        return 2 if self.action_mode == "step_size" else self.max_head + self.trunk_size


def _check_domain(rule: ConsensusRule, suite: TaskSuite, floor: Tensor) -> None:
    """Refuse a rule that needs every loss above ``floor`` on a suite whose losses can go below it (its
    :attr:`~mtg_env.suites.base.TaskSuite.loss_lower_bounds`): such a game would leave the rule's domain
    mid-episode. A suite whose bound equals the floor (losses >= 0, reaching 0 only in the limit or by rounding)
    is accepted: a game whose loss still reaches the floor ends then (see :func:`mtg_env.engine.step`)."""
    bounds = suite.loss_lower_bounds
    if bounds is None:
        return
    floors = floor.tolist()
    low = [m for m, (b, f) in enumerate(zip(bounds, floors, strict=True)) if b < f]
    if not low:
        return
    m = low[0]
    name = rule_name(rule)
    text = getattr(rule, "_floor_text", lambda: f"{floors[m]:.3g}")()
    fix = (
        f"set its min_losses at or below each task's lower bound {[round(b, 6) for b in bounds]}"
        if name == "famo"
        else "use a suite whose losses are positive (regression, digits)"
    )
    raise ValueError(
        f"consensus rule {name!r} takes the logarithm or ratio of the losses and needs every loss > {text}, but "
        f"suite {suite.name!r} has losses as low as {bounds[m]:.6g} (task {suite.tasks[m].name!r}, task_{m}): a game "
        f"would leave the rule's domain mid-episode; {fix}"
    )
