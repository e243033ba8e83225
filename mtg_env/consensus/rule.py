"""Resolving a rule by name (:func:`consensus_rule`), torchjd's aggregators as rules (:class:`AggregatorRule`), and
what the engine asks of a rule: its state kind, loss floor, config, differentiability, one step."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env._args import int_arg, real_arg
from mtg_env.consensus.aggregators import (
    IMTLGAggregator,
    KrumAggregator,
    MinNormAggregator,
    _near_bargaining,
    bargaining_weights,
)
from mtg_env.consensus.loss_rules import make_loss_rule
from mtg_env.consensus.minnorm import pareto_stationarity
from mtg_env.consensus.table import (
    _LOSS_RULES,
    _OWN_RULES,
    CONSENSUS_RULES,
    RULE_TABLE,
    ConsensusRule,
    ConsensusWarning,
    RuleState,
    mean_rule,
    sum_rule,
)


class AggregatorRule:
    """A torchjd aggregator as a consensus rule, C(P) = −A(−P) (see the module docstring).

    Args:
        name: The rule's name in :data:`RULE_TABLE`.
        aggregator: The torchjd aggregator.
        randomized: Whether it draws random numbers; those then come from the bound generator.
        options: The options it was built with (for ``repr``).
        seed: Seed of its own generator until the env binds its generator.
    """

    def __init__(
        self,
        name: str,
        aggregator: Any,
        randomized: bool,
        options: dict[str, Any],
        seed: int = 0,
        config: dict[str, Any] | None = None,
    ):
        self.name = name
        self.aggregator = aggregator
        self.randomized = randomized
        self.options = options
        #: Every option that shapes the rule, defaults included (what a checkpoint's fingerprint compares).
        self.config = dict(options if config is None else config)
        self._generator = torch.Generator().manual_seed(seed)
        #: Nash-MTL's cap on the step's norm (0: none); the aggregator itself is built uncapped.
        self.max_norm = float(options.get("max_norm", 0.0)) if name == "nash_mtl" else 0.0
        self._state: dict[str, Tensor] | None = None

    @property
    def failures(self) -> int:
        """Steps at which the rule, called as an object, could not do what it promises (Nash-MTL: no bargaining
        solution was found), since its last ``reset()``. A game's count is its state's ``failures``."""
        return 0 if self._state is None else int(self._state.get("failures", torch.zeros(())))

    @property
    def refinements(self) -> int:
        """Nash-MTL called as an object: steps at which torchjd's ECOS solve missed the bargaining solution (not
        even within 1e-3 in cosine) and Newton's refinement found it. A game's count is its state's
        ``refinements``."""
        return 0 if self._state is None else int(self._state.get("refinements", torch.zeros(())))

    # ------------------------------------------------------------------ state: Nash-MTL's warm start, as tensors
    def init_state(self, num_tasks: int, trunk_size: int, dtype: torch.dtype, device: torch.device | str) -> RuleState:
        """One game's state at reset: Nash-MTL's (torchjd's step counter ``nash_step``, its previous weights
        ``nash_alpha`` in float64 with ``nash_alpha_f32`` saying whether torchjd held them in float32; the exact
        bargaining weights of the last solve ``exact_alpha``, zero when there are none; the ``failures`` and
        ``refinements`` counts); empty for every other rule (they keep no state across steps)."""
        if self.name != "nash_mtl":
            return {}
        return {
            "nash_step": torch.zeros((), dtype=torch.int64, device=device),
            "nash_alpha": torch.ones(num_tasks, dtype=torch.float64, device=device),
            "nash_alpha_f32": torch.ones((), dtype=torch.bool, device=device),
            "exact_alpha": torch.zeros(num_tasks, dtype=torch.float64, device=device),
            "failures": torch.zeros((), dtype=torch.int64, device=device),
            "refinements": torch.zeros((), dtype=torch.int64, device=device),
        }

    def step(self, state: RuleState, proposals: Tensor, seed: int | None = None) -> tuple[Tensor, RuleState]:
        """C(P) for one game's proposals ``[M, n]`` and the game's new state (``state`` is not modified): Nash-MTL's
        aggregator is loaded with the game's warm start, solved, and read back; other rules have no state."""
        if self.name != "nash_mtl":
            return self(proposals, seed), state
        weighting = self.aggregator.weighting
        step = int(state["nash_step"])
        if step == 0:
            weighting.reset()  # torchjd's fresh state: its solver problem is rebuilt on this first step
        else:
            if getattr(weighting, "prvs_alpha_param", None) is None:
                weighting._init_optim_problem()  # a game restored mid-episode on a fresh rule
            warm = state["nash_alpha"].detach().cpu().numpy()
            weighting.step = float(step)
            weighting.prvs_alpha = warm.astype(np.float32) if bool(state["nash_alpha_f32"]) else warm.copy()
        solves = step % weighting.update_weights_every == 0  # torchjd's own schedule of solves
        previous = state["exact_alpha"].detach().cpu()
        move, alpha, refined = self._nash(proposals, solves or not bool((previous > 0).all()), previous)
        failed = alpha is None
        failures = int(state["failures"]) + int(failed)
        if failed and failures == 1:  # the first failure of an episode warns; the count keeps every one
            self._warn_failure(-proposals / float(proposals.detach().norm(dim=-1).max()))
        prvs = np.asarray(weighting.prvs_alpha)
        device = state["nash_step"].device
        return move, {
            "nash_step": torch.tensor(int(weighting.step), dtype=torch.int64, device=device),
            "nash_alpha": torch.from_numpy(prvs.astype(np.float64)).to(device),
            "nash_alpha_f32": torch.tensor(prvs.dtype == np.float32, device=device),
            "exact_alpha": (torch.zeros_like(previous) if alpha is None else alpha).to(device),
            "failures": torch.tensor(failures, dtype=torch.int64, device=device),
            "refinements": torch.tensor(int(state["refinements"]) + int(refined), dtype=torch.int64, device=device),
        }

    def check_state(self, state: RuleState) -> None:
        """Refuse a Nash-MTL state no game reaches (a tampered checkpoint), naming the entry."""
        if self.name != "nash_mtl":
            return
        step = int(state["nash_step"])
        if step < 0:
            raise ValueError(f"consensus rule 'nash_mtl': state 'nash_step' must be >= 0, got {step}")
        for key in ("failures", "refinements"):
            count = int(state[key])
            if not 0 <= count <= step:
                raise ValueError(
                    f"consensus rule 'nash_mtl': state {key!r} must be in [0, nash_step={step}], got {count}"
                )
        exact = state["exact_alpha"]
        if not bool(torch.isfinite(exact).all()) or bool((exact < 0).any()):
            raise ValueError("consensus rule 'nash_mtl': state 'exact_alpha' must be finite and >= 0")

    def __call__(self, proposals: Tensor, seed: int | None = None) -> Tensor:
        """C(P) for one game's proposals ``[M, n]``; a randomized rule draws from ``seed`` when given (the
        engine passes one per game and step), else from its own generator. Nash-MTL called as an object plays a
        game of its own: its warm start is kept on the object until ``reset()``."""
        if self.name == "nash_mtl":
            if self._state is None:
                self._state = self.init_state(proposals.shape[0], proposals.shape[1], proposals.dtype, proposals.device)
            move, self._state = self.step(self._state, proposals)
            return move
        if not self.randomized:
            return self._scaled(proposals)
        # torchjd draws from torch's global RNG. Fork it (so the user's global stream is untouched) and
        # seed the fork (so the game's seed decides every draw).
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._generator))
        devices = [proposals.device] if proposals.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            return self._scaled(proposals)

    def _scaled(self, proposals: Tensor) -> Tensor:
        """−A(−P) for a rule without a scale convention; s·(−A(−P/s)) for a homogeneous one, s the largest row
        norm of P (detached: for a homogeneous A the value and its derivative are those of −A(−P)), so that
        torchjd's absolute thresholds see a matrix of unit scale. A zero P gives 0."""
        if not RULE_TABLE[self.name].homogeneous:
            return -self.aggregator(-proposals)
        scale = float(proposals.detach().norm(dim=-1).max())
        if scale == 0.0:
            return proposals[0] * 0.0  # C(0) = 0 for a homogeneous rule; keeps the graph of a differentiable unroll
        if not math.isfinite(scale):
            return -self.aggregator(-proposals)  # non-finite proposals pass through (the game then diverges)
        return -self.aggregator(-proposals / scale) * scale

    def _nash(self, proposals: Tensor, solves: bool, previous: Tensor) -> tuple[Tensor, Tensor | None, bool]:
        """Nash-MTL's bargaining direction with the step-size convention of :data:`RULE_TABLE`: the unit
        direction times the proposals' mean norm (1/M) Σ_m ‖p_m‖ (the agents' mean step), capped at
        ``max_norm`` when that is positive; the exact bargaining weights (``None`` when no solution was found) and
        whether torchjd's solve had missed them.

        torchjd's solve (the authors' sequence of ECOS problems) gives approximate weights, which
        :func:`bargaining_weights` then refines to the exact solution of Gα = 1/α (Newton's method, to
        round-off): so the direction meets its optimality condition and C(s·P) = s·C(P) holds to round-off at
        every scale. Where no solution exists (0 in the hull of the gradients) the move is torchjd's answer (its
        previous weights). Between torchjd's solves (``update_weights_every`` > 1) the last exact weights are
        reused (``solves`` False, ``previous`` those weights)."""
        norms = proposals.detach().norm(dim=-1)
        scale = float(norms.max())
        if scale == 0.0 or not math.isfinite(scale):
            return (proposals.sum(0) * 0.0 if scale == 0.0 else proposals.sum(0)), previous, False
        gradients = -proposals.detach() / scale  # a solver outside autograd (RULE_TABLE: not differentiable)
        weighting = self.aggregator.weighting
        with warnings.catch_warnings():
            # cvxpy's note that the (non-DPP) problem is recompiled at every solve: a remark on speed,
            # repeated once per episode, not on the answer; and ECOS's "inaccurate" remark, which the refinement
            # below supersedes (a step it cannot repair warns with a ConsensusWarning).
            warnings.filterwarnings("ignore", "You are solving a parameterized problem that is not DPP")
            warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
            # numpy's division by zero inside cvxpy, where torchjd's previous weights (the warm start, a game's
            # state) hold a 0 (its solve can return one): 1/α of the linearisation is evaluated in cvxpy's data, not
            # in the answer, which the refinement below recomputes exactly (under warnings-as-errors the step raised)
            warnings.filterwarnings("ignore", "divide by zero encountered", RuntimeWarning, r"cvxpy\.")
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning, r"cvxpy\.")
            start = weighting(gradients).detach()
        refined = False
        alpha: Tensor | None = previous
        if solves:
            gram = gradients.to(torch.float64) @ gradients.to(torch.float64).T
            # torchjd solves on G Gᵀ / ‖G Gᵀ‖_F: its α divided by √‖G Gᵀ‖_F solves the unnormalised equation.
            guess = start.to(torch.float64).cpu()
            alpha = bargaining_weights(gram, guess / float(gram.norm()) ** 0.5)
            refined = alpha is not None and not _near_bargaining(gram.cpu(), guess)
        # Without a solution, torchjd's answer: its previous weights (equal ones at first).
        weights = start if alpha is None else alpha.to(gradients.dtype).to(gradients.device)
        direction = weights @ gradients
        length = float(direction.norm())
        if length == 0.0:
            return proposals.sum(0) * 0.0, alpha, refined
        step = -direction * (float(norms.mean()) / length)
        if self.max_norm > 0.0 and float(step.norm()) > self.max_norm:
            step = step * (self.max_norm / float(step.norm()))
        return step, alpha, refined

    @staticmethod
    def _warn_failure(gradients: Tensor) -> None:
        """Warn of a step without a bargaining solution, naming its cause. Two causes: the gradients have no common
        descent direction (0 lies in their convex hull, e.g. at a Pareto-stationary point), so no solution exists;
        or neither torchjd's solve nor Newton's refinement found it. The first failure of an episode warns;
        ``failures`` counts them all.
        """
        shortest = pareto_stationarity(gradients)
        if shortest <= 1e-6 * float(gradients.norm(dim=1).max()):
            cause = (
                "the task gradients have no common descent direction (0 is in their convex hull, as at a "
                "Pareto-stationary point), so no bargaining solution exists"
            )
        else:
            cause = "neither torchjd's ECOS solve nor Newton's refinement found the bargaining solution"
        warnings.warn(
            ConsensusWarning(
                f"nash_mtl: {cause}; the trunk moved with the previous weights (equal weights on a first step). "
                "Warned once per episode; its state's failures (rule.failures) counts every such step"
            ),
            stacklevel=5,
        )

    def bind(self, generator: torch.Generator) -> None:
        """Draw this rule's random numbers from ``generator`` (the env passes its own)."""
        self._generator = generator

    def reset(self) -> None:
        """Forget the state of the game played by calling this object (Nash-MTL's warm start and step counter)."""
        self._state = None

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"consensus_rule({self.name!r}{opts})"


