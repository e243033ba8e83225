"""Games played to their horizon: :func:`play` runs B games of a workload, one batch of the engine when
every player has a batched form, else game by game through the env; one :class:`GameResult` per game."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env import engine
from mtg_env.engine.game import Game
from mtg_env.envs.parallel import MultiTaskGameEnv
from mtg_env.rng import check_seed
from mtg_env.suites.base import TaskSuite
from mtg_env.tuning.players import PolicyFactory, _batched_form
from mtg_env.tuning.protocol import Workload


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
