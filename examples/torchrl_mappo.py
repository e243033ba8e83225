"""TorchRL: MAPPO on the env, a shared-parameter policy with a centralised critic on ``env.state()``.

``PettingZooWrapper`` groups the agents `task_0 … task_M` into one group (`step_size` mode: every agent has
the same spaces); the wrapper's ``return_state=True`` adds the env's global state (every agent's features)
for the critic. ``numeric_infos=True`` keeps the infos numeric with fixed keys, as TorchRL builds its
specs from them. In `update` mode on digits the agents' spaces differ: use
``group_map=MarlGroupMapType.ONE_GROUP_PER_AGENT``.

    python examples/torchrl_mappo.py [--iterations 30]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss, ValueEstimators

import mtg_env

# The env's defaults suit TorchRL: [−1, 1] actions, a bounded divergence reward, numeric infos (no strings).
GAME = {"suite": "regression", "action_mode": "step_size", "max_cycles": 50}


class StateCritic(nn.Module):
    """V_m(state) for every agent m from the global state: the centralised critic of MAPPO."""

    def __init__(self, state_dim: int, n_agents: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, 64), nn.Tanh(), nn.Linear(64, n_agents))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).unsqueeze(-1)  # [..., n_agents, 1]


def make_env(seed: int) -> PettingZooWrapper:
    game = mtg_env.parallel_env(**GAME)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PettingZoo in TorchRL is tested")  # TorchRL's version note
        return PettingZooWrapper(game, return_state=True, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--frames", type=int, default=200, help="env steps per iteration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small tensors: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # on a busy machine more threads cost many times the run time
    torch.manual_seed(args.seed)  # this script's network init; the env has its own seed
    env = make_env(args.seed)
    n_agents = len(env.possible_agents)
    obs_dim = env.observation_spec["task", "observation"].shape[-1]
    action_spec = env.full_action_spec["task", "action"]
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(
                MultiAgentMLP(obs_dim, 4, n_agents, centralised=False, share_params=True, depth=2, num_cells=64),
                NormalParamExtractor(),
            ),
            in_keys=[("task", "observation")],
            out_keys=[("task", "loc"), ("task", "scale")],
        ),
        in_keys=[("task", "loc"), ("task", "scale")],
        out_keys=[("task", "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        spec=env.full_action_spec,
        return_log_prob=True,
        log_prob_key=("task", "sample_log_prob"),
    )
    critic = TensorDictModule(
        StateCritic(env.observation_spec["state"].shape[-1], n_agents),
        in_keys=["state"],
        out_keys=[("task", "state_value")],
    )
    # Normalise advantages per agent (dimension −2 of [time, agent, 1]), as TorchRL advises for MARL.
    loss = ClipPPOLoss(
        actor, critic, entropy_coeff=1e-3, normalize_advantage=True, normalize_advantage_exclude_dims=(-2,)
    )
    loss.set_keys(
        reward=("task", "reward"),
        action=("task", "action"),
        sample_log_prob=("task", "sample_log_prob"),
        value=("task", "state_value"),
        done=("task", "done"),
        terminated=("task", "terminated"),
    )
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-4)
    for iteration in range(args.iterations):
        with torch.no_grad():
            data = env.rollout(args.frames, actor, break_when_any_done=False)
            for key in ("done", "terminated"):  # the group's per-agent flags follow the env's
                data["next", "task", key] = data["next", key].unsqueeze(-1).expand(-1, n_agents, 1)
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
        if iteration % 5 == 0 or iteration == args.iterations - 1:
            mean_loss = -data["next", "task", "reward"].mean().item()
            print(f"iteration {iteration:3d}: mean task loss over the rollout {mean_loss:.4f}")
    # What the numbers mean: the mean of ℓ_m over every agent and every step of a rollout (whole episodes from
    # t = 0, so the untrained start of each episode weighs in); lower is better. PPO's few iterations here need not
    # lower it (it may rise while the policy explores); set it beside the same mean for two fixed policies.
    from _compare import references

    steps = GAME["max_cycles"] * len(env.group_map["task"])
    print("the same mean over whole episodes of 3 held-out seeds:")
    for name, (ret, _) in references(GAME, [args.seed + 1000 + i for i in range(3)]).items():
        print(f"  {name:<34}{-ret / steps:.4f}")


if __name__ == "__main__":
    main()
