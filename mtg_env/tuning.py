"""The tuning protocol (AlgoPerf's external tuning, Kurin et al. 2022): every policy gets the same budget.

A policy enters as a *factory* ``lr -> Policy`` (a baseline by name, a learned agent, any user policy): the
protocol declares a set of step sizes (a log grid with ≥ 3 points per decade, or a quasi-random log-uniform
search) and a set of tuning seeds; :func:`tune` plays every step size on every tuning seed of a workload
(suite, consensus rule, horizon) and keeps the one with the lowest mean final training loss (a diverged trial
counts as +inf); :func:`evaluate` then plays the chosen step size on held-out seeds, disjoint from the tuning
seeds (an overlap is an error). Baselines with a batched form (:class:`Baseline`) play all trials as one
batch of the engine, which gives the numbers the env gives one game at a time (tested)::

    protocol = TuningProtocol(low=1e-3, high=1.0, tuning_seeds=(100, 101), eval_seeds=tuple(range(10)))
    workload = Workload("regression", "mean", horizon=100)
    tuned = tune(Baseline("adam"), workload, protocol)
    results = evaluate(Baseline("adam"), workload, tuned.best_lr, protocol.eval_seeds)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from agents.base import Policy
from mtg_env import engine
from mtg_env.engine.game import Game
from mtg_env.envs.config import EnvConfig
from mtg_env.envs.parallel import MultiTaskGameEnv
from mtg_env.rng import check_seed
from mtg_env.suites.base import TaskSuite

#: ``lr -> Policy``: a fresh player (with its own state) for one task at step size ``lr``.
PolicyFactory = Callable[[float], Policy]


# ----------------------------------------------------------------------------------- the protocol
@dataclass(frozen=True)
class TuningProtocol:
    """The declared tuning budget: which step sizes, on which seeds; and the held-out evaluation seeds.

    Raises:
        ValueError: for a bad range, fewer than 3 grid points per decade, a search without trials, repeated
            seeds, or tuning seeds that overlap the evaluation seeds (tuning on the test seeds).
    """

    low: float = 1e-3
    """Smallest step size searched."""
    high: float = 1.0
    """Largest step size searched."""
    points_per_decade: int = 3
    """Grid density (``search="grid"``): the grid is ``low · 10^(i / points_per_decade)`` up to ``high``."""
    search: Literal["grid", "quasirandom"] = "grid"
    """``grid``: a log grid; ``quasirandom``: ``trials`` points of a van der Corput sequence, log-uniform."""
    trials: int = 0
    """Number of step sizes of the quasi-random search (ignored by the grid)."""
    tuning_seeds: tuple[int, ...] = (100_000, 100_001)
    """Seeds the step size is chosen on."""
    eval_seeds: tuple[int, ...] = tuple(range(10))
    """Held-out seeds the chosen step size is scored on (disjoint from ``tuning_seeds``)."""

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"TuningProtocol.{name} must be a finite number > 0, got {value!r}")
        if not self.low < self.high:
            raise ValueError(f"TuningProtocol needs low < high, got low={self.low}, high={self.high}")
        if self.search not in ("grid", "quasirandom"):
            raise ValueError(f"TuningProtocol.search must be 'grid' or 'quasirandom', got {self.search!r}")
        for name, least in (("points_per_decade", 3), ("trials", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"TuningProtocol.{name} must be an int >= {least}, got {value!r}")
        if self.search == "quasirandom" and self.trials < 1:
            raise ValueError("TuningProtocol(search='quasirandom') needs trials >= 1 (the number of step sizes)")
        for name in ("tuning_seeds", "eval_seeds"):
            seeds = getattr(self, name)
            if not isinstance(seeds, tuple) or not seeds:
                raise ValueError(f"TuningProtocol.{name} must be a non-empty tuple of ints, got {seeds!r}")
            for i, s in enumerate(seeds):
                check_seed(s, f"TuningProtocol.{name}[{i}]")
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"TuningProtocol.{name} repeats a seed: {seeds}")
        overlap = sorted(set(self.tuning_seeds) & set(self.eval_seeds))
        if overlap:
            raise ValueError(
                f"tuning seeds and evaluation seeds must be disjoint (tuning on the held-out seeds leaks them), "
                f"both have {overlap}; pick tuning_seeds outside eval_seeds"
            )

    def step_sizes(self) -> tuple[float, ...]:
        """The step sizes every policy is tried at, in increasing order."""
        lo, hi = math.log10(self.low), math.log10(self.high)
        if self.search == "grid":
            return tuple(float(10 ** (lo + i / self.points_per_decade)) for i in range(self.num_step_sizes))
        return tuple(sorted(float(10 ** (lo + (hi - lo) * _van_der_corput(i + 1))) for i in range(self.trials)))

    @property
    def num_step_sizes(self) -> int:
        """How many step sizes :meth:`step_sizes` has, counted without listing them (a size check of a huge
        protocol must not build it)."""
        if self.search == "grid":
            return math.floor((math.log10(self.high) - math.log10(self.low)) * self.points_per_decade + 1e-9) + 1
        return self.trials

    @property
    def budget(self) -> int:
        """Trials per policy and workload: step sizes × tuning seeds."""
        return self.num_step_sizes * len(self.tuning_seeds)

    def to_dict(self) -> dict[str, Any]:
        """The protocol as plain data, with its step sizes and budget (what a report prints)."""
        return {**asdict(self), "step_sizes": list(self.step_sizes()), "budget": self.budget}

    def describe(self) -> str:
        """One paragraph for a report: the search, the budget, the seeds."""
        lrs = self.step_sizes()
        how = (
            f"a log grid of {len(lrs)} step sizes from {lrs[0]:.3g} to {lrs[-1]:.3g} ({self.points_per_decade} per "
            "decade)"
            if self.search == "grid"
            else f"a quasi-random (van der Corput, log-uniform) search of {len(lrs)} step sizes in "
            f"[{self.low:.3g}, {self.high:.3g}]"
        )
        return (
            f"Each policy is tuned on {how}, each played on {len(self.tuning_seeds)} tuning seeds "
            f"({self.budget} trials per policy and workload); the step size with the lowest mean final training "
            f"loss is kept (a diverged trial counts as +inf) and scored on {len(self.eval_seeds)} held-out seeds "
            "disjoint from the tuning seeds."
        )


def _van_der_corput(i: int, base: int = 2) -> float:
    x, denom = 0.0, 1.0
    while i:
        denom *= base
        i, digit = divmod(i, base)
        x += digit / denom
    return x


# -------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    """A game to tune and score on: a suite (with options), a consensus rule and a horizon."""

    suite: str
    """A suite name (:data:`mtg_env.SUITES`)."""
    consensus: str = "sum"
    """A consensus rule name (:data:`mtg_env.CONSENSUS_RULES`)."""
    horizon: int = 100
    """Steps per game."""
    suite_options: tuple[tuple[str, Any], ...] = ()
    """Suite options as ``(name, value)`` pairs (hashable), e.g. ``(("hidden", (16, 8)),)``."""
    dtype: str = "float32"
    """The game's dtype."""
    device: str = "cpu"
    """The torch device the games run on."""

    def env_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`mtg_env.parallel_env` for this workload (update mode, no bound on an update:
        the players play their rule as written)."""
        return {
            "suite": self.suite,
            "consensus": self.consensus,
            "max_cycles": self.horizon,
            "action_mode": "update",
            "max_update": None,
            "dtype": self.dtype,
            "device": self.device,
            **dict(self.suite_options),
        }

    def config(self) -> EnvConfig:
        """The env's options for this workload (checked)."""
        return EnvConfig.from_kwargs(**self.env_kwargs())

    def make_env(self) -> MultiTaskGameEnv:
        return MultiTaskGameEnv.from_config(self.config())

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.consensus}/T{self.horizon}"


