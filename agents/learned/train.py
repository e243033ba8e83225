"""Meta-training of learned agents on the engine: truncated backpropagation through unrolled games (TBPTT),
antithetic evolution strategies (ES) over whole episodes, and persistent ES (PES) over truncations.

    config = MetaTrainConfig(agent="learned_mlp", suite="quadratic", iterations=100)
    result = meta_train(config, out="runs/meta")         # runs/meta/{last.pt, best.pt, log.csv, meta_loss.png}

One meta-iteration plays ``configs`` games drawn from the suite's family (:mod:`agents.learned.family`), B =
``games`` seeds each, for one episode of the curriculum's horizon, with every player of every game driven by
the rule (its batched form, :class:`~agents.learned.batched.EngineDriver`). The meta-loss of a stretch of
steps is the mean over steps, games and configs of log((L_t − L*) / (L_0 − L*)), L = Σ_m ℓ_m the game's total
batch loss and L* its floor (:func:`~agents.learned.family.loss_floor`): scale-free, so every game counts alike.

* ``tbptt``: the episode in truncations of ``truncation`` steps; the meta-gradient of each truncation flows
  through the engine's differentiable step into the rule's parameters (first order: observations detached,
  as Andrychowicz et al.), one Adam meta-step per truncation. Needs a differentiable consensus rule.
* ``es``: antithetic Gaussian perturbations θ ± σε of the rule's parameters, each pair playing the same games
  for the whole episode without autograd; works with every consensus rule.
* ``pes``: ES over truncations with per-particle games that carry on across truncations, the perturbations
  accumulated (Vicol et al. 2021), so the estimate is unbiased for the whole episode.

TBPTT's truncated meta-gradient favours small steps (the short-horizon bias of Wu et al. 2018): on regression the
trained trunk step was a quarter of what the whole-episode meta-loss prefers. ``trunk_search`` corrects it after
training: the best rule's trunk log step, the same for every player, moved by each of the given factors, is
scored on whole episodes of training-family draws (a stream of its own) and the best factor kept.

Every random choice is a function of (``seed``, iteration): a run resumed from ``last.pt`` (written after
every iteration with the meta-optimizer's state) continues exactly as the uninterrupted run. Meta-validation
on held-out game draws and seeds every ``val_every`` iterations keeps the best rule in ``best.pt``.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from agents.learned.batched import EngineDriver
from agents.learned.checkpoint import (
    LEARNED,
    check_state_dict,
    new_rule,
    non_finite,
    read_torch_file,
    save_rule,
    torch_bytes,
)
from agents.learned.family import build_suite, loss_floor, sample_config
from agents.learned.rules import LSTMRule, Rule
from mtg_env import engine
from mtg_env._args import real_arg
from mtg_env._io import write_atomic
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game, GameState
from mtg_env.suites import TaskSuite

#: Marks a resumable meta-training checkpoint.
CHECKPOINT_FORMAT = "mtg_env.meta_train/2"
#: Offsets of the random streams (game draws, game seeds, ES noise, validation draws) under the run's seed.
_STREAM_GAMES, _STREAM_NOISE, _STREAM_VALID, _STREAM_SEARCH = 1, 2, 3, 4
#: Held-out game seeds start here; training seeds stay below.
VALID_SEED_BASE = 2**40
#: Meta-loss of a step is clamped into [log 1e-12, log 1e3] (a diverging game counts as 1000× its start).
_LOG_LOW, _LOG_HIGH = math.log(1e-12), math.log(1e3)

Method = Literal["tbptt", "es", "pes"]


#: The MLP rule's trunk brake for the minibatch suites: continuous (cuts by the excess), a slow growth average
#: (weight 0.05, from step 10) with a low threshold, no warm-up ramp (measured with the per-player gradient signal:
#: regression 1.02–1.08 and digits 0.69–0.97 of the tuned baseline with a fast brake, 0.95–1.02 and 0.41–0.74 with
#: this one; docs/results/learned.md).
MINIBATCH_BRAKE: dict[str, Any] = {"brake_weight": 0.05, "brake_threshold": 0.05, "brake_warmup": 10,
                                   "brake_recovery": 1.0, "brake_step": 0.0, "trunk_warmup": 1}  # fmt: skip

#: Digits' rule: the minibatch brake, and a learned direction offset on the heads' Adam step (its games end far from a
#: stationary point, where the offset pays: without it the rule is level with tuned Adam at 1×; see
#: docs/results/learned.md).
DIGITS_RULE: dict[str, Any] = {**MINIBATCH_BRAKE, "direction_offset": True}

#: The brake the quadratic rule is meta-trained with: continuous and wearing off, so a trunk step that turns a game
#: unstable costs the meta-loss (the game hovers at its stability edge) and the learned step stays clear of it. With
#: the play brake (quantised, holding) in the loop meta-training learned a larger step that leaned on it (held-out
#: quadratic draws, mean ratio at 1× 4.71 instead of 0.002, one training-family game diverged at 2×).
TRAINING_BRAKE: dict[str, Any] = {"brake_step": 0.0, "brake_threshold": 0.1, "brake_recovery": 0.95}

#: Options a rule meta-trains with but does not play with, per (agent, suite) when :attr:`MetaTrainConfig.train_rule`
#: is ``None``: ``best.pt`` holds the rule with :meth:`MetaTrainConfig.rule_options` alone.
SUITE_TRAIN_RULE_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {("learned_mlp", "quadratic"): TRAINING_BRAKE}

#: A rule's default options per (agent, suite) when :attr:`MetaTrainConfig.rule` is ``None``.
SUITE_RULE_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("learned_mlp", "digits"): DIGITS_RULE,
    ("learned_mlp", "regression"): {**MINIBATCH_BRAKE, "brake_threshold": 0.25},
}


@dataclass(frozen=True)
class MetaTrainConfig:
    """Hyper-parameters of a meta-training run."""

    agent: str = "learned_mlp"
    """The learned agent (``learned_mlp``, ``learned_lstm`` or ``learned_step``)."""
    suite: str = "quadratic"
    """The game family (``quadratic``, ``regression`` or ``digits``)."""
    method: Method = "tbptt"
    """``tbptt``, ``es`` or ``pes`` (see the module docstring)."""
    iterations: int = 100
    """Meta-iterations (episodes) at most."""
    budget_s: float | None = None
    """Stop after the iteration that passes this many seconds of wall time (``None``: no limit)."""
    games: int = 8
    """B: seeds per drawn game."""
    configs: int = 2
    """Games drawn from the family per iteration."""
    horizons: tuple[int, ...] = (20, 50, 100)
    """Curriculum: episode lengths, each for an equal share of the iterations."""
    truncation: int = 10
    """TBPTT / PES: steps per truncation."""
    late_weight: float = 0.0
    """The meta-loss weighs step t by 1 + late_weight · t / horizon (0: every step alike): more weight on where
    the episode ends, which is what the final-loss comparison scores."""
    meta_lr: float = 3e-3
    """Adam's step on the rule's parameters."""
    grad_clip: float = 1.0
    """Meta-gradient norm clip."""
    es_pairs: int = 8
    """ES / PES: antithetic pairs per estimate."""
    es_sigma: float = 0.01
    """ES / PES: perturbation scale σ."""
    val_every: int = 10
    """Meta-validate every this many iterations (and after the last)."""
    val_configs: int = 4
    """Held-out game draws for validation."""
    val_games: int = 4
    """Held-out seeds per validation draw."""
    trunk_search: tuple[float, ...] = ()
    """Factors of the trunk step to try after training (``learned_mlp``, ``learned_step``; empty: none): the best
    rule's trunk log step moved by log f for each f, scored by the meta-loss on whole episodes of ``val_configs``
    training-family draws × ``games`` seeds at the longest horizon; the best is kept in ``best.pt``."""
    val_metric: str = "mean"
    """What meta-validation scores to keep the best rule: ``"mean"``, the meta-loss (the mean over the episode of
    the per-step log-ratio on the games' batches); ``"final"``, log((L_T − L*) / (L_0 − L*)) on the whole training
    objective at the episode's end, what ``docs/learned_results.py`` scores."""
    consensus: str = "sum"
    """The trunk's consensus rule."""
    dtype: str = "float32"
    """The games' dtype (the rule runs in float32)."""
    seed: int = 0
    """Decides every draw of the run."""
    device: str = "cpu"
    """Where the games and the rule live (``cuda`` on a GPU)."""
    rule: dict[str, Any] | None = None
    """Options of the rule's config (e.g. ``{"init_lr": 0.03}``); ``None``: the suite's defaults
    (:data:`SUITE_RULE_OPTIONS`), ``{}``: the rule class's own."""
    train_rule: dict[str, Any] | None = None
    """Options on top of ``rule`` used only while meta-training (``best.pt`` plays without them); ``None``: the
    suite's (:data:`SUITE_TRAIN_RULE_OPTIONS`), ``{}``: none."""

    def __post_init__(self) -> None:
        if self.agent not in LEARNED:
            raise ValueError(f"agent must be one of {sorted(LEARNED)}, got {self.agent!r}")
        if self.method not in ("tbptt", "es", "pes"):
            raise ValueError(f"method must be 'tbptt', 'es' or 'pes', got {self.method!r}")
        for name in ("iterations", "games", "configs", "truncation", "es_pairs", "val_every", "val_configs",
                     "val_games"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.horizons or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be a non-empty tuple of ints >= 1, got {self.horizons!r}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0 seconds or None, got {self.budget_s!r}")
        real_arg("late_weight", self.late_weight, low=0.0, hint="0: every step alike")
        if any(
            isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < math.inf for f in self.trunk_search
        ):
            raise ValueError(f"trunk_search must hold finite factors > 0, got {self.trunk_search!r}")
        if self.trunk_search and self.agent == "learned_lstm":
            raise ValueError(
                "trunk_search needs a rule with a trunk step (learned_mlp, learned_step), not learned_lstm"
            )
        if self.val_metric not in ("mean", "final"):
            raise ValueError(f"val_metric must be 'mean' or 'final', got {self.val_metric!r}")
        for name in ("meta_lr", "grad_clip", "es_sigma"):  # inf or NaN would turn the rule's weights into NaN
            real_arg(name, getattr(self, name), low=0.0, low_open=True)
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r} ({err})"
            ) from None
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device must be a CPU or CUDA device, got {self.device!r}")

    def rule_options(self) -> dict[str, Any]:
        """The options the played rule (``best.pt``) is built with: ``rule``, or the suite's defaults when ``None``."""
        if self.rule is not None:
            return dict(self.rule)
        return dict(SUITE_RULE_OPTIONS.get((self.agent, self.suite), {}))

    def training_rule_options(self) -> dict[str, Any]:
        """The options the rule meta-trains with: :meth:`rule_options` updated by ``train_rule`` (or the suite's)."""
        extra = (
            self.train_rule
            if self.train_rule is not None
            else SUITE_TRAIN_RULE_OPTIONS.get((self.agent, self.suite), {})
        )
        return {**self.rule_options(), **extra}

    @property
    def mode(self) -> str:
        """The action mode of the agent's games."""
        return LEARNED[self.agent][2]

    def horizon(self, iteration: int) -> int:
        """The curriculum's episode length at ``iteration`` (0-based)."""
        stage = min(len(self.horizons) - 1, iteration * len(self.horizons) // self.iterations)
        return self.horizons[stage]


@dataclass
class MetaTrainResult:
    """What a run did: its log rows, best validation meta-loss and where it wrote."""

    rows: list[dict[str, float]]
    best_val: float
    best_iteration: int
    out: Path | None
    rule: Rule
    seconds: float
    trunk_factor: float = 1.0
    """The factor ``trunk_search`` kept (1: none searched)."""
    skipped_steps: int = 0
    """Meta-steps left out because a game that blew up gave a non-finite meta-gradient (the rule not moved)."""


class NonFiniteMetaUpdate(FloatingPointError):
    """A meta-iteration produced a non-finite meta-loss or left non-finite values in the rule's parameters: the run
    stops there, before anything of that iteration is written (``last.pt`` keeps the iteration before)."""


def _rng(config: MetaTrainConfig, stream: int, iteration: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, stream, iteration])


