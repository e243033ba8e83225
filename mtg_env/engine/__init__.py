"""The game engine: B games as pure functions of tensors, on any device, optionally differentiable.

    from mtg_env.engine import Game, reset, step
    game = Game(make_suite("regression"), consensus_rule("mean"), action_mode="step_size", horizon=100)
    state, out = reset(game, seeds=list(range(1024)))
    state, out = step(game, state, torch.full((1024, 3, 2), -2.0))

The env (:class:`mtg_env.MultiTaskGameEnv`) plays one game of it, the vector env many; meta-training
backpropagates through :func:`step`. :func:`step` never modifies the state it is given: a stateful consensus
rule's state is tensors of it (:attr:`GameState.rule_state`), so one state stepped twice plays the same step.
``Game(..., trunk_optimizer=optimizer_spec("adam", {"lr": 1e-3}))`` puts an optimizer after the consensus rule
(:mod:`mtg_env.engine.optim`).
"""

from mtg_env.engine.core import losses_and_grads, reset, reset_where, step, updates
from mtg_env.engine.features import trunk_grad_norm_mean
from mtg_env.engine.game import Game
from mtg_env.engine.layout import FEATURES, NUM_FEATURES
from mtg_env.engine.noise import NoiseSpec, RegSpec
from mtg_env.engine.optim import OPTIMIZERS, OptimizerSpec, optimizer_spec
from mtg_env.engine.state import GameState, StepOutput
from mtg_env.rng import GameRNG

__all__ = [
    "FEATURES",
    "NUM_FEATURES",
    "OPTIMIZERS",
    "Game",
    "GameRNG",
    "GameState",
    "NoiseSpec",
    "OptimizerSpec",
    "RegSpec",
    "StepOutput",
    "losses_and_grads",
    "optimizer_spec",
    "reset",
    "reset_where",
    "step",
    "trunk_grad_norm_mean",
    "updates",
]
