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


# ----------------------------------------------------------------------------------------- issue 20: data only
MARKER_NAME = "pickle_ran.txt"


def plant(marker: str) -> Any:
    """What a crafted pickle calls when it is loaded: leaves a marker file, then returns a genuine FAMO rule (so a
    loader that checks only the type of what it unpickled is fooled)."""
    Path(marker).write_text("code ran")
    from mtg_env.consensus.loss_rules import FAMO

    return FAMO()


class Payload:
    """A pickle that runs :func:`plant` when loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return plant, (self.marker,)


FAMO_CONFIG: dict[str, Any] = {"suite": "regression", "consensus": "famo", "action_mode": "step_size", "max_cycles": 30}


def policy(env: mtg_env.MultiTaskGameEnv, obs: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """Valid actions in any of the configurations below, varying with the step."""
    if env.action_mode == "step_size":
        action = env.step_size_action(0.03 + 0.01 * (t % 3))
        return {a: action for a in env.agents}
    space = env.action_space(env.possible_agents[0])
    return {a: np.clip(-0.05 * o[: env.head_slot(a) + env.trunk_size], space.low, space.high) for a, o in obs.items()}


def play(env: mtg_env.MultiTaskGameEnv, steps: int) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=21)
    for t in range(steps):
        obs, *_ = env.step(policy(env, obs, t))
    return obs


def finish_playing(env: mtg_env.MultiTaskGameEnv, obs: dict[str, np.ndarray]) -> list[list[float]]:
    rewards = []
    while env.agents:
        obs, r, *_ = env.step(policy(env, obs, len(rewards)))
        rewards.append(list(r.values()))
    return rewards


@pytest.mark.parametrize("through", ["dict", "file"])
def test_a_crafted_checkpoint_runs_no_code_and_is_refused(tmp_path: Path, through: str) -> None:
    marker = tmp_path / MARKER_NAME
    source = mtg_env.parallel_env(**FAMO_CONFIG)
    play(source, 4)
    crafted = source.state_dict()
    crafted.update(format="mtg_env.checkpoint/1", rule=pickle.dumps(Payload(marker)))  # today's layout, a bad pickle
    if through == "file":  # torch's safe loader lets bytes through: the env must not unpickle them
        torch.save(crafted, tmp_path / "crafted.pt")
        crafted = torch.load(tmp_path / "crafted.pt", weights_only=True)
    target = mtg_env.parallel_env(**FAMO_CONFIG)
    play(target, 2)
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"'mtg_env.checkpoint/1'.*never unpickled.*regenerate"):
        target.load_state_dict(crafted)
    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert_same_snapshot(before, snapshot(target))


def test_env_save_and_load_use_the_safe_loader(tmp_path: Path) -> None:
    env = mtg_env.parallel_env(**FAMO_CONFIG)
    obs = play(env, 7)
    env.save(tmp_path / "game.pt")
    expected = finish_playing(env, obs)
    fresh = mtg_env.parallel_env(**FAMO_CONFIG)
    fresh.load(tmp_path / "game.pt")
    assert finish_playing(fresh, obs) == expected
    marker = tmp_path / MARKER_NAME
    torch.save({"format": "mtg_env.checkpoint/2", "evil": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):  # torch's weights_only loader refuses the object
        fresh.load(tmp_path / "evil.pt")
    assert not marker.exists()


def snapshot(env: mtg_env.MultiTaskGameEnv) -> dict[str, Any]:
    """Everything the env holds of its game, as data (old and new layouts alike)."""
    return {
        "checkpoint": env.state_dict(),
        "features": env.state().copy(),
        "agents": list(env.agents),
        "repr": repr(env.consensus),
        "options": dict(getattr(env.consensus, "options", {})),
    }


def assert_same_snapshot(before: dict[str, Any], after: dict[str, Any]) -> None:
    np.testing.assert_array_equal(before["features"], after["features"])
    assert before["agents"] == after["agents"] and before["repr"] == after["repr"]
    assert before["options"] == after["options"]
    a, b = before["checkpoint"], after["checkpoint"]
    assert a.keys() == b.keys() and a["loss_history"] == b["loss_history"] and a["agents"] == b["agents"]
    assert a["state"].keys() == b["state"].keys()
    for key, value in a["state"].items():
        assert torch.equal(value, b["state"][key]), key
    for key in a.keys() - {"state"}:
        assert repr(a[key]) == repr(b[key]), key


QUAD_A = [[[2.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 1.0]], [[1.0, 0.0, 0.2], [0.0, 2.0, 0.1], [0.2, 0.1, 1.5]]]
QUAD_B = [[0.5, -0.2, 0.1], [0.1, 0.3, -0.4]]


def user_quadratic(scale: float) -> mtg_env.QuadraticSuite:
    """A user quadratic game (two tasks, heads of 2, a trunk of 1); ``scale`` makes another game of the same sizes."""
    return mtg_env.QuadraticSuite(A=QUAD_A, b=[[scale * v for v in row] for row in QUAD_B], trunk_dim=1)


BASES: dict[str, dict[str, Any]] = {
    "user_quadratic": {"suite": user_quadratic(1.0), "consensus": "mean", "action_mode": "step_size"},
    "cagrad": {"suite": "quadratic", "consensus": "cagrad", "action_mode": "step_size"},
    "update": {"suite": "quadratic", "consensus": "mean", "action_mode": "update"},
    "famo": FAMO_CONFIG,
}

#: A checkpoint of another configuration: (id, base, the source env's changes, what the message names).
FOREIGN = [
    ("another_game_of_the_same_sizes", "user_quadratic", {"suite": user_quadratic(2.0)}, r"suite.digest: expected"),
    (
        "another_cagrad_c",
        "cagrad",
        {"consensus_kwargs": {"c": 0.4}},
        r"consensus.c: expected 0.5 \(this env\), found 0.4",
    ),
    ("another_log_step_range", "cagrad", {"log_step_range": (-6.0, -1.0)}, r"log_step_range: expected \[-5.0, -1.0\]"),
    ("another_max_update", "update", {"max_update": 2.0}, r"max_update: expected 1.0 \(this env\), found 2.0"),
    ("another_update_units", "update", {"update_units": "raw"}, r"update_units: expected 'relative' \(this env\)"),
    ("another_divergence_threshold", "cagrad", {"divergence_threshold": 1e4}, r"divergence_threshold: expected 1000.0"),
    (
        "another_famo_gamma",
        "famo",
        {"consensus_kwargs": {"gamma": 0.5}},
        r"consensus.gamma: expected 0.01 \(this env\)",
    ),
    ("another_dtype", "cagrad", {"dtype": "float64"}, r"dtype: expected 'torch.float32'"),
    ("another_optimizer", "famo", {"trunk_optimizer": "adam"}, r"trunk_optimizer: expected None"),
]


def nan_at(key: str) -> Any:
    def corrupt(c: dict[str, Any]) -> None:
        c["state"][key] = c["state"][key].clone()
        c["state"][key].view(-1)[0] = float("nan")

    return corrupt


def tensor(key: str, value: Any) -> Any:
    return lambda c: c["state"].update({key: torch.tensor(value, dtype=c["state"][key].dtype)})


def scaled(key: str, factor: float) -> Any:
    return lambda c: c["state"].update({key: c["state"][key] * factor})


#: A checkpoint no game of this configuration reaches: (id, tampering, what the message names).
TAMPERED = [
    ("t_negative", tensor("t", [-1]), r"'t' must be in \[0, max_cycles=30\], got -1"),
    ("t_beyond_horizon", tensor("t", [31]), r"'t' must be in \[0, max_cycles=30\], got 31"),
    ("done_with_live_agents", tensor("done", [True]), r"'done' is True but the agents are \['task_0'"),
    ("no_agents_but_not_done", lambda c: c.update(agents=[]), r"'done' is False but the agents are \[\]"),
    ("duplicate_agents", lambda c: c.update(agents=["task_0", "task_0", "task_1"]), "lists an agent twice"),
    ("some_agents_only", lambda c: c.update(agents=["task_0", "task_1"]), "must be every agent"),
    ("loss_history_abc", lambda c: c.update(loss_history="abc"), "'loss_history' must be a list of t \\+ 1 = 5 rows"),
    ("loss_history_short", lambda c: c["loss_history"].pop(), "'loss_history' must be a list of t \\+ 1 = 5 rows"),
    ("loss_history_not_numbers", lambda c: c["loss_history"].__setitem__(2, ["a", "b", "c"]), "row 2 must be a list"),
    ("loss_history_disagrees", lambda c: c["loss_history"][-1].__setitem__(0, 0.5), "row 4 disagrees with .*'losses'"),
    ("nan_heads", nan_at("heads"), "'heads' is not finite in a live game"),
    ("nan_trunk", nan_at("trunk"), "'trunk' is not finite in a live game"),
    ("nan_jacobian", nan_at("jacobian"), "'jacobian' is not finite in a live game"),
    ("losses_not_history", scaled("losses", 2.0), "'losses' is not that of the checkpoint's parameters at t = 4"),
    ("head_grads_not_recomputed", scaled("head_grads", -1.0), "'head_grads' is not that of the checkpoint's param"),
    ("jacobian_not_recomputed", scaled("jacobian", 1.01), "'jacobian' is not that of the checkpoint's parameters"),
    ("prev_losses_not_history", scaled("prev_losses", 2.0), "row 3 disagrees with its state 'prev_losses'"),
    ("start_losses_not_history", scaled("start_losses", 2.0), "row 0 disagrees with its state 'start_losses'"),
    ("keys_not_the_hash", lambda c: c["state"].update(keys=c["state"]["keys"] + 1), "'keys' is not the hash"),
    ("seed_not_an_int", lambda c: c.update(seed="21"), r"checkpoint 'seed' must be an int"),
    ("episode_negative", lambda c: c.update(episode=-1), r"checkpoint 'episode' must be in \[0, 2\*\*63\)"),
    ("rule_state_nan", nan_at("rule.logits"), "'rule.logits' is not finite in a live game"),
    ("rule_calls_not_t", tensor("rule.calls", [2]), r"'rule.calls' must equal 't' = 4"),
    ("rule_adam_v_negative", scaled("rule.logits_adam_v", -1.0), "'logits_adam_v' \\(Adam's second moment\\)"),
    ("rule_state_missing", lambda c: c["state"].pop("rule.logits"), r"lacks \['rule.logits'\]"),
    ("rule_state_is_bytes", lambda c: c["state"].update({"rule.logits": b"\x80\x04"}), "'rule.logits' must be a"),
    ("rule_state_wrong_shape", lambda c: c["state"].update({"rule.logits": torch.zeros(1, 4)}), "'rule.logits' must"),
    ("unknown_entry", lambda c: c.update(rule=None), r"unknown entries \['rule'\]"),
    ("config_not_a_dict", lambda c: c.update(config="famo"), "'config' must be a dict"),
]


def assert_refused_and_unchanged(config: dict[str, Any], checkpoint: Any, message: str) -> None:
    """Loading ``checkpoint`` into an env of ``config`` mid-episode raises naming the field and changes nothing: the
    env's state is bit for bit what it was, and its game goes on as the same game never offered the checkpoint."""
    target, twin = mtg_env.parallel_env(**config), mtg_env.parallel_env(**config)
    obs, _ = play(target, 3), play(twin, 3)
    before = snapshot(target)
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(checkpoint)
    assert_same_snapshot(before, snapshot(target))
    for t in range(4):
        actions = policy(target, obs, t)
        obs, rewards, *_ = target.step(actions)
        assert rewards == twin.step(actions)[1], f"step {t} after the refused load"