def _game(config: MetaTrainConfig, suite_options: dict[str, Any], horizon: int) -> tuple[Game, float]:
    suite = build_suite(config.suite, suite_options, device=config.device, dtype=config.dtype)
    rule = consensus_rule(config.consensus, num_tasks=suite.num_tasks)
    game = Game(suite, rule, action_mode=config.mode, horizon=horizon)  # type: ignore[arg-type]
    return game, loss_floor(suite)


def _draws(
    config: MetaTrainConfig, iteration: int, stream: int, count: int, games: int
) -> list[tuple[dict, list[int]]]:
    """``count`` (suite options, B seeds) pairs of ``iteration`` (validation: its own stream, held-out seeds)."""
    rng = _rng(config, stream, iteration)
    base = VALID_SEED_BASE if stream == _STREAM_VALID else 0
    out = []
    for _ in range(count):
        options = sample_config(config.suite, rng)
        seeds = [base + int(s) for s in rng.integers(0, 2**39, size=games)]
        out.append((options, seeds))
    return out


def _step_log_ratio(total: Tensor, start: Tensor, floor: float) -> Tensor:
    """``[B]`` log((L_t − L*) / (L_0 − L*)), clamped (a diverged game's NaN counts as the upper clamp)."""
    ratio = torch.log((total - floor).clamp_min(1e-30)) - torch.log((start - floor).clamp_min(1e-30))
    ratio = torch.nan_to_num(ratio, nan=_LOG_HIGH, posinf=_LOG_HIGH, neginf=_LOG_LOW)
    return ratio.clamp(_LOG_LOW, _LOG_HIGH)


