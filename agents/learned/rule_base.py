"""What the learned rules share (:mod:`agents.learned.rules`, :mod:`~agents.learned.lstm_rule`,
:mod:`~agents.learned.step_rule`): the observation features they read, the clock's time scales, the state's type, and
the seeded and zeroed initialisation of their layers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MOVE", "PROGRESS", "RULE_FEATURES", "STEP_FEATURES", "TIME_SCALES", "RuleState", "seeded_init", "zero_init"]

#: Which observation features (indices into :data:`mtg_env.engine.FEATURES`) the update rules read: the loss change,
#: the conflict with the other tasks and the alignment with the last trunk move (bounded, scale-free), and the
#: progress t / horizon (in [0, 1] at any horizon); the loss and gradient norms are scale-dependent.
RULE_FEATURES: tuple[int, ...] = (1, 4, 5, 6)
#: The indices of the progress and of symlog ‖ΔΨ‖: features the same for every player (the trunk's schedule, brake).
PROGRESS, MOVE = 6, 7
#: The features :class:`StepRule` reads: the first seven (the env's v3 observation; the move norm is the trunk's).
STEP_FEATURES: tuple[int, ...] = tuple(range(7))

#: Time scales τ of the embedding tanh(t / τ): a clock that saturates (tanh(100 / 30) = 0.9975) inside any training
#: horizon of 100 steps or more, so no rule meets a time input it did not see in training (with a scale of 1000 the
#: rules trained on 100 steps blew up at 500; docs/results/learned.md).
TIME_SCALES: tuple[float, ...] = (3.0, 10.0, 30.0)

#: State of a rule for B games of K coordinates: named tensors with leading dimensions ``[B, K]``.
RuleState = dict[str, Tensor]


def seeded_init(module: nn.Module, seed: int) -> None:
    """Re-draw every Linear / LSTMCell weight and bias of ``module`` from U(±1/√fan_in) (PyTorch's default
    scale) with a generator seeded by ``seed``: a rule's initial parameters never depend on the global RNG."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                fan_in = sub.in_features
            elif isinstance(sub, nn.LSTMCell):
                fan_in = sub.hidden_size
            else:
                continue
            bound = 1.0 / math.sqrt(fan_in)
            for p in sub.parameters(recurse=False):
                p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=gen))


def zero_init(layer: nn.Module) -> None:
    """Zero an output layer (a Linear): an untrained rule's network adds nothing to the base steps it modulates."""
    assert isinstance(layer, nn.Linear)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
