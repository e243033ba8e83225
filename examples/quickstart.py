"""The PettingZoo loop on the digits game: every task plays the paper's gradient rule by hand."""

import numpy as np

import mtg_env

env = mtg_env.parallel_env(suite="digits", consensus="sum", action_mode="step_size", max_cycles=200)
observations, infos = env.reset(seed=0)
while env.agents:
    # step_size mode: each task sends (log α, log β); the env applies u = −α ∇_Θ ℓ and proposes −β ∇_Ψ ℓ.
    actions = {agent: np.log([0.1, 0.1]) for agent in env.agents}
    observations, rewards, terminations, truncations, infos = env.step(actions)
print({infos[a]["task"]: round(-r, 4) for a, r in rewards.items()})
print(env.evaluate())