def consensus_rule(rule: str | ConsensusRule, num_tasks: int | None = None, **options: Any) -> ConsensusRule:
    """Resolve a rule given by name (see :data:`RULE_TABLE`) or pass a callable through.

    Args:
        rule: A name from :data:`CONSENSUS_RULES`, or a callable ``f(P[M, n]) -> [n]``.
        num_tasks: M; needed by ``nash_mtl``, ``krum`` and ``trimmed_mean`` (the env passes it).
        **options: The rule's options (torchjd's constructor arguments, e.g. ``c`` for ``cagrad``,
            ``max_norm`` for ``nash_mtl`` (a cap on the step's norm, default 0: none), ``n_byzantine`` for
            ``krum``); ``seed`` for a randomized rule used outside an env. ``mgda`` is exact and takes none.

    Raises:
        ValueError: for an unknown name (the message lists the rules), options a rule does not take,
            or too few tasks for a rule.
        TypeError: for anything that is neither a name nor a callable.
    """
    if not isinstance(rule, str):
        if callable(rule):
            if options:
                raise ValueError(
                    f"options {sorted(options)} (consensus_kwargs) apply to a named rule, not to a callable"
                )
            return rule
        raise TypeError(f"consensus must be a rule name or a callable, got {type(rule).__name__}")
    if rule not in RULE_TABLE:
        raise ValueError(
            f"unknown consensus rule {rule!r}; available: {list(CONSENSUS_RULES)}, "
            "or pass a callable f(P: Tensor[M, n]) -> Tensor[n]"
        )
    if rule in _LOSS_RULES:
        return make_loss_rule(rule, **options)  # type: ignore[no-any-return]
    if rule in _OWN_RULES:
        if options:
            raise ValueError(f"consensus rule {rule!r} takes no options (consensus_kwargs), got {sorted(options)}")
        return _OWN_RULES[rule]
    spec = RULE_TABLE[rule]
    if num_tasks is not None and num_tasks < spec.min_tasks:
        raise ValueError(f"consensus rule {rule!r} needs at least {spec.min_tasks} tasks, got {num_tasks}")
    seed = int(options.pop("seed", 0))
    if rule == "mgda":
        if options:
            raise ValueError(f"consensus rule 'mgda' is solved exactly and takes no options, got {sorted(options)}")
        return AggregatorRule(rule, MinNormAggregator(), spec.randomized, options, seed)
    if rule == "imtl_g":
        if options:
            raise ValueError(f"consensus rule 'imtl_g' takes no options, got {sorted(options)}")
        return AggregatorRule(rule, IMTLGAggregator(), spec.randomized, options, seed)
    kwargs = _default_options(rule, num_tasks, options)
    import torchjd.aggregation as aggregation  # lazy: the paper's sum and mean need no torchjd

    cls = KrumAggregator if rule == "krum" else getattr(aggregation, str(spec.aggregator))
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"consensus rule {rule!r} has no option(s) {unknown} (consensus_kwargs); its options are {sorted(accepted)}"
        )
    config = {**kwargs, "max_norm": options.get("max_norm", 0.0)} if rule == "nash_mtl" else kwargs
    return AggregatorRule(rule, cls(**kwargs), spec.randomized, options, seed, config)