class _Unroll:
    """One drawn game's B games and the rule's memory, advanced a stretch of steps at a time."""

    def __init__(self, driver: EngineDriver, seeds: list[int], floor: float, late_weight: float = 0.0):
        self.driver = driver
        self.floor = floor
        self.late_weight = late_weight
        self.state, self.out = engine.reset(driver.game, seeds)
        self.start = self.out.losses.detach().sum(1)
        self.memory = driver.start(self.out)

    def advance(self, steps: int) -> Tensor:
        """Play ``steps`` steps; the sum over them of the mean over games of the log-ratio (keeps its graph)."""
        total = torch.zeros((), device=self.start.device)
        for _ in range(steps):
            actions, self.memory = self.driver.act(self.state, self.out, self.memory)
            self.state, self.out = engine.step(self.driver.game, self.state, actions)
            step_loss = _step_log_ratio(self.out.losses.sum(1), self.start, self.floor)
            if self.late_weight:
                progress = self.state.t.to(step_loss.dtype) / self.driver.game.horizon
                step_loss = step_loss * (1.0 + self.late_weight * progress)
            total = total + step_loss.mean().float()
        return total

    def detach(self) -> None:
        """Cut the graph (between truncations)."""
        self.state = self.state.detach()
        self.out = replace(self.out, losses=self.out.losses.detach())
        self.memory = {k: v.detach() for k, v in self.memory.items()}


