"""TorchRL: MAPPO on many games at once, through the vector env's TorchRL adapter (``mtg_env.wrappers.to_torchrl``).

The adapter is an ``EnvBase`` of ``batch_size=[games]`` with keys ``observation [games, tasks, 8]``, ``action
[games, tasks, 2]`` (log step sizes), ``reward [games, tasks, 1]`` and ``done [games, 1]``: one shared actor
(``MultiAgentMLP`` with ``share_params=True``) acts for every task, a centralised critic sees every task's
features, and TorchRL's ``Collector`` resets finished games through the adapter's partial resets.

    python examples/vector_torchrl_ppo.py [--games 32] [--iterations 15]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from mtg_env import vector_env
from mtg_env.wrappers import to_torchrl

with warnings.catch_warnings():
    # TorchRL 0.14 deprecates its own weight-updater classes as torchrl.collectors defines them.
    warnings.filterwarnings("ignore", "Creating .*WeightUpdater which inherits", DeprecationWarning)
    from torchrl.collectors import Collector  # 0.14's name of SyncDataCollector


GAME = {"suite": "regression", "action_mode": "step_size"}  # the v2 defaults suit the plain recipe


def make_env(games: int, max_cycles: int, seed: int) -> EnvBase:
    env = to_torchrl(vector_env(games, max_cycles=max_cycles, **GAME))
    env.set_seed(seed)  # game b plays seed + b
    return env


def mean_reward(env: EnvBase, actor: nn.Module, seed: int, max_cycles: int) -> float:
    """Mean reward (−loss) per task and step over one episode of every game, deterministic policy."""
    env.set_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        data = env.rollout(max_cycles, actor)  # every game ends at max_cycles: exactly one episode
    return data["next", "reward"].mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=32, help="games played at once")
    parser.add_argument("--iterations", type=int, default=15, help="collector batches (one episode per game each)")
    parser.add_argument("--max-cycles", type=int, default=50, help="steps per episode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks: extra threads only add overhead
    torch.manual_seed(args.seed)  # the networks' initialisation; the games have their own seeds
    env = make_env(args.games, args.max_cycles, args.seed)
    eval_env = make_env(args.games, args.max_cycles, args.seed + 10_000)  # held-out seeds
    venv = env.venv
    tasks, obs_dim, act_dim = venv.num_tasks, venv.observation_size, venv.action_size
    bounds = env.action_spec_unbatched.space
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(
                MultiAgentMLP(obs_dim, 2 * act_dim, tasks, centralised=False, share_params=True, depth=2, num_cells=64),
                NormalParamExtractor(),
            ),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=TanhNormal,  # squashed into the log-step Box
        distribution_kwargs={"low": bounds.low, "high": bounds.high},
        return_log_prob=True,
    )
    critic = TensorDictModule(
        MultiAgentMLP(obs_dim, 1, tasks, centralised=True, share_params=True, depth=2, num_cells=64),
        in_keys=["observation"],
        out_keys=["state_value"],
    )
    # Normalise advantages per task (dimension -2 of [games, time, tasks, 1]), as TorchRL advises for MARL.
    loss = ClipPPOLoss(
        actor, critic, entropy_coeff=1e-3, normalize_advantage=True, normalize_advantage_exclude_dims=(-2,)
    )
    # The games' done flags are [games, 1]; the value estimator wants them per task, like the rewards.
    loss.set_keys(done="task_done", terminated="task_terminated")
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-4)

    print(f"mean reward before training: {mean_reward(eval_env, actor, args.seed + 10_000, args.max_cycles):.4f}")
    frames = args.games * args.max_cycles
    collector = Collector(
        env,
        actor,
        frames_per_batch=frames,
        total_frames=frames * args.iterations,
        auto_register_policy_transforms=False,  # the policy keeps no recurrent state: no InitTracker needed
    )
    for iteration, data in enumerate(collector):
        for key in ("done", "terminated"):
            data["next", f"task_{key}"] = data["next", key].unsqueeze(-2).expand(*data.shape, tasks, 1)
        with torch.no_grad():
            loss.value_estimator(
                data, params=loss.critic_network_params, target_params=loss.target_critic_network_params
            )
        for _ in range(4):
            losses = loss(data)
            total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            optim.zero_grad()
            total.backward()
            nn.utils.clip_grad_norm_(loss.parameters(), 1.0)
            optim.step()
        collector.update_policy_weights_()
        if iteration % 5 == 0 or iteration == args.iterations - 1:
            print(f"iteration {iteration:3d}: mean reward while collecting {data['next', 'reward'].mean().item():.4f}")
    collector.shutdown()
    print(f"mean reward after training:  {mean_reward(eval_env, actor, args.seed + 10_000, args.max_cycles):.4f}")


if __name__ == "__main__":
    main()
