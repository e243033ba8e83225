"""Bad input across the public surface (the fuzzing report of issue 10): a clear error naming the argument, or a
valid game; never a silent coercion, a crash from inside torch or numpy, or a changed game."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mtg_env
from agents import AdamAgent, GradientAgent, MomentumAgent, RMSpropAgent
from agents.runner import History, run_episode
from mtg_env.cli import main
from mtg_env.suites import make_suite

from .conftest import make_env


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Two ``env.state_dict()`` checkpoints are identical (tensors bit for bit)."""
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, dict):
            assert_same_state(a, b)
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b, key


# --------------------------------------------------------------------------- suite options (report item 10)
@pytest.mark.parametrize(
    ("suite", "kwargs", "error", "message"),
    [
        ("digits", {"hidden": "128"}, TypeError, r"hidden must be a non-empty sequence of layer widths"),
        ("digits", {"hidden": 0}, TypeError, r"hidden must be a non-empty sequence"),
        ("digits", {"hidden": (16, True)}, TypeError, r"hidden\[1\] must be an int >= 1"),
        ("digits", {"hidden": (16, 0)}, ValueError, r"hidden\[1\] must be an int >= 1"),
        ("digits", {"batch_size": "32"}, TypeError, r"batch_size must be an int >= 1 .*got str '32'"),
        ("digits", {"test_fraction": float("nan")}, ValueError, r"test_fraction must be a finite number in \(0.0"),
        ("digits", {"split_seed": -1}, ValueError, r"split_seed must be in \[0, 2\*\*63\)"),
        ("quadratic", {"num_tasks": True}, TypeError, r"num_tasks must be an int >= 1, got bool True"),
        ("quadratic", {"trunk_dim": 2.0}, TypeError, r"trunk_dim must be an int >= 1, got float 2.0"),
        ("quadratic", {"init_scale": float("nan")}, ValueError, r"init_scale must be a finite number >= 0.0"),
        ("quadratic", {"condition": "10"}, TypeError, r"condition must be a finite number in \[1.0, 1000000000000.0\]"),
        ("quadratic", {"game_seed": 1.5}, TypeError, r"game_seed must be an int"),
        ("regression", {"noise": -1}, TypeError, r"noise must be a list with one entry per task, got int -1"),
        ("regression", {"noise": [0.1, float("inf"), 0.1]}, ValueError, r"noise\[1\] must be a finite number"),
        ("regression", {"task_sizes": "100"}, TypeError, r"task_sizes must be a list"),
        ("regression", {"task_sizes": [10, 10]}, ValueError, r"task_sizes must list 3 sizes"),
        ("regression", {"trunk": "cnn"}, ValueError, r"trunk must be one of \['linear', 'mlp'\]"),
        ("regression", {"relatedness": True}, TypeError, r"relatedness must be a finite number in \[0.0, 1.0\]"),
        ("toy2d", {"start": (float("nan"), 0.0)}, ValueError, r"start\[0\] must be a finite number"),
        ("toy2d", {"start": "nope"}, ValueError, r"start must be an index, a point \(x1, x2\) or None"),
        ("toy2d", {"start": True}, ValueError, r"start must be an index, a point"),
        ("toy2d", {"start": 9}, ValueError, r"start must be an int in \[0, 4\]"),
    ],
)
def test_suite_options_are_checked_not_coerced(suite: str, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        mtg_env.parallel_env(suite=suite, **kwargs)


def test_array_options_are_accepted_as_lists() -> None:
    env = mtg_env.parallel_env(suite="regression", task_sizes=np.array([40, 30, 20]), noise=np.array([0.1, 0.2, 0.3]))
    assert env.suite.describe()["task_sizes"] == [40, 30, 20]


def test_a_suite_instance_keeps_its_dtype_and_a_conflicting_one_is_refused() -> None:
    suite = make_suite("quadratic", dtype="float64")
    assert mtg_env.parallel_env(suite=suite).dtype == torch.float64  # no silent float32 default
    with pytest.raises(ValueError, match=r"dtype='float32' differs from the suite instance's dtype torch.float64"):
        mtg_env.parallel_env(suite=suite, dtype="float32")
    with pytest.raises(ValueError, match=r"suite options \['num_tasks'\] cannot be applied"):
        mtg_env.parallel_env(suite=suite, num_tasks=2)


# --------------------------------------------------------------------------- consensus options (report item 11)
@pytest.mark.parametrize(
    ("consensus", "options", "error", "message"),
    [
        ("cagrad", {"c": float("nan")}, ValueError, r"\['c'\] of 'cagrad' must be a finite number >= 0"),
        ("cagrad", {"c": -0.5}, ValueError, r"consensus_kwargs\['c'\] of 'cagrad'"),
        ("nash_mtl", {"n_tasks": 7}, ValueError, r"\['n_tasks'\] of 'nash_mtl' is 7, but the game has 3 tasks"),
        ("nash_mtl", {"max_norm": -1.0}, ValueError, r"consensus_kwargs\['max_norm'\] of 'nash_mtl' must be"),
        ("krum", {"n_byzantine": "1"}, TypeError, r"consensus_kwargs\['n_byzantine'\] of 'krum' must be an int >= 0"),
        ("trimmed_mean", {"trim_number": 1.5}, TypeError, r"\['trim_number'\] of 'trimmed_mean' must be an int"),
    ],
)
def test_consensus_options_fail_at_construction(consensus: str, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        mtg_env.parallel_env(suite="quadratic", consensus=consensus, consensus_kwargs=options)


# --------------------------------------------------------------------------- agents (report items 10, 12)
@pytest.mark.parametrize("cls", [GradientAgent, AdamAgent, RMSpropAgent, MomentumAgent])
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": True}, TypeError, r"lr must be a finite number > 0.0 .*got bool True"),
        ({"lr": "0.1"}, TypeError, r"lr must be a finite number > 0.0 .*got str '0.1'"),
        ({"lr": float("inf")}, ValueError, r"lr must be a finite number > 0.0"),
        ({"lr": 0.1, "trunk_lr": 0.0}, ValueError, r"trunk_lr must be a finite number > 0.0"),
    ],
)
def test_agent_step_sizes_are_checked(cls: type, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: AdamAgent(betas=(0.9,)), ValueError, r"betas must be a pair \(beta1, beta2\)"),
        (lambda: AdamAgent(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be a finite number in \[0.0, 1.0\)"),
        (lambda: AdamAgent(eps=float("nan")), ValueError, r"eps must be a finite number > 0.0"),
        (lambda: RMSpropAgent(alpha=1.0), ValueError, r"alpha must be a finite number in \[0.0, 1.0\)"),
        (lambda: GradientAgent(schedule="robbins_monro", power="0.6"), TypeError, r"power must be a finite number"),
    ],
)
def test_agent_options_are_checked(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()


# --------------------------------------------------------------------------- reset options (report items 10, 12)
def test_reset_refuses_a_typo_of_an_option_and_changes_nothing() -> None:
    env = make_env("quadratic")
    env.reset(seed=3)
    before = env.state_dict()
    with pytest.raises(ValueError, match=r"unknown reset option 'head'; did you mean 'heads'\?"):
        env.reset(seed=4, options={"head": np.zeros(6)})
    assert_same_state(before, env.state_dict())
    env.reset(seed=4, options={"options": 1})  # an unrelated key (PettingZoo's API test passes one) is ignored


def test_reset_takes_a_grad_carrying_tensor_as_a_plain_start() -> None:
    env = make_env("quadratic", dtype="float64")
    trunk = torch.tensor([0.5, -0.25], dtype=torch.float64, requires_grad=True)
    env.reset(seed=0, options={"trunk": trunk})
    state = env.engine_state
    assert torch.equal(state.trunk[0], trunk.detach())
    assert not state.trunk.requires_grad


def test_metrics_of_a_diverged_game_are_nan_not_a_solver_crash() -> None:
    env = make_env("digits", numeric_infos=False, max_update=None, divergence_threshold=None)
    env.reset(seed=0)
    _, _, terminations, _, _ = env.step({a: np.full(env.action_space(a).shape, 1e30, np.float32) for a in env.agents})
    assert all(terminations.values())
    metrics = env.metrics()
    assert math.isnan(metrics["game"]["nash_gap_total"])
    assert all(math.isnan(m["nash_gap"]) for m in metrics["agents"].values())


def test_reset_with_metrics_at_a_huge_start_reports_nan_metrics() -> None:
    env = make_env("quadratic", dtype="float64", metrics_every=1, numeric_infos=False)
    _, infos = env.reset(seed=0, options={"trunk": np.full(2, 1e200), "heads": np.full(6, 1e200)})
    assert math.isnan(infos["task_0"]["metrics"]["nash_gap_total"])


# --------------------------------------------------------------------------- the AEC API (report item 3)
def test_aec_refuses_a_bad_action_when_given_and_keeps_nothing() -> None:
    aec = mtg_env.env(suite="quadratic", max_update=100.0)
    aec.reset(seed=0)
    first = aec.agent_selection
    shape = aec.action_space(first).shape
    with pytest.raises(ValueError, match=rf"action for '{first}' is not finite"):
        aec.step(np.full(shape, np.nan, dtype=np.float32))
    assert aec.agent_selection == first  # still its turn: it may act again
    for _ in aec.possible_agents:  # a full round of good actions now plays a step
        aec.step(np.zeros(aec.action_space(aec.agent_selection).shape, dtype=np.float32))
    assert aec.agent_selection == first
    assert aec.infos[first]["t"] == 1


def test_render_after_close_still_shows_the_last_episode() -> None:
    env = make_env("quadratic", render_mode="rgb_array")
    env.reset(seed=0)
    env.close()
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.ndim == 3


# --------------------------------------------------------------------------- history files (report items 7, 13)
def test_history_keeps_nan_and_inf_apart_and_loads_back(tmp_path: Path) -> None:
    history = History(
        agents=["task_0", "task_1"],
        tasks=["a", "b"],
        losses=np.array([[1.0, 2.0], [np.inf, np.nan]]),
        rewards=np.array([[-np.inf, 0.5]]),
        nash_gap=None,
        terminated=True,
        final={"task_0": {"train_loss": float("nan")}},
        clipped_steps={"task_0": 1},
    )
    path = tmp_path / "history.json"
    history.save(path)
    json.loads(path.read_text())  # strict JSON
    loaded = History.load(path)
    np.testing.assert_array_equal(loaded.losses, history.losses)
    np.testing.assert_array_equal(loaded.rewards, history.rewards)
    assert math.isnan(loaded.final["task_0"]["train_loss"])
    assert (loaded.terminated, loaded.clipped_steps, loaded.tasks) == (True, {"task_0": 1}, ["a", "b"])


def test_history_load_refuses_another_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"tasks": {}}')
    with pytest.raises(ValueError, match=r"is not a saved History \(it lacks \['agents'"):
        History.load(path)