def _driver(rule: Rule, game: Game) -> EngineDriver:
    return EngineDriver(rule, game, log_step_range=(-12.0, 2.0))


def _whole_loss(suite: TaskSuite, batch: Any, state: GameState) -> Tensor:
    """``[B]`` Σ_m ℓ_m of each game on ``batch`` (the whole training objective)."""
    return torch.stack([suite.losses(state.heads[b], state.trunk[b], batch).sum() for b in range(state.batch_size)])


def evaluate_rule(
    rule: Rule, config: MetaTrainConfig, draws: list[tuple[dict, list[int]]], horizon: int, final: bool = False
) -> float:
    """Mean over draws of the mean per-step log-ratio of a whole episode (no autograd); ``final``: of the log-ratio
    of the whole training objective at the episode's end instead."""
    values = []
    with torch.no_grad():
        for options, seeds in draws:
            game, floor = _game(config, options, horizon)
            unroll = _Unroll(_driver(rule, game), seeds, floor, config.late_weight)
            if not final:
                values.append(float(unroll.advance(horizon)) / horizon)
                continue
            batch = game.suite.train_batch()
            start = _whole_loss(game.suite, batch, unroll.state)
            unroll.advance(horizon)
            values.append(float(_step_log_ratio(_whole_loss(game.suite, batch, unroll.state), start, floor).mean()))
    return float(np.mean(values))


def _flat(rule: Rule) -> Tensor:
    return torch.nn.utils.parameters_to_vector(list(rule.parameters())).detach()


def _perturbed(rule: Rule, theta: Tensor) -> Rule:
    clone: Rule = copy.deepcopy(rule)
    torch.nn.utils.vector_to_parameters(theta, list(clone.parameters()))
    return clone


