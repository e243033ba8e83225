"""The PettingZoo test utilities on every suite and both action modes."""

from __future__ import annotations

import functools
import types
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

import mtg_env
from mtg_env.consensus.loss_rules import LOSS_RULES
from tests.conftest import DEVICE, MODES, SMALL_SUITES, make_env

CASES = [(s, m) for s in SMALL_SUITES for m in MODES]
IDS = [f"{s}-{m}" for s, m in CASES]


@pytest.mark.parametrize(("suite", "mode"), CASES, ids=IDS)
def test_parallel_api(suite: str, mode: str) -> None:
    parallel_api_test(make_env(suite, mode), num_cycles=200)


@pytest.mark.parametrize(("suite", "mode"), CASES, ids=IDS)
def test_parallel_seed(suite: str, mode: str) -> None:
    parallel_seed_test(functools.partial(make_env, suite, mode), num_cycles=50)


@pytest.mark.parametrize(("suite", "mode"), CASES, ids=IDS)
def test_aec_api(suite: str, mode: str) -> None:
    # The AEC checker is the one that checks observation dtype and bounds and boolean flags.
    env = make_env(suite, mode, max_cycles=100)
    with warnings.catch_warnings():
        if len(set(env.suite.head_sizes)) > 1 and mode == "update":
            # By design: in update mode an observation holds the agent's own head gradient, and the
            # digits heads differ in size (10-way vs 2-way vs regression). PettingZoo only advises here.
            warnings.filterwarnings("ignore", "Agents have different observation space sizes")
            warnings.filterwarnings("ignore", "Observations are different shapes")
        api_test(parallel_to_aec(env), num_cycles=100)


@pytest.mark.parametrize(("suite", "mode"), CASES, ids=IDS)
def test_max_cycles(suite: str, mode: str) -> None:
    # The checker plays random actions: random updates blow a game up within a few steps, which the default
    # divergence_threshold would (rightly) end early. Truncation at max_cycles is what is checked here.
    config = {**SMALL_SUITES[suite], "action_mode": mode, "divergence_threshold": None}
    module = types.SimpleNamespace(
        parallel_env=functools.partial(mtg_env.parallel_env, **config),
        env=functools.partial(mtg_env.env, **config),
    )
    max_cycles_test(module)


@pytest.mark.parametrize(("suite", "mode"), CASES, ids=IDS)
def test_render(suite: str, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    def is_table(text: str) -> bool:
        return "task_0" in text and "loss" in text

    render_test(
        functools.partial(mtg_env.env, **SMALL_SUITES[suite], action_mode=mode, max_cycles=20),
        custom_tests={"ansi": is_table},
    )
    assert "task_0" in capsys.readouterr().out  # "human" printed the table


def test_spaces_are_cached_and_typed() -> None:
    env = make_env("digits", dtype="float64")
    for agent in env.possible_agents:
        assert env.action_space(agent) is env.action_space(agent)
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.observation_space(agent).dtype == np.float64
    obs, _ = env.reset(seed=1)
    assert all(o.dtype == np.float64 for o in obs.values())
    assert env.state().shape == env.state_space.shape
    assert env.state_space.contains(env.state())


def test_agents_and_infos_name_the_tasks() -> None:
    env = mtg_env.parallel_env(suite="digits", batch_size=32)
    assert env.possible_agents == ["task_0", "task_1", "task_2", "task_3"]
    assert env.metadata["name"] == "mtg_digits_v6"
    _, infos = env.reset(seed=0)
    assert [env.task_name(a) for a in env.agents] == ["digit", "parity", "ge5", "ink"]
    assert all(isinstance(v, float) for info in infos.values() for v in info.values())  # numbers only (TorchRL)
    assert infos["task_0"]["head_size"] == 650 and infos["task_3"]["head_size"] == 65
    _, named = mtg_env.parallel_env(suite="digits", batch_size=32, numeric_infos=False).reset(seed=0)
    assert [named[a]["task"] for a in env.agents] == ["digit", "parity", "ge5", "ink"]
    assert env.action_space("task_0").shape == (650 + env.trunk_size,)
    assert env.trunk_size == 64 * 128 + 128 + 128 * 64 + 64


def test_update_mode_observation_begins_with_own_gradients() -> None:
    env = make_env("quadratic", dtype="float64")
    obs, _ = env.reset(seed=3)
    heads, trunk = env.get_parameters()
    suite = env.suite
    for m, agent in enumerate(env.agents):
        a, b = suite._A64[m], suite._b64[m]
        z = np.concatenate([heads.view(3, 2)[m].numpy(), trunk.numpy()])
        np.testing.assert_allclose(obs[agent][:4], a.numpy() @ z - b.numpy(), rtol=1e-12, atol=1e-12)
        assert len(obs[agent]) == 4 + len(mtg_env.FEATURES)


def test_state_and_step_size_observations_share_features() -> None:
    env = make_env("regression", "step_size")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.state(), np.concatenate([obs[a] for a in env.agents]))


# The loss-aware rules and the optimizer after the rule, through the same checkers (small regression / digits games;
# the log-loss rules need the positive losses these suites have).
EXTRA: dict[str, dict[str, Any]] = {
    **{
        f"{rule}-{mode}": {**SMALL_SUITES["regression"], "consensus": rule, "action_mode": mode}
        for rule in LOSS_RULES
        for mode in MODES
    },
    "mean-adam-momentum-digits-update": {
        **SMALL_SUITES["digits"], "consensus": "mean", "action_mode": "update", "trunk_optimizer": "adam",
        "head_optimizer": "momentum", "head_optimizer_kwargs": {"lr": 0.01},
    },
    "famo-adamw-regression-step_size": {
        **SMALL_SUITES["regression"], "consensus": "famo", "action_mode": "step_size",
        "trunk_optimizer": torch.optim.AdamW, "trunk_optimizer_kwargs": {"lr": 0.01},
    },
}  # fmt: skip


@pytest.mark.parametrize("case", list(EXTRA))
def test_parallel_api_and_seed_with_loss_rules_and_optimizers(case: str) -> None:
    config = {**EXTRA[case], "device": DEVICE}
    parallel_api_test(mtg_env.parallel_env(**config), num_cycles=100)
    parallel_seed_test(functools.partial(mtg_env.parallel_env, **config), num_cycles=50)


def _rule_env(rule: str) -> mtg_env.MultiTaskGameEnv:
    return mtg_env.parallel_env(suite="quadratic", num_tasks=4, consensus=rule, action_mode="step_size", max_cycles=8)


@pytest.mark.parametrize("rule", [r for r in mtg_env.CONSENSUS_RULES if r not in LOSS_RULES])  # those: above
def test_every_rule_passes_the_pettingzoo_api_and_seed_tests(rule: str) -> None:
    with warnings.catch_warnings():
        # Nash-MTL's solver (cvxpy/ECOS) may remark on inaccurate solves and the rule warns when it keeps its
        # previous weights; both are the rule's own diagnostics, tested in test_consensus.py.
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        warnings.filterwarnings("ignore", "nash_mtl: ", mtg_env.ConsensusWarning)
        parallel_api_test(_rule_env(rule), num_cycles=20)
        parallel_seed_test(functools.partial(_rule_env, rule), num_cycles=10)