#: The option each of these rules derives from the number of tasks M (so it needs M unless given).
_NEEDS_NUM_TASKS = {"nash_mtl": "n_tasks", "krum": "n_byzantine", "trimmed_mean": "trim_number"}


def _default_options(rule: str, num_tasks: int | None, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(options)
    _check_options(rule, kwargs, num_tasks)
    if rule in _NEEDS_NUM_TASKS and num_tasks is None and _NEEDS_NUM_TASKS[rule] not in kwargs:
        raise ValueError(f"consensus rule {rule!r} needs num_tasks (the env passes it)")
    if rule == "cagrad":
        kwargs.setdefault("c", 0.5)
    elif rule == "nash_mtl":
        kwargs.setdefault("n_tasks", num_tasks)
        kwargs["max_norm"] = 0.0  # torchjd's cap stays off: the cap acts on the scaled step (AggregatorRule._nash)
    elif rule == "krum":
        kwargs.setdefault("n_byzantine", 1 if num_tasks is not None and num_tasks >= 4 else 0)
        if num_tasks is not None and num_tasks < kwargs["n_byzantine"] + 3:
            raise ValueError(
                f"krum with n_byzantine={kwargs['n_byzantine']} needs at least {kwargs['n_byzantine'] + 3} "
                f"tasks, got {num_tasks}"
            )
    elif rule == "trimmed_mean":
        kwargs.setdefault("trim_number", 1)
        if num_tasks is not None and num_tasks <= 2 * kwargs["trim_number"]:
            raise ValueError(
                f"trimmed_mean with trim_number={kwargs['trim_number']} needs more than "
                f"{2 * kwargs['trim_number']} tasks, got {num_tasks}"
            )
    return kwargs


#: Numeric options of the named rules: (kind, low, low_open); checked when the rule is built, not at its first step.
_OPTION_RANGES: dict[str, tuple[str, float, bool]] = {
    "c": ("real", 0.0, False),
    "norm_eps": ("real", 0.0, False),
    "epsilon": ("real", 0.0, True),
    "max_iters": ("int", 1, False),
    "max_norm": ("real", 0.0, False),
    "update_weights_every": ("int", 1, False),
    "optim_niter": ("int", 1, False),
    "n_byzantine": ("int", 0, False),
    "n_selected": ("int", 1, False),
    "trim_number": ("int", 0, False),
}


def _check_options(rule: str, kwargs: dict[str, Any], num_tasks: int | None) -> None:
    """Refuse a named rule's option of the wrong type or range now, naming it (a NaN ``c`` or a wrong ``n_tasks``
    would otherwise fail, or silently misbehave, only at the first step)."""
    for key, value in kwargs.items():
        if key in _OPTION_RANGES:
            kind, low, low_open = _OPTION_RANGES[key]
            name = f"consensus_kwargs[{key!r}] of {rule!r}"
            if kind == "int":
                int_arg(name, value, low=int(low))
            else:
                real_arg(name, value, low=low, low_open=low_open)
    if rule == "nash_mtl" and "n_tasks" in kwargs:
        n_tasks = int_arg(f"consensus_kwargs['n_tasks'] of {rule!r}", kwargs["n_tasks"], low=1)
        if num_tasks is not None and n_tasks != num_tasks:
            raise ValueError(
                f"consensus_kwargs['n_tasks'] of 'nash_mtl' is {n_tasks}, but the game has {num_tasks} tasks; "
                "leave it out (the env passes the number of tasks)"
            )


def is_batched_rule(rule: ConsensusRule) -> bool:
    """Whether ``rule`` maps ``[B, M, n]`` to ``[B, n]`` in one call: our sum and mean, and callables that
    declare ``batched = True``."""
    return rule is sum_rule or rule is mean_rule or getattr(rule, "batched", False) is True


def rule_state_kind(rule: ConsensusRule) -> str:
    """How ``rule`` keeps state across steps: ``"tensors"`` (it defines ``init_state`` and ``step``, the pure form of
    :mod:`mtg_env.consensus.loss_rules`: the engine carries the state as tensors; an empty ``init_state`` means none),
    ``"object"`` (a callable that keeps state on itself and defines ``reset()``: the engine gives every game its own
    copy and steps a copy of it, never the object in the state), or ``"none"``."""
    if callable(getattr(rule, "init_state", None)) and callable(getattr(rule, "step", None)):
        return "tensors"
    if callable(getattr(rule, "reset", None)):
        return "object"
    return "none"


def rule_is_stateful(rule: ConsensusRule) -> bool:
    """Whether ``rule`` may keep state across steps (see :func:`rule_state_kind`)."""
    return rule_state_kind(rule) != "none"


def rule_loss_floor(
    rule: ConsensusRule, num_tasks: int, dtype: torch.dtype, device: torch.device | str
) -> Tensor | None:
    """``[M]``: the floor every finite loss must stay above for ``rule`` (a rule with ``positive_losses = True``
    and a ``loss_floor`` method, as those of :mod:`mtg_env.consensus.loss_rules`), or ``None`` for a rule that takes any
    losses."""
    floor = getattr(rule, "loss_floor", None)
    if getattr(rule, "positive_losses", False) is not True or not callable(floor):
        return None
    return floor(num_tasks, dtype, device)  # type: ignore[no-any-return]


def rule_config(rule: ConsensusRule) -> dict[str, Any]:
    """Everything that shapes ``rule``, defaults included, as plain values (a checkpoint's fingerprint compares
    it): ``{"rule": name, **options}``. A callable of your own is known by its module and qualified name only."""
    for name, fn in _OWN_RULES.items():
        if fn is rule:
            return {"rule": name}
    if isinstance(rule, AggregatorRule):
        return {"rule": rule.name, **rule.config}
    own = getattr(rule, "name", None)
    if isinstance(own, str) and own in _LOSS_RULES and isinstance(getattr(rule, "options", None), dict):
        defaults = {
            k: p.default
            for k, p in inspect.signature(type(rule)).parameters.items()
            if p.default is not inspect.Parameter.empty and k != "seed"
        }
        return {"rule": own, **defaults, **rule.options}  # type: ignore[attr-defined]
    kind = type(rule) if not inspect.isfunction(rule) else rule
    return {"rule": f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', rule_name(rule))}"}


def rule_differentiable(rule: ConsensusRule) -> bool:
    """Whether a differentiable unroll can pass through ``rule`` (see :attr:`RuleSpec.differentiable`;
    callables are trusted, and may set ``differentiable = False``)."""
    if isinstance(rule, AggregatorRule):
        return RULE_TABLE[rule.name].differentiable
    return getattr(rule, "differentiable", True) is not False


def apply_rule(rule: ConsensusRule, proposals: Tensor, seed: int, losses: Tensor | None = None) -> Tensor:
    """One game's move C(P) (``[M, n] -> [n]``). A randomized named rule draws from ``seed``; a callable with
    ``bind(generator)`` is bound to a generator seeded with ``seed`` first (so a game's seed, episode and
    step decide every draw, and measuring never shifts the game's stream). A rule with ``loss_aware = True``
    is called as ``rule(P, losses)`` with the game's current losses ``[M]``."""
    if isinstance(rule, AggregatorRule):
        return rule(proposals, seed=seed)
    bind = getattr(rule, "bind", None)
    if callable(bind):
        bind(torch.Generator().manual_seed(seed))
    if getattr(rule, "loss_aware", False) is True:
        if losses is None:
            raise ValueError(f"consensus rule {rule_name(rule)!r} is loss-aware: pass the current losses [M]")
        return rule(proposals, losses)  # type: ignore[call-arg]
    return rule(proposals)


def step_rule(
    rule: ConsensusRule, state: RuleState, proposals: Tensor, seed: int, losses: Tensor | None = None
) -> tuple[Tensor, RuleState]:
    """One game's move C(P) and new state for a rule of state kind ``"tensors"`` (see :func:`rule_state_kind`);
    ``state`` is not modified. Draws come from ``seed`` as in :func:`apply_rule`: a named rule's own way, any other
    rule's from a generator seeded with it."""
    if isinstance(rule, AggregatorRule):
        return rule.step(state, proposals, seed)
    loss_aware = getattr(rule, "loss_aware", False) is True
    if loss_aware and losses is None:
        raise ValueError(f"consensus rule {rule_name(rule)!r} is loss-aware: pass the current losses [M]")
    step = rule.step  # type: ignore[attr-defined]
    return step(state, proposals, losses if loss_aware else None, torch.Generator().manual_seed(seed))  # type: ignore[no-any-return]


def rule_name(rule: ConsensusRule) -> str:
    """A short name for a rule, for reports: its registry name, else its repr."""
    for name, fn in _OWN_RULES.items():
        if fn is rule:
            return name
    if isinstance(rule, AggregatorRule):
        return rule.name
    return getattr(rule, "__name__", repr(rule))