# ------------------------------------------------------------------------------------------ players
class Baseline:
    """A baseline player by name as a factory ``lr -> Policy``, with a batched engine form.

    Args:
        name: A name of :data:`agents.AGENTS` (``gradient``, ``momentum``, ``adam``, ``rmsprop``).
        trunk_ratio: β / α (default: the player's, β = α).
        **kwargs: The player's other arguments (e.g. ``schedule="robbins_monro"``).
    """

    def __init__(self, name: str, trunk_ratio: float | None = None, **kwargs: Any):
        from agents.runner import AGENTS

        if name not in AGENTS:
            raise ValueError(f"unknown baseline {name!r}; available: {sorted(AGENTS)}")
        if "lr" in kwargs or "trunk_lr" in kwargs:
            raise ValueError("a Baseline's lr is what tuning chooses; give trunk_ratio instead of trunk_lr")
        if trunk_ratio is not None and not (
            not isinstance(trunk_ratio, bool) and isinstance(trunk_ratio, (int, float)) and trunk_ratio > 0
        ):
            raise ValueError(f"trunk_ratio must be a number > 0, got {trunk_ratio!r}")
        self.name, self.trunk_ratio, self.kwargs = name, trunk_ratio, dict(kwargs)
        self._cls = AGENTS[name]
        self(1e-3)  # validate the arguments now, not in a worker

    def __call__(self, lr: float) -> Policy:
        trunk = None if self.trunk_ratio is None else lr * self.trunk_ratio
        return self._cls(lr=lr, trunk_lr=trunk, **self.kwargs)

    def batched(self, game: engine.Game, lrs: Tensor) -> Any:
        """The batched form for B games of ``game`` with step sizes ``lrs [B]``."""
        from agents.batched import BatchedBaseline

        return BatchedBaseline(self.name, game, lrs, self.trunk_ratio, **self.kwargs)

    @property
    def has_batched(self) -> bool:
        from agents.batched import BATCHED_BASELINES

        return self.name in BATCHED_BASELINES

    def __repr__(self) -> str:
        args = [repr(self.name)]
        if self.trunk_ratio is not None:
            args.append(f"trunk_ratio={self.trunk_ratio}")
        args += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Baseline({', '.join(args)})"


