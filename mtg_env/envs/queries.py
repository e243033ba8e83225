"""What the env reports about its game beyond the step: equilibrium metrics and held-out evaluation (of a started
game; the env checks that)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from mtg_env.metrics import game_metrics
from mtg_env.suites.base import Split

if TYPE_CHECKING:
    from mtg_env.envs.parallel import MultiTaskGameEnv


def metrics(env: MultiTaskGameEnv, split: Split) -> dict[str, dict[str, Any]]:
    """:meth:`MultiTaskGameEnv.metrics`: per agent and for the game, from :func:`mtg_env.metrics.game_metrics`."""
    state = env.engine_state
    rule = state.rule_objects[0] if state.rule_objects else env.consensus
    game_state = {k: v[0] for k, v in state.rule_state.items()} if state.rule_state else None
    values = game_metrics(env.suite, env._heads, env._trunk, rule, split, rule_state=game_state)
    per_agent = {
        agent: {
            "loss": values["loss"][m],
            "nash_gap": values["nash_gap"][m],
            "stationarity": values["stationarity"][m],
        }
        for m, agent in enumerate(env.possible_agents)
    }
    game = {k: v for k, v in values.items() if k not in ("loss", "nash_gap", "stationarity")}
    return {"agents": per_agent, "game": game}


def evaluate(env: MultiTaskGameEnv) -> dict[str, dict[str, Any]]:
    """:meth:`MultiTaskGameEnv.evaluate`: per agent, the task, its loss on the whole training objective and the
    suite's held-out metrics."""
    with torch.no_grad():
        train = env.suite.losses(env._heads, env._trunk, env.suite.train_batch()).tolist()
    held_out = env.suite.evaluate(env._heads, env._trunk)
    return {
        agent: {"task": task.name, "train_loss": train[m], **held_out[task.name]}
        for m, (agent, task) in enumerate(zip(env.possible_agents, env.suite.tasks, strict=True))
    }
