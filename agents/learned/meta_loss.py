"""The meta-loss of a meta-training run (:mod:`agents.learned.train`): the games an iteration draws from its random
streams, the rule unrolled on them through the engine (:class:`_Unroll`), the clamped per-step log-ratio
log((L_t − L*) / (L_0 − L*)) (L and L* as :attr:`MetaTrainConfig.floor` says), and :func:`evaluate_rule` over whole
episodes."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from agents.learned.batched import EngineDriver
from agents.learned.family import best_loss_floor, build_suite, get_family, loss_floor, sample_config, true_loss_floor
from agents.learned.meta_config import MetaTrainConfig
from agents.learned.rules import Rule
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game, GameState, StepOutput
from mtg_env.suites import TaskSuite

#: Offsets of the random streams (game draws, game seeds, ES noise, validation draws) under the run's seed.
_STREAM_GAMES, _STREAM_NOISE, _STREAM_VALID, _STREAM_SEARCH = 1, 2, 3, 4
#: Held-out game seeds start here; training seeds stay below.
VALID_SEED_BASE = 2**40
#: Meta-loss of a step is clamped into [log 1e-12, log 1e3] (a diverging game counts as 1000× its start).
_LOG_LOW, _LOG_HIGH = math.log(1e-12), math.log(1e3)


def _rng(config: MetaTrainConfig, stream: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, iteration])


class Draw(NamedTuple):
    """One drawn game of an iteration: its suite options, B game seeds, and the family and consensus rule it plays
    (a mixture's member, :meth:`MetaTrainConfig.draw_plan`)."""

    options: dict[str, Any]
    seeds: list[int]
    suite: str
    consensus: str


def _game(
    config: MetaTrainConfig,
    suite_options: dict[str, Any],
    horizon: int,
    suite_name: str | None = None,
    consensus: str | None = None,
) -> tuple[Game, float, bool]:
    """One drawn game (of family ``suite_name`` under ``consensus``; default the run's first), the L* its meta-loss
    measures from and whether L_t is the whole training objective (:attr:`MetaTrainConfig.floor`). A true L* is the
    minimum of the whole objective, which a minibatch's loss (an unbiased estimate of it) falls below at about half
    the steps near the floor: measured from it, L_t is the whole objective. A suite's lower bound holds for every
    batch: the step's batch loss is measured from it, as legacy."""
    family = config.suites[0] if suite_name is None else suite_name
    suite = build_suite(family, suite_options, device=config.device, dtype=config.game_dtype(family))
    rule = consensus_rule(config.consensuses[0] if consensus is None else consensus, num_tasks=suite.num_tasks)
    game = Game(suite, rule, action_mode=config.mode, horizon=horizon)  # type: ignore[arg-type]
    if config.floor == "legacy":
        return game, loss_floor(suite), False
    if config.floor == "best":
        floor = best_loss_floor(family, suite_options, suite)
    else:
        floor = true_loss_floor(suite, get_family(family).loss_lower_bound)
    return game, floor.value, floor.kind != "lower bound"


def _draws(config: MetaTrainConfig, iteration: int, stream: int, count: int, games: int) -> list[Draw]:
    """``count`` draws of ``iteration`` (validation: its own stream, held-out seeds): each its family and rule from
    :meth:`MetaTrainConfig.draw_plan` (no random choice: a one-family run draws as before mixtures existed), its
    options and B seeds from the stream."""
    rng = _rng(config, stream, iteration)
    base = VALID_SEED_BASE if stream == _STREAM_VALID else 0
    out = []
    for index in range(count):
        family, rule = config.draw_plan(iteration, index)
        options = sample_config(family, rng)
        seeds = [base + int(s) for s in rng.integers(0, 2**39, size=games)]
        out.append(Draw(options, seeds, family, rule))
    return out


def _step_log_ratio(total: Tensor, start: Tensor, floor: float) -> Tensor:
    """``[B]`` log((L_t − L*) / (L_0 − L*)), clamped (a diverged game's NaN counts as the upper clamp)."""
    ratio = torch.log((total - floor).clamp_min(1e-30)) - torch.log((start - floor).clamp_min(1e-30))
    ratio = torch.nan_to_num(ratio, nan=_LOG_HIGH, posinf=_LOG_HIGH, neginf=_LOG_LOW)
    return ratio.clamp(_LOG_LOW, _LOG_HIGH)


class _Unroll:
    """One drawn game's B games and the rule's memory, advanced a stretch of steps at a time.

    ``whole``: L_t is the whole training objective at the step's parameters (what a true L* is the minimum of; a
    minibatch's loss is an unbiased estimate of it, below L* at about half the steps near the floor), else the loss
    of the step's batch the engine already computed.

    A game is dead for the rest of the unroll once its loss, its observations (in the rule's dtype: a float64 game
    passes through float32's overflow before its own) or the rule's memory of it stop being finite. Its meta-loss
    counts the upper clamp as before, but it gives no meta-gradient to the truncation it died in or any later one (its
    actions' gradient rows are zeroed when backward runs), the rule reads zeros for its observations, and its memory
    goes back to its fresh state. Otherwise its NaNs reach every shared meta-parameter (0 · NaN through its own rows)
    and every later meta-step of the iteration would be skipped, the other games' signal with it. (A truncation in
    which the rule's own arithmetic overflows on finite input can still give a NaN meta-gradient: that meta-step is
    skipped and counted.)"""

    def __init__(
        self, driver: EngineDriver, seeds: list[int], floor: float, late_weight: float = 0.0, whole: bool = False
    ):
        self.driver = driver
        self.floor = floor
        self.late_weight = late_weight
        suite = driver.game.suite
        # A suite without data batches (the quadratic) has its whole objective as every step's loss already.
        self.batch = suite.train_batch() if whole else None
        self.state, self.out = engine.reset(driver.game, seeds)
        self.start = self._total().detach()
        self.memory = driver.start(self.out)
        #: The rule's fresh state of every game: a dead game's memory goes back to its rows.
        self._fresh = {k: v.detach().clone() for k, v in self.memory.items()}
        self._dtype = next(driver.rule.parameters()).dtype
        # ``[B]`` bool, the dead games, in a box the backward hooks read (not ``self``: a hook kept alive by a graph
        # that outlives this unroll, as the rewards' does, would keep the whole unroll alive with it).
        self._dead = [~torch.isfinite(self.start)]

    @property
    def dead(self) -> Tensor:
        """``[B]`` bool: the games whose loss, observations or rule memory have stopped being finite."""
        return self._dead[0]

    def _mark(self, dead: Tensor) -> None:
        self._dead[0] = self._dead[0] | dead  # a new tensor, not in place: a where of _observed saved the old one

    def _total(self) -> Tensor:
        """``[B]`` L_t: the step batch's Σ_m ℓ_m, or with ``whole`` the whole training objective's (keeps its graph)."""
        if self.batch is None:
            return self.out.losses.sum(1)
        return self.driver.game.suite.batched_losses(self.state.heads, self.state.trunk, self.batch).sum(-1)

    def advance(self, steps: int) -> Tensor:
        """Play ``steps`` steps; the sum over them of the mean over games of the log-ratio (keeps its graph)."""
        total = torch.zeros((), device=self.start.device)
        self.memory = self._remembered()  # once a truncation: within one, a dead game's rule reads only zeros
        for _ in range(steps):
            self._mark(~self._finite_observations())
            actions, self.memory = self.driver.act(self.state, self._observed(), self.memory)
            self._cut_dead(actions)
            self.state, self.out = engine.step(self.driver.game, self.state, actions)
            total_t = self._total()
            self._mark(~torch.isfinite(total_t.detach()))
            step_loss = _step_log_ratio(total_t, self.start, self.floor)
            if self.late_weight:
                progress = self.state.t.to(step_loss.dtype) / self.driver.game.horizon
                step_loss = step_loss * (1.0 + self.late_weight * progress)
            total = total + step_loss.mean().float()
        # A rule whose own arithmetic overflowed on a game's finite input (that truncation's meta-step is skipped)
        # starts the next one from the game's fresh state.
        self._mark(~_finite_rows(self.memory.values(), self._dtype, self.dead))
        return total

    def _finite_observations(self) -> Tensor:
        """``[B]`` bool: what the rule reads of each game this step is finite in the rule's dtype."""
        out = self.out
        return _finite_rows((out.head_grads, out.jacobian, out.features), self._dtype, self.dead)

    def _observed(self) -> StepOutput:
        """What the rule reads this step: the engine's output, zeros in the dead games' rows (no check first: on a GPU
        it would wait for the device every step)."""
        out, dead = self.out, self.dead

        def zeroed(x: Tensor) -> Tensor:
            return torch.where(_rows(dead, x), x.new_zeros(()), x)

        return replace(out, head_grads=zeroed(out.head_grads), jacobian=zeroed(out.jacobian),
                       features=zeroed(out.features))  # fmt: skip

    def _remembered(self) -> dict[str, Tensor]:
        """The rule's memory, the dead games' rows back to their fresh state."""
        dead = self.dead
        return {k: torch.where(_rows(dead, v), self._fresh[k], v) if k in self._fresh else v
                for k, v in self.memory.items()}  # fmt: skip

    def _cut_dead(self, actions: Tensor | tuple[Tensor, ...]) -> None:
        """Zero the gradient rows of the games dead by the time backward runs (read then, not now: a game that dies
        later in this truncation gives none of its steps' gradient)."""
        box = self._dead
        for action in actions if isinstance(actions, tuple) else (actions,):
            if action.requires_grad:
                action.register_hook(lambda grad: grad.masked_fill(_rows(box[0], grad), 0))

    def detach(self) -> None:
        """Cut the graph (between truncations)."""
        self.state = self.state.detach()
        self.out = replace(self.out, losses=self.out.losses.detach(), rewards=self.out.rewards.detach())
        self.memory = {k: v.detach() for k, v in self.memory.items()}


def _rows(mask: Tensor, x: Tensor) -> Tensor:
    """``mask [B]`` viewed to broadcast over ``x [B, ...]``'s rows."""
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _finite_rows(tensors: Any, dtype: torch.dtype, like: Tensor) -> Tensor:
    """``[B]`` bool (``like``'s shape and device): every floating tensor's row b is finite once cast to ``dtype``."""
    finite = torch.ones_like(like, dtype=torch.bool)
    for x in tensors:
        if x.is_floating_point():
            finite = finite & torch.isfinite(x.detach().to(dtype)).reshape(x.shape[0], -1).all(1)
    return finite


def _driver(rule: Rule, game: Game) -> EngineDriver:
    return EngineDriver(rule, game, log_step_range=(-12.0, 2.0))


def _unroll(config: MetaTrainConfig, rule: Rule, game: Game, seeds: list[int], floor: float, whole: bool) -> _Unroll:
    """The unroll of ``rule`` on ``game``'s ``seeds``, measured from ``floor`` (``whole``: on the whole objective)."""
    return _Unroll(_driver(rule, game), seeds, floor, config.late_weight, whole)


def _whole_loss(suite: TaskSuite, batch: Any, state: GameState) -> Tensor:
    """``[B]`` Σ_m ℓ_m of each game on ``batch`` (the whole training objective)."""
    return torch.stack([suite.losses(state.heads[b], state.trunk[b], batch).sum() for b in range(state.batch_size)])


def evaluate_rule(rule: Rule, config: MetaTrainConfig, draws: list[Draw], horizon: int, final: bool = False) -> float:
    """Mean over draws of the mean per-step log-ratio of a whole episode (no autograd); ``final``: of the log-ratio
    of the whole training objective at the episode's end instead."""
    values = []
    with torch.no_grad():
        for options, seeds, family, consensus in draws:
            game, floor, whole = _game(config, options, horizon, family, consensus)
            unroll = _unroll(config, rule, game, seeds, floor, whole)
            if not final:
                values.append(float(unroll.advance(horizon)) / horizon)
                continue
            batch = game.suite.train_batch()
            start = _whole_loss(game.suite, batch, unroll.state)
            unroll.advance(horizon)
            values.append(float(_step_log_ratio(_whole_loss(game.suite, batch, unroll.state), start, floor).mean()))
    return float(np.mean(values))