def _tbptt_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    unrolls = []
    for options, seeds in _draws(config, iteration, _STREAM_GAMES, config.configs, config.games):
        game, floor = _game(config, options, horizon)
        unrolls.append(_Unroll(_driver(rule, game), seeds, floor, config.late_weight))
    losses = []
    done, skipped = 0, 0
    while done < horizon:
        steps = min(config.truncation, horizon - done)
        optimizer.zero_grad()
        loss = sum(u.advance(steps) for u in unrolls) / (steps * len(unrolls))
        assert isinstance(loss, Tensor)
        loss.backward()
        # A game that blew up within the truncation can leave NaN in the meta-gradient: skip that meta-step
        # rather than poison the rule (the clamped meta-loss still counts the blow-up), and count it.
        if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in rule.parameters()):
            torch.nn.utils.clip_grad_norm_(rule.parameters(), config.grad_clip)
            _meta_step(optimizer)
        else:
            skipped += 1
        for u in unrolls:
            u.detach()
        losses.append(float(loss.detach()))
        done += steps
    return float(np.mean(losses)), skipped


def _es_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    draws = _draws(config, iteration, _STREAM_GAMES, config.configs, config.games)
    theta = _flat(rule)
    noise = torch.as_tensor(
        _rng(config, _STREAM_NOISE, iteration).standard_normal((config.es_pairs, theta.numel())), dtype=theta.dtype
    ).to(theta.device)
    grad = torch.zeros_like(theta)
    values = []
    for eps in noise:
        pair = [evaluate_rule(_perturbed(rule, theta + sign * config.es_sigma * eps), config, draws, horizon)
                for sign in (1.0, -1.0)]  # fmt: skip
        grad += (pair[0] - pair[1]) * eps / (2.0 * config.es_sigma * config.es_pairs)
        values.extend(pair)
    applied = _apply(rule, optimizer, grad, config.grad_clip)
    return float(np.mean(values)), int(not applied)


def _pes_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    draws = _draws(config, iteration, _STREAM_GAMES, config.configs, config.games)
    theta = _flat(rule)
    pairs, dim = config.es_pairs, theta.numel()
    noise_rng = _rng(config, _STREAM_NOISE, iteration)
    particles: list[list[_Unroll]] = []
    clones: list[Rule] = []
    for _ in range(2 * pairs):
        clone = copy.deepcopy(rule)
        clones.append(clone)
        games = []
        for options, seeds in draws:
            game, floor = _game(config, options, horizon)
            games.append(_Unroll(_driver(clone, game), seeds, floor, config.late_weight))
        particles.append(games)
    accumulated = torch.zeros(2 * pairs, dim, dtype=theta.dtype, device=theta.device)
    values = []
    done, skipped = 0, 0
    with torch.no_grad():
        while done < horizon:
            steps = min(config.truncation, horizon - done)
            theta = _flat(rule)
            half = torch.as_tensor(noise_rng.standard_normal((pairs, dim)), dtype=theta.dtype).to(theta.device)
            eps = config.es_sigma * torch.cat([half, -half])  # antithetic: particle i + pairs is −particle i
            accumulated += eps
            losses = torch.empty(2 * pairs, dtype=theta.dtype, device=theta.device)
            for i, (clone, games) in enumerate(zip(clones, particles, strict=True)):
                torch.nn.utils.vector_to_parameters(theta + eps[i], list(clone.parameters()))
                losses[i] = sum(float(u.advance(steps)) for u in games) / (steps * len(games))
            grad = ((losses - losses.mean()).unsqueeze(1) * accumulated).sum(0) / (2 * pairs * config.es_sigma**2)
            skipped += int(not _apply(rule, optimizer, grad, config.grad_clip))
            values.append(float(losses.mean()))
            done += steps
    return float(np.mean(values)), skipped


