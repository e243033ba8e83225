"""Checkpoints: a game restored mid-episode (in this process, a fresh one, or unpickled) finishes bit for bit."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mtg_env

CONFIG: dict[str, Any] = {
    "suite": "regression",
    "trunk": "mlp",
    "hidden": 8,
    "consensus": "pcgrad",  # randomized: its draws must continue exactly too
    "action_mode": "step_size",
    "max_cycles": 200,
    "step_size_units": "log",  # the policy below speaks in log step sizes
}


def actions(env: mtg_env.MultiTaskGameEnv, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A policy that reads its observation (so any difference in the game would spread)."""
    return {a: np.clip(-3.0 - 0.1 * o[:2], -7.0, -1.0).astype(np.float32) for a, o in obs.items()}


def finish(env: mtg_env.MultiTaskGameEnv, obs: dict[str, np.ndarray]) -> list[list[float]]:
    rewards = []
    while env.agents:
        obs, r, *_ = env.step(actions(env, obs))
        rewards.append(list(r.values()))
    return rewards


def play_until(env: mtg_env.MultiTaskGameEnv, steps: int) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=21)
    for _ in range(steps):
        obs, *_ = env.step(actions(env, obs))
    return obs


def test_checkpoint_at_step_137_finishes_bit_identically_in_a_fresh_process(tmp_path: Path) -> None:
    env = mtg_env.parallel_env(**CONFIG)
    obs = play_until(env, 137)
    torch.save(env.state_dict(), tmp_path / "game.pt")
    np.save(tmp_path / "obs.npy", np.stack([obs[a] for a in env.agents]))
    expected = finish(env, obs)
    script = f"""
import json, sys, numpy as np, torch
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
torch.set_num_threads(1)
import mtg_env
from tests.test_checkpoint import CONFIG, finish
env = mtg_env.parallel_env(**CONFIG)
env.load_state_dict(torch.load({str(tmp_path / "game.pt")!r}))
stacked = np.load({str(tmp_path / "obs.npy")!r})
obs = dict(zip(env.agents, stacked))
print(json.dumps(finish(env, obs)))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == expected  # 63 steps, every reward equal as a float


def test_pickled_env_continues_the_episode() -> None:
    env = mtg_env.parallel_env(**CONFIG)
    obs = play_until(env, 40)
    copy = pickle.loads(pickle.dumps(env))
    assert finish(copy, obs) == finish(env, obs)


def test_stateful_rule_state_travels_in_the_checkpoint() -> None:
    config = {"suite": "quadratic", "consensus": "nash_mtl", "action_mode": "step_size", "max_cycles": 12,
              "step_size_units": "log"}  # fmt: skip
    env = mtg_env.parallel_env(**config)
    with warnings.catch_warnings(record=True):  # Nash-MTL's solver may miss a step here; both runs must agree
        warnings.simplefilter("always", mtg_env.ConsensusWarning)
        obs = play_until(env, 5)
        checkpoint = env.state_dict()
        failures_at_checkpoint = env.consensus.failures  # type: ignore[attr-defined]
        expected = finish(env, obs)
        fresh = mtg_env.parallel_env(**config)
        fresh.load_state_dict(checkpoint)
        assert fresh.consensus.failures == failures_at_checkpoint  # type: ignore[attr-defined]
        assert finish(fresh, obs) == expected
    assert fresh.consensus.failures == env.consensus.failures  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda c: c.update(format="other"), "not an mtg_env checkpoint"),
        (lambda c: c.pop("state"), r"checkpoint is missing \['state'\]"),
        (lambda c: c["config"].update(max_cycles=7), r"configuration: max_cycles: expected 200 \(this env\), found 7"),
        (lambda c: c["state"].update(trunk=torch.zeros(1, 3)), "checkpoint state 'trunk' must be a torch.float32"),
        (lambda c: c["state"].update(t=torch.zeros(1)), "checkpoint state 't' must be a torch.int64 tensor"),
        (lambda c: c.update(seed=99), "its seed or episode disagrees with its state"),
    ],
)
def test_a_corrupted_or_mismatched_checkpoint_is_refused_and_changes_nothing(corrupt: Any, message: str) -> None:
    source = mtg_env.parallel_env(**CONFIG)
    play_until(source, 3)
    checkpoint = source.state_dict()
    corrupt(checkpoint)
    target = mtg_env.parallel_env(**CONFIG)
    play_until(target, 5)
    before = target.state_dict()
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(checkpoint)
    after = target.state_dict()
    assert after["agents"] == before["agents"] and after["loss_history"] == before["loss_history"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
