"""RLlib trains a shared PPO module on the env (marker ``rllib``: run in a venv with ``.[rllib]``)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import mtg_env
from tests.conftest import load_script

pytestmark = pytest.mark.rllib


def load_example():  # type: ignore[no-untyped-def]
    return load_script("examples/rllib_ppo.py", "rllib_ppo")


def test_rllib_wrapper_conventions() -> None:
    pytest.importorskip("ray")
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    env = ParallelPettingZooEnv(mtg_env.parallel_env(suite="quadratic", action_mode="step_size", max_cycles=3))
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"task_0", "task_1", "task_2"}
    seen = []
    for _ in range(3):
        agents = list(obs)[::-1]  # RLlib may hand the actions over in any order
        obs, _, terms, truncs, _ = env.step({a: np.array([-0.2, -0.2], np.float32) for a in agents})
        seen.append(terms)
        assert "__all__" in terms and "__all__" in truncs
    assert truncs["__all__"] and not terms["__all__"]
    assert all(t is not u for t, u in itertools.pairwise(seen))  # fresh dicts every step
    env.render()  # RLlib's wrapper calls render(self.render_mode): the env accepts the argument


def test_rllib_ppo_trains_a_shared_module() -> None:
    ray = pytest.importorskip("ray")
    result = load_example().train(iterations=2, seed=0)
    assert np.isfinite(result["episode_return_mean"]) and result["episode_return_mean"] < 0
    ray.shutdown()


# RLlib registers its multi-agent env with gymnasium each time an algorithm is built in the same process.
@pytest.mark.filterwarnings("ignore:.*Overriding environment rllib-multi-agent-env-v0 already in registry")
@pytest.mark.parametrize("game", [{}, {"action_mode": "step_size"}], ids=["parallel_env()", "step_size"])
def test_rllib_plain_recipe_trains_on_the_defaults(game: dict) -> None:
    # RLlib's documented PettingZoo recipe (ParallelPettingZooEnv + PPO, one shared module) on the env's
    # defaults: digits, no env option. Episodes (500 steps) outlast the iteration; the losses must be finite.
    ray = pytest.importorskip("ray")
    result = load_example().train(iterations=1, seed=0, game=game)
    assert np.isfinite(result["policy_loss"]) and np.isfinite(result["vf_loss"])
    ray.shutdown()