def _apply(rule: Rule, optimizer: torch.optim.Optimizer, grad: Tensor, clip: float) -> bool:
    """One meta-step along the estimate ``grad``; ``False`` (and no step) when it is not finite."""
    optimizer.zero_grad()
    if not bool(torch.isfinite(grad).all()):
        return False  # never poison the rule with a non-finite estimate
    offset = 0
    for p in rule.parameters():
        n = p.numel()
        p.grad = grad[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    torch.nn.utils.clip_grad_norm_(rule.parameters(), clip)
    _meta_step(optimizer)
    return True


def _meta_step(optimizer: torch.optim.Optimizer) -> None:
    try:
        optimizer.step()
    except RuntimeError as err:  # Adam's step size (meta_lr / (1 - β1^t)) past the rule's float32 range
        if "overflow" not in str(err):
            raise
        lr = optimizer.param_groups[0]["lr"]
        raise NonFiniteMetaUpdate(
            f"the meta-step overflowed the rule's parameters ({err}; meta_lr={lr:g}): try a smaller meta_lr (--meta-lr)"
        ) from None


_ITERATIONS = {"tbptt": _tbptt_iteration, "es": _es_iteration, "pes": _pes_iteration}


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``last.pt`` atomically (never half written), refusing NaN or infinite tensors."""
    bad = [f"{part}[{key!r}]" for part in ("rule", "best_state") for key in non_finite(payload[part])]
    bad += [f"optimizer state {key}" for key in non_finite(_optimizer_tensors(payload["optimizer"]))]
    if bad:  # pragma: no cover - the loop stops before: a guard that no NaN checkpoint is ever written
        raise NonFiniteMetaUpdate(f"refusing to write {path}: {', '.join(bad)} hold NaN or infinite values")
    write_atomic(path, torch_bytes(payload))


def _optimizer_tensors(state: Any) -> dict[str, Tensor]:
    """The tensors of an optimizer's ``state_dict()`` by ``"<param index>.<name>"``."""
    per_param = state.get("state", {}) if isinstance(state, dict) else {}
    return {f"{i}.{k}": v for i, entry in per_param.items() if isinstance(entry, dict)
            for k, v in entry.items() if isinstance(v, Tensor)}  # fmt: skip


def _check_out(out_dir: Path, resume: bool) -> None:
    """A run writes into a new or empty directory; one that holds files is a run's own, continued with ``resume``."""
    if resume or not out_dir.is_dir():
        return
    held = sorted(p.name for p in out_dir.iterdir())
    if held:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise FileExistsError(
            f"{out_dir} is not empty (it holds {shown}); meta-training there would overwrite it: resume the run "
            "(resume=True, --resume) or pick a new directory"
        )


#: What ``last.pt`` holds, and the type of each entry.
_CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "config": dict, "iteration": int, "rule": dict, "optimizer": dict, "rows": list,
    "best_val": (float, int), "best_iteration": int, "best_state": dict, "elapsed": (float, int),
}  # fmt: skip


