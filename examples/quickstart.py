"""The PettingZoo loop on the digits game: every task plays the paper's gradient rule by hand."""

import torch

import mtg_env

# One torch thread: the game's tensors are small, and on a busy machine torch's default (all cores) costs many
# times the run time (see the env's docstring, "Threads").
torch.set_num_threads(1)

env = mtg_env.parallel_env(suite="digits", consensus="sum", action_mode="step_size", max_cycles=200)
observations, infos = env.reset(seed=0)
while env.agents:
    # step_size mode: each task sends its step sizes (α, β) as an action in [-1, 1] (env.step_size_action maps
    # them); the env applies u = −α ∇_Θ ℓ and proposes −β ∇_Ψ ℓ.
    actions = {agent: env.step_size_action(0.1, 0.1) for agent in env.agents}
    observations, rewards, terminations, truncations, infos = env.step(actions)
print({env.task_name(a): round(-r, 4) for a, r in rewards.items()})
print(env.evaluate())