@pytest.mark.parametrize(("base", "changes", "message"), [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
def test_a_checkpoint_of_another_configuration_is_refused_naming_the_field(
    base: str, changes: dict[str, Any], message: str
) -> None:
    config = BASES[base]
    source = mtg_env.parallel_env(**{**config, **changes})
    play(source, 4)
    assert_refused_and_unchanged(config, source.state_dict(), message)


@pytest.mark.parametrize(("corrupt", "message"), [t[1:] for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_a_tampered_checkpoint_is_refused_naming_the_field(corrupt: Any, message: str) -> None:
    source = mtg_env.parallel_env(**FAMO_CONFIG)
    play(source, 4)
    checkpoint = source.state_dict()
    corrupt(checkpoint)
    assert_refused_and_unchanged(FAMO_CONFIG, checkpoint, message)


def test_a_finished_game_round_trips_and_refuses_a_live_one_s_values() -> None:
    """A checkpoint of a finished episode (no agents, done) loads and says so; done at t < max_cycles without a
    divergence or a domain exit is refused."""
    env = mtg_env.parallel_env(**{**FAMO_CONFIG, "max_cycles": 6})
    play(env, 6)
    assert not env.agents
    done = env.state_dict()
    fresh = mtg_env.parallel_env(**{**FAMO_CONFIG, "max_cycles": 6})
    fresh.load_state_dict(done)
    assert not fresh.agents and np.array_equal(fresh.state(), env.state())
    play(env, 3)
    early = env.state_dict()
    early.update(agents=[])
    early["state"]["done"] = torch.tensor([True])
    with pytest.raises(ValueError, match=r"'done' is True at t = 3 < max_cycles, but the game has neither diverged"):
        fresh.load_state_dict(early)