class Selfish:
    """The selfish deviator as a factory ``lr -> SelfishAgent``: ``inner``'s rule with its trunk proposal scaled by
    ``scale`` (see :class:`agents.SelfishAgent`); batched when ``inner`` is."""

    def __init__(self, inner: PolicyFactory, scale: float = 4.0):
        from agents.selfish import SelfishAgent

        SelfishAgent(inner(1e-3), scale)  # validate now
        self.inner, self.scale = inner, float(scale)

    def __call__(self, lr: float) -> Policy:
        from agents.selfish import SelfishAgent

        return SelfishAgent(self.inner(lr), self.scale)

    @property
    def has_batched(self) -> bool:
        return _batched_form(self.inner)

    def batched(self, game: engine.Game, lrs: Tensor) -> Any:
        return _ScaledProposals(self.inner.batched(game, lrs), self.scale)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"Selfish({self.inner!r}, scale={self.scale})"


class _ScaledProposals:
    def __init__(self, inner: Any, scale: float):
        self.inner, self.scale = inner, scale

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        head_updates, proposals = self.inner.act(head_grads, jacobian)
        # As SelfishAgent: the inner action in the game's dtype, scaled in float64, cast back.
        return head_updates, (self.scale * proposals.to(torch.float64)).to(proposals.dtype)


def _batched_form(factory: Any) -> bool:
    return bool(getattr(factory, "has_batched", False)) and callable(getattr(factory, "batched", None))


