"""A portfolio of learned rules and a selector that picks one of them per game: per-instance algorithm selection
(Rice 1976; the learned optimizers' version of it is VeLO's, which conditions its rule on the task's size and
progress), the rule of the registry's ``learned_portfolio``.

Why: every single set of MLP-rule weights meta-trained on the mixture of the families is pulled toward one of them
(results/learned.md, "The generalist"), and each knob tried trades one family for another, while each family's
specialist wins its own. The portfolio keeps the specialists whole and learns where each should play, from what a
game says about itself before its first step and the same for every player:

* the trunk's size n (``log n``);
* whether the gradients are random estimates (:attr:`mtg_env.engine.Game.stochastic_gradients`: a minibatch each step,
  or gradient or label noise);
* whether the consensus rule is linear and whether the shortest proposal bounds its move
  (:attr:`~mtg_env.engine.Game.linear_consensus`, :attr:`~mtg_env.engine.Game.min_bounded_consensus`).

The selector is a softmax over the experts, linear in those features, fitted on the tuning stream's games to
minimise the expected log regret (``scripts/fit_portfolio.py``); a game plays its argmax, the chosen expert unchanged,
for its whole episode. Every player of a game reads the same features, so every player picks the same expert (the
trunk step stays the same for all: :mod:`agents.learned.rules`). On the built-in families those features tell the
families apart, so the portfolio plays each family's specialist there; on a suite of your own it plays the expert
whose games looked most like yours, and it is no better than that expert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents.learned.rules import LSTMRule, LSTMRuleConfig, MLPRule, MLPRuleConfig

#: The selector's inputs, in order: a constant, log n, whether the gradients are estimates, whether the consensus
#: rule is linear, whether it is min-bounded (and not linear), log n on the games with noisy gradients only, and
#: (log n)² / 10 (with these the regions of log n where each expert plays need not be one threshold each).
FEATURES: tuple[str, ...] = (
    "bias",
    "log_trunk_size",
    "stochastic_gradients",
    "linear_consensus",
    "min_bounded_consensus",
    "log_trunk_size_if_stochastic",
    "log_trunk_size_squared",
)

#: The rules a portfolio may hold, by registry name (the ``update``-mode rules).
EXPERT_RULES: dict[str, tuple[type[nn.Module], type]] = {
    "learned_mlp": (MLPRule, MLPRuleConfig),
    "learned_lstm": (LSTMRule, LSTMRuleConfig),
}


def game_features(trunk_size: int, stochastic: bool, linear: bool, min_bounded: bool) -> Tensor:
    """``[F]`` (float64) the selector's inputs for a game (:data:`FEATURES`)."""
    if isinstance(trunk_size, bool) or not isinstance(trunk_size, int) or trunk_size < 1:
        raise ValueError(f"trunk_size must be a positive int, got {trunk_size!r}")
    log_n, noisy = math.log(trunk_size), float(stochastic)
    values = [1.0, log_n, noisy, float(linear), float(min_bounded), log_n * noisy, log_n * log_n / 10.0]
    return torch.tensor(values, dtype=torch.float64)


@dataclass(frozen=True)
class PortfolioConfig:
    """Hyper-parameters of :class:`PortfolioRule`: its experts, each ``(registry name, config dict)``, and their
    labels (what each was meta-trained on, e.g. ``"digits"``)."""

    experts: tuple[tuple[str, Mapping[str, Any]], ...]
    labels: tuple[str, ...]