def test_a_run_history_round_trips() -> None:
    env = make_env("quadratic")
    history = run_episode(env, {a: GradientAgent(lr=0.1) for a in env.possible_agents}, seed=0)
    assert history.nash_gap is not None and history.steps == env.max_cycles


def test_cli_rewrites_out_without_stale_files_and_writes_the_summary_last(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--suite", "quadratic", "--steps", "5", "--out", str(out), "--no-progress"]) == 0
    assert (out / "nash_gap.png").is_file()
    assert main(["run", "--suite", "regression", "--steps", "5", "--out", str(out), "--no-progress"]) == 0
    assert not (out / "nash_gap.png").exists()  # the regression run has no Nash-gap curve: the old one is gone
    files = sorted(p.name for p in out.iterdir())
    assert files == ["history.json", "losses.png", "summary.json"]  # no temporary file left behind
    assert (out / "summary.json").stat().st_mtime_ns >= (out / "losses.png").stat().st_mtime_ns


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-1"], r"mtg-env run: lr must be a finite number > 0.0"),
        (["--lr", "nan"], r"mtg-env run: lr must be a finite number > 0.0"),
        (["--device", "bogus"], r"mtg-env run: device must be a torch device"),
        (["--seed", "-1"], r"mtg-env run: --seed must be in \[0, 2\*\*63\)"),
        (["--steps", "0"], r"mtg-env run: --steps must be >= 1"),
    ],
)
def test_cli_bad_values_get_a_message_not_a_traceback(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["run", "--suite", "quadratic", "--out", str(tmp_path / "x"), "--no-progress", *argv])
    assert not (tmp_path / "x").exists()  # refused before anything was written