# ------------------------------------------------------------------------------------------- games
@dataclass
class GameResult:
    """One game played to its horizon (or its divergence)."""

    seed: int
    lrs: list[float]
    """The step size of each task's player."""
    diverged: bool
    steps: int
    """Steps played (the horizon unless the game diverged)."""
    initial_train_loss: list[float]
    """Per task, the loss on the whole training objective at reset."""
    final_train_loss: list[float] | None
    """Per task, at the end (``None`` when the game diverged)."""
    held_out: dict[str, dict[str, float]] | None
    """The suite's held-out metrics per task name (``None`` when diverged)."""
    nash_gap: list[float] | None
    """Per task, the head Nash gap at the end (when asked for and not diverged)."""
    curve: list[float]
    """``[horizon + 1]`` the mean over tasks of the batch loss at each step (+inf after a divergence)."""
    task_curves: list[list[float]] = field(default_factory=list)
    """``[horizon + 1][M]`` each task's batch loss (+inf after a divergence)."""

    @property
    def score(self) -> float:
        """Sum over tasks of the final training loss; +inf for a diverged or non-finite game."""
        if self.final_train_loss is None:
            return math.inf
        total = float(sum(self.final_train_loss))
        return total if math.isfinite(total) else math.inf

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    """Non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def play(
    workload: Workload,
    players: PolicyFactory | Sequence[PolicyFactory],
    lrs: Sequence[float] | Sequence[Sequence[float]],
    seeds: Sequence[int],
    *,
    nash_gap: bool = False,
    batched: bool | None = None,
) -> list[GameResult]:
    """Play B games of ``workload``: game b with seed ``seeds[b]`` and step size ``lrs[b]`` (or one per task).

    Args:
        workload: The game.
        players: One factory for every task, or one per task (a mixed population).
        lrs: ``[B]`` one step size per game, or ``[B][M]`` one per game and task.
        seeds: ``[B]`` the games' seeds.
        nash_gap: Also compute each task's head Nash gap at the end (costly on digits).
        batched: Run all games as one batch of the engine (``None``: whenever every player has a batched form).

    Returns:
        One :class:`GameResult` per game, in order. A game's numbers depend only on its seed and step sizes,
        not on the others in the batch.
    """
    config = workload.config()
    game = config.make_game()
    m = game.num_tasks
    factories = list(players) if isinstance(players, Sequence) else [players] * m
    if len(factories) != m:
        raise ValueError(f"players must be one factory or one per task ({m}), got {len(factories)}")
    seeds = [check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    table = _lr_table(lrs, len(seeds), m)
    can_batch = all(_batched_form(f) for f in factories)
    if batched is None:
        batched = can_batch
    elif batched and not can_batch:
        raise ValueError("batched=True needs every player to have a batched form (a Baseline); use batched=None")
    if not seeds:
        return []
    if batched:
        return _play_batched(game, factories, table, seeds, nash_gap)
    env = MultiTaskGameEnv.from_config(config, game)
    return [_play_env(env, factories, table[b], seed, nash_gap) for b, seed in enumerate(seeds)]


def _lr_table(lrs: Any, games: int, tasks: int) -> np.ndarray:
    table = np.asarray(lrs, dtype=np.float64) if len(lrs) else np.zeros((0, tasks))
    if table.ndim == 1:
        table = np.repeat(table[:, None], tasks, axis=1)
    if table.shape != (games, tasks):
        raise ValueError(f"lrs must have one step size per game ({games}) or per game and task, got {table.shape}")
    if not np.all(np.isfinite(table) & (table > 0)):
        raise ValueError(f"step sizes must be finite and > 0, got {table.tolist()}")
    return table


def _final(suite: TaskSuite, heads: Tensor, trunk: Tensor, nash_gap: bool) -> dict[str, Any]:
    with torch.no_grad():
        train = suite.losses(heads, trunk, suite.train_batch()).tolist()
    if not all(math.isfinite(v) for v in train):
        return {"final_train_loss": None, "held_out": None, "nash_gap": None}
    gap = suite.nash_gaps(heads, trunk, "train").tolist() if nash_gap else None
    return {"final_train_loss": train, "held_out": suite.evaluate(heads, trunk), "nash_gap": gap}


def _initial(suite: TaskSuite, seed: int) -> list[float]:
    heads, trunk = suite.params_for_seed(seed)
    with torch.no_grad():
        return [float(v) for v in suite.losses(heads, trunk, suite.train_batch()).tolist()]


def _play_env(
    env: MultiTaskGameEnv, factories: list[PolicyFactory], lrs: np.ndarray, seed: int, nash_gap: bool
) -> GameResult:
    from agents.runner import run_episode

    policies = {agent: factories[m](float(lrs[m])) for m, agent in enumerate(env.possible_agents)}
    history = run_episode(env, policies, seed=seed, evaluate=False)
    horizon = env.max_cycles
    losses = np.full((horizon + 1, len(factories)), np.inf)
    losses[: history.losses.shape[0]] = history.losses
    losses[~np.isfinite(losses)] = np.inf
    final: dict[str, Any] = {"final_train_loss": None, "held_out": None, "nash_gap": None}
    if not history.terminated:
        final = _final(env.suite, *env.get_parameters(), nash_gap)
    return GameResult(
        seed=seed,
        lrs=[float(v) for v in lrs],
        diverged=history.terminated or final["final_train_loss"] is None,
        steps=history.steps,
        initial_train_loss=_initial(env.suite, seed),
        curve=losses.mean(axis=1).tolist(),
        task_curves=losses.tolist(),
        **final,
    )


def _play_batched(
    game: Game, factories: list[PolicyFactory], table: np.ndarray, seeds: list[int], nash_gap: bool
) -> list[GameResult]:
    # One batched player per task, with that task's step size in every game; task m's moves come from its own.
    forms = [
        factory.batched(game, torch.as_tensor(table[:, task]))  # type: ignore[attr-defined]
        for task, factory in enumerate(factories)
    ]
    state, out = engine.reset(game, seeds)
    bsz = len(seeds)
    losses = [out.losses.detach().to(torch.float64).cpu()]
    alive = torch.ones(bsz, dtype=torch.bool, device=game.device)
    steps = torch.zeros(bsz, dtype=torch.int64)
    head_task = game.head_index
    for _ in range(game.horizon):
        head_updates = torch.zeros_like(state.heads)
        proposals = torch.zeros_like(state.jacobian)
        for task, form in enumerate(forms):
            h_up, props = form.act(state.head_grads, state.jacobian)
            mine = head_task == task
            head_updates[:, mine] = h_up[:, mine]
            proposals[:, task] = props[:, task]
        # A diverged game stands still (its gradients may be non-finite): it no longer counts.
        head_updates = torch.where(alive[:, None], head_updates, torch.zeros_like(head_updates))
        proposals = torch.where(alive[:, None, None], proposals, torch.zeros_like(proposals))
        state, out = engine.step(game, state, (head_updates, proposals))
        steps += alive.cpu().to(torch.int64)
        step_losses = out.losses.detach().to(torch.float64).cpu().clone()
        step_losses[~alive.cpu()] = math.inf  # the losses of the step a game diverges are kept, as the env's
        losses.append(step_losses)
        alive = alive & ~(out.diverged | out.out_of_domain)  # ended, as the env's terminations
    curves = torch.stack(losses, 1)  # [B, T + 1, M]
    curves[~torch.isfinite(curves)] = math.inf
    results = []
    for b, seed in enumerate(seeds):
        diverged = not bool(alive[b])
        final: dict[str, Any] = {"final_train_loss": None, "held_out": None, "nash_gap": None}
        if not diverged:
            final = _final(game.suite, state.heads[b], state.trunk[b], nash_gap)
        results.append(
            GameResult(
                seed=seed,
                lrs=[float(v) for v in table[b]],
                diverged=diverged or final["final_train_loss"] is None,
                steps=int(steps[b]),
                initial_train_loss=_initial(game.suite, seed),
                curve=curves[b].mean(dim=1).tolist(),
                task_curves=curves[b].tolist(),
                **final,
            )
        )
    return results


# ------------------------------------------------------------------------------------ tune, evaluate
@dataclass
class TuningResult:
    """The outcome of :func:`tune` on one workload: every trial, the chosen step size, the protocol."""

    policy: str
    workload: str
    protocol: dict[str, Any]
    """:meth:`TuningProtocol.to_dict`: the grid and the budget."""
    step_sizes: list[float]
    scores: list[float]
    """Per step size, the mean over tuning seeds of the final training loss (summed over tasks); +inf if any
    trial diverged."""
    diverged: list[int]
    """Per step size, how many tuning trials diverged."""
    best_lr: float
    all_diverged: bool
    """No step size finished every tuning trial; ``best_lr`` is then the smallest step size."""
    at_edge: bool = False
    """The best step size is the smallest or largest searched: the optimum may lie outside the search range."""

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def tune(
    factory: PolicyFactory, workload: Workload, protocol: TuningProtocol, *, batched: bool | None = None
) -> TuningResult:
    """Choose ``factory``'s step size on ``workload``: every step size of ``protocol`` on every tuning seed (as
    one batch when the factory has a batched form); the lowest mean final training loss wins, a diverged trial
    counting as +inf (ties: the smaller step size)."""
    lrs = protocol.step_sizes()
    seeds = list(protocol.tuning_seeds)
    grid = [lr for lr in lrs for _ in seeds]
    results = play(workload, factory, grid, seeds * len(lrs), batched=batched)
    k = len(seeds)
    trials = [[r.score for r in results[i * k : (i + 1) * k]] for i in range(len(lrs))]
    return _choose(factory, workload.name, protocol, trials)


def _choose(factory: PolicyFactory, name: str, protocol: TuningProtocol, trials: list[list[float]]) -> TuningResult:
    """The step size whose trials (one list of scores per step size of ``protocol``) have the lowest mean, a
    non-finite trial counting as +inf (ties: the smaller step size)."""
    lrs = protocol.step_sizes()
    scores = [float(np.mean(t)) if all(math.isfinite(s) for s in t) else math.inf for t in trials]
    diverged = [sum(1 for s in t if not math.isfinite(s)) for t in trials]
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    best = min(finite, key=lambda i: (scores[i], i)) if finite else 0
    return TuningResult(
        policy=repr(factory),
        workload=name,
        protocol=protocol.to_dict(),
        step_sizes=list(lrs),
        scores=scores,
        diverged=diverged,
        best_lr=lrs[best],
        all_diverged=not finite,
        at_edge=bool(finite) and len(lrs) > 1 and best in (0, len(lrs) - 1),
    )


def tune_family(
    factory: PolicyFactory,
    workloads: Sequence[Workload],
    protocol: TuningProtocol,
    floors: Sequence[float] | None = None,
    *,
    batched: bool | None = None,
) -> TuningResult:
    """Choose one step size of ``factory`` for a *family* of games: every step size of ``protocol`` on every
    tuning seed of every workload (game draw). Losses of different draws have different scales, so a trial scores
    its final training loss relative to its start, (L_T − f) / (L_0 − f) with the draw's floor f (``floors``;
    default 0, for losses ≥ 0); the lowest mean over all trials wins, a diverged trial counting as +inf."""
    if not workloads:
        raise ValueError("tune_family needs at least one workload (a game draw of the family)")
    floors = [0.0] * len(workloads) if floors is None else list(floors)
    if len(floors) != len(workloads):
        raise ValueError(f"floors must give one floor per workload ({len(workloads)}), got {len(floors)}")
    lrs = protocol.step_sizes()
    seeds = list(protocol.tuning_seeds)
    grid = [lr for lr in lrs for _ in seeds]
    trials: list[list[float]] = [[] for _ in lrs]
    for workload, floor in zip(workloads, floors, strict=True):
        results = play(workload, factory, grid, seeds * len(lrs), batched=batched)
        for j, r in enumerate(results):
            trials[j // len(seeds)].append(relative_score(r, floor))
    name = f"{len(workloads)} draws of {workloads[0].suite}/{workloads[0].consensus}/T{workloads[0].horizon}"
    return _choose(factory, name, protocol, trials)


def relative_score(result: GameResult, floor: float = 0.0) -> float:
    """A game's final training loss relative to its start, (L_T − floor) / (L_0 − floor), L = Σ_m ℓ_m; +inf for a
    diverged or non-finite game."""
    if not math.isfinite(result.score):
        return math.inf
    return (result.score - floor) / max(float(sum(result.initial_train_loss)) - floor, 1e-300)


def evaluate(
    factory: PolicyFactory,
    workload: Workload,
    lr: float,
    seeds: Sequence[int],
    *,
    nash_gap: bool = True,
    batched: bool | None = None,
) -> list[GameResult]:
    """Play ``factory`` at step size ``lr`` on held-out ``seeds`` of ``workload`` (one result per seed)."""
    return play(workload, factory, [lr] * len(seeds), list(seeds), nash_gap=nash_gap, batched=batched)