def _read_checkpoint(
    path: Path, config: MetaTrainConfig, rule: Rule, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """The resumable state in ``path`` (``last.pt``), read with ``weights_only=True`` and checked whole before
    anything is installed: its format and fields, the same config as ``config``, the rule's tensors (names, shapes,
    finite values) for the rule, the best rule and the meta-optimizer. Installs the rule's and the optimizer's
    state and returns the checkpoint. Raises ``ValueError`` naming ``path`` and the reason."""
    ckpt, _ = read_torch_file(path, "meta-training checkpoint", map_location=device)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a meta-training checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r})")
    wrong = [k for k, kind in _CHECKPOINT_FIELDS.items() if not isinstance(ckpt.get(k), kind)]
    if wrong:
        raise ValueError(f"{path} is a damaged meta-training checkpoint: {wrong} missing or of the wrong type")
    saved = {k: v for k, v in ckpt["config"].items() if k not in ("budget_s", "device")}
    mine = {k: v for k, v in _config_dict(config).items() if k not in ("budget_s", "device")}
    if saved != mine:
        diff = sorted(k for k in mine.keys() | saved.keys() if saved.get(k) != mine.get(k))
        raise ValueError(f"the checkpoint's config differs from this run's in {diff}; resume with the same config")
    if not 0 <= ckpt["iteration"] <= config.iterations or not -1 <= ckpt["best_iteration"] <= ckpt["iteration"]:
        raise ValueError(f"{path}: its iteration counts are out of range")
    if math.isnan(ckpt["best_val"]) or ckpt["best_val"] == -math.inf:
        raise ValueError(f"{path}: its best validation meta-loss is {ckpt['best_val']}")
    expected = rule.state_dict()
    check_state_dict(path, ckpt["rule"], expected)
    check_state_dict(path, ckpt["best_state"], expected, what="the best rule")
    _check_optimizer_state(path, ckpt["optimizer"], list(rule.parameters()))
    rule.load_state_dict(ckpt["rule"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def _check_optimizer_state(path: Path, state: dict[str, Any], params: list[Tensor]) -> None:
    groups = state.get("param_groups")
    if not isinstance(state.get("state"), dict) or not isinstance(groups, list) or len(groups) != 1:
        raise ValueError(f"{path}: its meta-optimizer state is not Adam's for one group of parameters")
    if groups[0].get("params") != list(range(len(params))):
        raise ValueError(f"{path}: its meta-optimizer state is for other parameters than the rule's")
    for index, entry in state["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            raise ValueError(f"{path}: its meta-optimizer state has an entry for no parameter ({index!r})")
        for key in ("exp_avg", "exp_avg_sq"):
            value = entry.get(key)
            if not isinstance(value, Tensor) or value.shape != params[index].shape:
                raise ValueError(f"{path}: the meta-optimizer's {key} of parameter {index} does not fit it")
    bad = non_finite(_optimizer_tensors(state))
    if bad:
        raise ValueError(f"{path}: the meta-optimizer's state {bad} holds NaN or infinite values")


def _check_finite(rule: Rule, loss: float, iteration: int, config: MetaTrainConfig) -> None:
    """Stop the run (:class:`NonFiniteMetaUpdate`, naming the iteration and what) if meta-iteration ``iteration``
    left non-finite parameters in the rule or gave a non-finite meta-loss."""
    bad = [name for name, p in rule.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteMetaUpdate(
            f"meta-iteration {iteration}: the meta-update left NaN or infinite values in the rule's parameters "
            f"{bad} (meta_lr={config.meta_lr:g}, grad_clip={config.grad_clip:g}); stopped before writing them: "
            "try a smaller meta_lr (--meta-lr)"
        )
    if not math.isfinite(loss):
        raise NonFiniteMetaUpdate(
            f"meta-iteration {iteration}: the meta-loss is {loss}; stopped before writing the rule it trained"
        )


def meta_train(
    config: MetaTrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
) -> MetaTrainResult:
    """Meta-train a learned agent (see the module docstring).

    Args:
        config: The run's hyper-parameters.
        out: Directory for ``last.pt`` (resumable), ``best.pt`` (the best rule, loadable by
            :func:`~agents.learned.checkpoint.load_rule`), ``log.csv`` and ``meta_loss.png``; ``None``: write
            nothing.
        resume: Continue from ``out/last.pt`` (its config must equal ``config`` except ``budget_s``).
        progress: Show a tqdm progress bar on stderr.
        stop_after: Stop after this iteration count (as if interrupted; for tests of resuming).

    Raises:
        FileExistsError: if ``out`` holds files and ``resume`` is not set (nothing in it is changed).
        FileNotFoundError: if ``resume`` is set and there is no ``out/last.pt``.
        ValueError: for a device that is not usable here, or a ``last.pt`` that cannot be read, is not sound (NaN or
            infinite tensors included) or has another config (the message names the file and why).
        NonFiniteMetaUpdate: if a meta-iteration leaves non-finite values in the rule or gives a non-finite
            meta-loss: the run stops before writing anything of that iteration.
    """
    out_dir = None if out is None else Path(out)
    torch_device = torch.device(config.device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} asks for CUDA, but this torch build has no usable GPU; use cpu")
    if resume and (out_dir is None or not (out_dir / "last.pt").is_file()):
        raise FileNotFoundError(f"resume=True (--resume) needs a checkpoint at {out_dir}/last.pt, and there is none")
    if out_dir is not None:
        _check_out(out_dir, resume)
    rule = new_rule(config.agent, **config.training_rule_options())
    rule.to(torch_device)
    optimizer = torch.optim.Adam(rule.parameters(), lr=config.meta_lr)
    rows: list[dict[str, float]] = []
    start_iteration, best_val, best_iteration, elapsed = 0, math.inf, -1, 0.0
    best_state = copy.deepcopy(rule.state_dict())
    if resume:
        assert out_dir is not None
        ckpt = _read_checkpoint(out_dir / "last.pt", config, rule, optimizer, torch_device)
        rows, best_val, best_iteration = ckpt["rows"], float(ckpt["best_val"]), ckpt["best_iteration"]
        best_state, elapsed, start_iteration = ckpt["best_state"], float(ckpt["elapsed"]), ckpt["iteration"]
    val_draws = _draws(config, 0, _STREAM_VALID, config.val_configs, config.val_games)
    val_horizon = max(config.horizons)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.iterations, initial=start_iteration, desc=f"meta-train {config.agent}", unit="it")
    began = time.perf_counter() - elapsed
    iteration = start_iteration
    step_fn = _ITERATIONS[config.method]
    completed = iteration >= config.iterations  # the run ran its iterations or its budget (not stopped early)
    try:
        while iteration < config.iterations:
            if stop_after is not None and iteration >= stop_after:
                break
            try:
                train_loss, skipped = step_fn(rule, optimizer, config, iteration)
            except NonFiniteMetaUpdate as err:
                raise NonFiniteMetaUpdate(f"meta-iteration {iteration + 1}: {err}; stopped before writing it") from None
            iteration += 1
            _check_finite(rule, train_loss, iteration, config)
            row: dict[str, float] = {"iteration": iteration, "horizon": config.horizon(iteration - 1),
                                     "meta_loss": train_loss, "val_loss": math.nan, "skipped": skipped}  # fmt: skip
            last = iteration == config.iterations or (
                config.budget_s is not None and time.perf_counter() - began >= config.budget_s
            )
            completed = last
            if iteration % config.val_every == 0 or last:
                val = evaluate_rule(rule, config, val_draws, val_horizon, final=config.val_metric == "final")
                row["val_loss"] = val
                if val < best_val:
                    best_val, best_iteration = val, iteration
                    best_state = copy.deepcopy(rule.state_dict())
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(meta_loss=f"{train_loss:.3f}", best_val=f"{best_val:.3f}", refresh=False)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                _save_checkpoint(out_dir / "last.pt", {
                    "format": CHECKPOINT_FORMAT, "config": _config_dict(config), "iteration": iteration,
                    "rule": rule.state_dict(), "optimizer": optimizer.state_dict(), "rows": rows, "best_val": best_val,
                    "best_iteration": best_iteration, "best_state": best_state, "elapsed": row["seconds"],
                })  # fmt: skip
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - began
    skipped_steps = int(sum(row.get("skipped", 0) for row in rows))
    best_rule = new_rule(config.agent, **config.rule_options())
    best_rule.to(torch_device)
    best_rule.load_state_dict(best_state)
    factor, search = 1.0, {}
    if config.trunk_search and completed:
        factor, scores = trunk_step_search(best_rule, config)
        best_val = evaluate_rule(best_rule, config, val_draws, val_horizon, final=config.val_metric == "final")
        search = {"trunk_search": {"factors": list(config.trunk_search), "scores": scores, "kept": factor}}
        seconds = time.perf_counter() - began
    if out_dir is not None:
        meta = {"config": _config_dict(config), "best_iteration": best_iteration, "best_val": best_val,
                "iterations": iteration, "seconds": seconds, "skipped_steps": skipped_steps, **search}  # fmt: skip
        save_rule(out_dir / "best.pt", config.agent, best_rule, meta)
        write_log(out_dir, rows)
    return MetaTrainResult(rows, best_val, best_iteration, out_dir, best_rule, seconds, factor, skipped_steps)


def _config_dict(config: MetaTrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d["horizons"] = list(config.horizons)
    d["trunk_search"] = list(config.trunk_search)
    return d


def trunk_step_search(rule: Rule, config: MetaTrainConfig) -> tuple[float, list[float]]:
    """Score ``rule`` with its trunk step times each factor of ``config.trunk_search`` (the meta-loss on whole
    episodes of the search stream's draws, the longest horizon); load the best into ``rule``. Returns the best
    factor and every factor's score."""
    if isinstance(rule, LSTMRule):
        raise TypeError("trunk_step_search needs a rule with a trunk step (MLPRule or StepRule)")
    draws = _draws(config, 0, _STREAM_SEARCH, config.val_configs, config.games)
    state = copy.deepcopy(rule.state_dict())
    scores = []
    for factor in config.trunk_search:
        rule.load_state_dict(state)
        rule.scale_trunk_step(factor)
        scores.append(evaluate_rule(rule, config, draws, max(config.horizons)))
    best = config.trunk_search[int(np.argmin(scores))]
    rule.load_state_dict(state)
    rule.scale_trunk_step(best)
    return float(best), scores


def write_log(out_dir: Path, rows: list[dict[str, float]]) -> None:
    """``log.csv`` and ``meta_loss.png`` (training meta-loss per iteration and validation points)."""
    fields = ["iteration", "horizon", "meta_loss", "val_loss", "seconds"]
    with open(out_dir / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, math.nan) for k in fields})
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    its = [r["iteration"] for r in rows]
    ax.plot(its, [r["meta_loss"] for r in rows], label="training meta-loss")
    val = [(r["iteration"], r["val_loss"]) for r in rows if not math.isnan(r["val_loss"])]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation (held-out games)")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean log(L_t − L*) / (L_0 − L*)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / "meta_loss.png")
