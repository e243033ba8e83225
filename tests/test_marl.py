"""The env in the MARL libraries users train with: SuperSuit + Stable-Baselines3, TorchRL, a Gymnasium view.

RLlib runs in its own environment (ray pins gymnasium 1.2): see ``tests/test_rllib.py`` (marker ``rllib``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import mtg_env
from mtg_env.wrappers import JointControlEnv, UnitActions
from tests.conftest import load_script

ss = pytest.importorskip("supersuit")
sb3 = pytest.importorskip("stable_baselines3")
torchrl = pytest.importorskip("torchrl")

SMALL_DIGITS = {"suite": "digits", "hidden": (16, 8), "batch_size": 32}


def sb3_vec_env(env: mtg_env.MultiTaskGameEnv, seed: int, pad: bool = False):  # type: ignore[no-untyped-def]
    env.reset(seed=seed)  # seed the env itself: SB3's PPO(seed=...) crashes on SuperSuit's ConcatVecEnv
    if pad:  # update mode: agents' spaces differ in size; SuperSuit pads them to a common Box
        env = ss.pad_action_space_v0(ss.pad_observations_v0(env))
    return ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), 1, num_cpus=0, base_class="stable_baselines3")


@pytest.mark.parametrize("mode", ["step_size", "update"])
def test_stable_baselines3_ppo_learns_with_one_shared_policy(mode: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"max_update": 0.01} if mode == "update" else {"log_step_range": (-7.0, -1.5)}
    env = mtg_env.parallel_env(**SMALL_DIGITS, action_mode=mode, max_cycles=16, divergence_reward=-10.0, **kwargs)
    venv = sb3_vec_env(env, seed=0, pad=mode == "update")
    assert venv.num_envs == 4  # one vector slot per task: a shared policy acts for all of them
    model = sb3.PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, verbose=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (4, *venv.action_space.shape) and np.isfinite(action).all()
    model.save(tmp_path / "policy")
    loaded = sb3.PPO.load(tmp_path / "policy", device="cpu")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


def torchrl_env(mode: str, suite_kwargs: dict, max_cycles: int = 5):  # type: ignore[no-untyped-def]
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.envs.utils import MarlGroupMapType

    # Random updates blow a game up within steps; the episode boundary (max_cycles) is what these tests check.
    game = mtg_env.parallel_env(
        **suite_kwargs, action_mode=mode, max_cycles=max_cycles, numeric_infos=True, divergence_threshold=None
    )
    # Agents whose spaces differ in size (update mode on digits) cannot be stacked in one group.
    same = len({game.observation_space(a).shape for a in game.possible_agents}) == 1
    group_map = None if same else MarlGroupMapType.ONE_GROUP_PER_AGENT
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PettingZoo in TorchRL is tested")  # TorchRL's version note
        return PettingZooWrapper(game, return_state=True, group_map=group_map, seed=0)


@pytest.mark.parametrize(
    ("mode", "suite"), [("step_size", SMALL_DIGITS), ("update", SMALL_DIGITS), ("update", {"suite": "quadratic"})]
)
def test_torchrl_specs_and_rollout_across_an_episode_boundary(mode: str, suite: dict) -> None:
    from torchrl.envs.utils import check_env_specs

    env = torchrl_env(mode, suite)
    check_env_specs(env)
    td = env.rollout(12, break_when_any_done=False)  # max_cycles 5: crosses two episode ends
    done = td["next", "done"].squeeze(-1)
    assert done.tolist() == [t % 5 == 4 for t in range(12)]
    assert td["state"].shape == (12, len(mtg_env.FEATURES) * len(env.possible_agents))
    for group in env.group_map:
        reward = td["next", group, "reward"].squeeze(-1)
        assert torch.isfinite(reward).all()
        torch.testing.assert_close(reward, -td["next", group, "info", "loss"])  # reward = −loss, per agent


def test_torchrl_mappo_optimisation_steps() -> None:
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    env = torchrl_env("step_size", SMALL_DIGITS, max_cycles=8)
    n_agents = len(env.possible_agents)
    action_spec = env.full_action_spec["task", "action"]
    policy_net = torch.nn.Sequential(
        MultiAgentMLP(
            len(mtg_env.FEATURES), 2 * 2, n_agents, centralised=False, share_params=True, depth=1, num_cells=16
        ),
        NormalParamExtractor(),
    )
    actor = ProbabilisticActor(
        TensorDictModule(policy_net, in_keys=[("task", "observation")], out_keys=[("task", "loc"), ("task", "scale")]),
        in_keys=[("task", "loc"), ("task", "scale")],
        out_keys=[("task", "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        spec=env.full_action_spec,
        return_log_prob=True,
        log_prob_key=("task", "sample_log_prob"),
    )
    # A centralised critic: MAPPO's critic sees every agent's observation (the features state() also holds).
    critic = TensorDictModule(
        MultiAgentMLP(len(mtg_env.FEATURES), 1, n_agents, centralised=True, share_params=True, depth=1, num_cells=16),
        in_keys=[("task", "observation")],
        out_keys=[("task", "state_value")],
    )
    loss = ClipPPOLoss(actor, critic, normalize_advantage=False)
    loss.set_keys(
        reward=("task", "reward"), action=("task", "action"), sample_log_prob=("task", "sample_log_prob"),
        value=("task", "state_value"), done=("task", "done"), terminated=("task", "terminated"),
    )  # fmt: skip
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in loss.parameters()]
    for _ in range(3):
        with torch.no_grad():
            data = env.rollout(16, actor, break_when_any_done=False)
            data["next", "task", "done"] = data["next", "done"].unsqueeze(-1).expand(-1, n_agents, 1)
            data["next", "task", "terminated"] = data["next", "terminated"].unsqueeze(-1).expand(-1, n_agents, 1)
            loss.value_estimator(
                data, params=loss.critic_network_params, target_params=loss.target_critic_network_params
            )
        losses = loss(data)
        total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
        assert torch.isfinite(total)
        optim.zero_grad()
        total.backward()
        optim.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.parameters(), strict=True))


@pytest.mark.parametrize("mode", ["step_size", "update"])
def test_gymnasium_single_agent_view(mode: str) -> None:
    # Raw update units: v6's relative Box is [-1/4, 1], and Gymnasium's checker warns about any Box that is not
    # symmetric (a recommendation; mtg_env.wrappers.UnitActions maps [-1, 1] onto it).
    units = {"update_units": "raw"} if mode == "update" else {}
    env = JointControlEnv(suite="quadratic", action_mode=mode, max_cycles=6, **units)
    check_env(env, skip_render_check=True)  # v2: step_size actions in [-1, 1], as gymnasium recommends
    obs, info = env.reset(seed=0)
    game = env.game
    assert env.action_space.shape == (sum(game.action_space(a).shape[0] for a in game.possible_agents),)
    assert obs.shape == env.observation_space.shape and set(info["agents"]) == set(game.possible_agents)
    total, steps = 0.0, 0
    done = False
    while not done:
        action = np.clip(np.zeros(env.action_space.shape), env.action_space.low, env.action_space.high)
        if mode == "step_size":
            action[:] = -0.2  # log step −3.4 in the default range (−5, −1)
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward == pytest.approx(-sum(i["loss"] for i in info["agents"].values()))
        total += reward
        steps += 1
        done = terminated or truncated
    assert steps == 6 and truncated and not terminated
    with pytest.raises(ValueError, match="joint action has shape"):
        env.reset(seed=0)
        env.step(np.zeros(3))


def load_example(name: str):  # type: ignore[no-untyped-def]
    return load_script(f"examples/{name}.py", name)


def test_ppo_vs_paper_saves_a_policy_that_loads_and_plays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    example = load_example("ppo_vs_paper")
    path = example.train_ppo(timesteps=600, seed=0, out=tmp_path)
    assert path.exists()
    model = sb3.PPO.load(path, device="cpu")
    result = example.evaluate(example.ppo_player(model), range(1000, 1002))
    assert len(result["loss_mean"]) == 3 and np.isfinite(result["l_mt_mean"]) and result["nash_gap_mean"] >= 0
    paper = example.evaluate(example.gradient_player(0.1, "constant"), range(1000, 1002))
    assert paper["l_mt_mean"] < 1.0  # the paper's agent learns the game within the episode


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args"),
    [("sb3_ppo", ["--timesteps", "600"]), ("torchrl_mappo", ["--iterations", "2", "--frames", "50"])],
)
def test_marl_examples_run(script: str, args: list[str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{script}.py"
    subprocess.run([sys.executable, str(path), *args], check=True, capture_output=True)


def test_unit_actions_map_minus_one_to_one_onto_the_box() -> None:
    from pettingzoo.test import parallel_api_test

    env = mtg_env.parallel_env(
        suite="quadratic", action_mode="step_size", log_step_range=(-7.0, -1.5), step_size_units="log"
    )
    unit = UnitActions(env)
    space = unit.action_space("task_0")
    assert space.low.tolist() == [-1.0, -1.0] and space.high.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(unit.to_env_action("task_0", [-1.0, 1.0]), [-7.0, -1.5])
    np.testing.assert_allclose(unit.to_env_action("task_0", [0.0, 5.0]), [-4.25, -1.5])  # clipped into the Box
    parallel_api_test(UnitActions(env), num_cycles=30)
    unit.reset(seed=0)
    unit.step({a: np.zeros(2, np.float32) for a in unit.agents})
    assert unit.state().shape == (3 * len(mtg_env.FEATURES),)  # the wrapped env's methods pass through