class PortfolioRule(nn.Module):
    """Learned rules (``experts``) and a linear selector ``[K, F]`` over :data:`FEATURES` that picks one per game.

    It does not play itself: :class:`~agents.learned.batched.EngineDriver` and
    :class:`~agents.learned.policy.LearnedAgent` ask it for the expert of their game (:meth:`expert_for_game`,
    :meth:`expert_for_info`) and play that one. The selector starts at zero (every game picks the first expert) and
    is fitted by ``scripts/fit_portfolio.py``.

    Raises:
        ValueError: for no experts, an expert of a rule a portfolio cannot hold, a config that rule refuses, or
            labels that are not one distinct name per expert.
    """

    def __init__(self, config: PortfolioConfig):
        super().__init__()
        experts: tuple[tuple[Any, ...], ...] = tuple(  # a file's lists as tuples
            tuple(e) if isinstance(e, (list, tuple)) else (e,) for e in config.experts
        )
        if not isinstance(config.labels, (list, tuple)) or not all(isinstance(x, str) and x for x in config.labels):
            raise ValueError(f"labels must be a list of non-empty strings, one per expert, got {config.labels!r}")
        labels = tuple(config.labels)
        if not experts:
            raise ValueError("a portfolio needs at least one expert, got none")
        if len(labels) != len(experts) or len(set(labels)) != len(labels):
            raise ValueError(f"labels must name each of the {len(experts)} experts once, got {list(labels)}")
        modules = []
        for i, entry in enumerate(experts):
            sound = len(entry) == 2 and isinstance(entry[1], Mapping) and all(isinstance(k, str) for k in entry[1])
            if not (sound and isinstance(entry[0], str) and entry[0] in EXPERT_RULES):
                raise ValueError(
                    f"experts[{i}] must be (name, config dict) with name one of {sorted(EXPERT_RULES)}, got {entry!r}"
                )
            name: str = entry[0]
            fields = {k: tuple(v) if k == "decays" else v for k, v in dict(entry[1]).items()}
            rule_cls, config_cls = EXPERT_RULES[name]
            try:
                modules.append(rule_cls(config_cls(**fields)))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"experts[{i}] ({labels[i]!r}): {name}'s config refuses these fields ({err})"
                ) from None
        self.config = PortfolioConfig(experts=tuple((str(e[0]), dict(e[1])) for e in experts), labels=labels)
        self.experts = nn.ModuleList(modules)
        self.selector = nn.Parameter(torch.zeros(len(modules), len(FEATURES)))

    def scores(self, features: Tensor) -> Tensor:
        """``[K]`` each expert's score for a game's features ``[F]`` (:func:`game_features`)."""
        return self.selector.detach().double() @ features.to(self.selector.device, torch.float64)

    def choose(self, trunk_size: int, stochastic: bool, linear: bool, min_bounded: bool) -> int:
        """The index of the expert a game with these properties plays (the highest score; ties: the first)."""
        return int(self.scores(game_features(trunk_size, stochastic, linear, min_bounded)).argmax())

    def expert(self, index: int) -> MLPRule | LSTMRule:
        """The expert ``index`` (in :attr:`PortfolioConfig.labels` order)."""
        rule = self.experts[index]
        assert isinstance(rule, (MLPRule, LSTMRule))
        return rule

    def expert_for_game(self, game: Any) -> MLPRule | LSTMRule:
        """The expert that plays the engine's ``game`` (:class:`mtg_env.engine.Game`)."""
        bounded = bool(game.min_bounded_consensus) and not bool(game.linear_consensus)
        index = self.choose(game.trunk_size, game.stochastic_gradients, game.linear_consensus, bounded)
        return self.expert(index)

    def expert_for_info(self, info: Mapping[str, Any], trunk_size: int) -> MLPRule | LSTMRule:
        """The expert that plays the env whose reset ``info`` (one player's) and ``trunk_size`` these are. A key the
        info lacks reads as the env's default would say nothing: not stochastic, linear, not min-bounded."""
        linear = bool(info.get("linear_consensus", True))
        bounded = bool(info.get("min_bounded_consensus", False)) and not linear
        index = self.choose(int(trunk_size), bool(info.get("stochastic_gradients", False)), linear, bounded)
        return self.expert(index)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "a PortfolioRule does not play itself: play its expert for the game (expert_for_game / expert_for_info), "
            "as EngineDriver and LearnedAgent do"
        )
