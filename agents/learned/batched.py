"""The batched form of a learned agent: one rule playing every task of B games on the engine's outputs.

    driver = EngineDriver(rule, game)
    state, out = engine.reset(game, seeds)
    memory = driver.start(out)
    actions, memory = driver.act(state, out, memory)      # update mode: (head_updates, proposals)
    state, out = engine.step(game, state, actions)          # differentiable in the rule's parameters

Coordinates are laid out as ``[heads (H) ; task 0's trunk proposal (n) ; … ; task M−1's (n)]``: K = H + M·n, in
2M blocks (:class:`~agents.learned.blocks.Blocks`), each reading its own task's features. Task m's coordinates are
exactly what its :class:`~agents.learned.policy.LearnedAgent` sees in the env (its h_m head gradients and its trunk
gradient), so the two forms agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from agents.learned.blocks import Blocks
from agents.learned.portfolio import PortfolioRule
from agents.learned.rules import LSTMRule, MLPRule, Rule, RuleState, StepRule
from mtg_env.engine import Game, GameState, StepOutput, trunk_grad_norm_mean
from mtg_env.engine.core import Updates

#: How many graphs of the rules' compiled step one process may compile (``EngineDriver(compile=True)``): one per game
#: shape (B, the game's sizes), rule config, trunk scale (``sum_scaled``: one per consensus rule's ``sum_scale``) and
#: grad mode (meta-training adds two or three a shape, as the meta-graph
#: reaches the rule's state). torch's own limit, 8 a function, is shared by every driver and falls back to eager
#: silently once hit; past this one the driver raises.
RECOMPILE_LIMIT = 64
#: The steps of each batch size and grad mode a compiled driver watches for compiles (see :meth:`EngineDriver.act`).
COMPILING_STEPS = 4


class EngineDriver:
    """A learned rule acting for every task of B games of ``game`` (see the module docstring).

    Args:
        rule: An :class:`MLPRule` or :class:`LSTMRule` (``update`` games) or a :class:`StepRule`
            (``step_size`` games), or a :class:`~agents.learned.portfolio.PortfolioRule`, whose expert for ``game``
            (:meth:`~agents.learned.portfolio.PortfolioRule.expert_for_game`) then plays (``rule`` is that expert).
        game: The engine's game spec.
        log_step_range: ``step_size`` mode: the log step sizes the rule's output is clamped into (the env's).
        max_update: ``update`` mode: the bound of each update coordinate (the env's ``max_update``; ``None``:
            no bound).
        compile: Play the rule's step compiled by ``torch.compile`` (TorchInductor: C++ kernels on the CPU, which
            need a C++ compiler at run time; Triton kernels on CUDA). A step of the rule is a few hundred small
            tensor operations whatever the game's size, so on small games it is bound by their dispatch, which
            fusing removes (``benchmarks/meta_train_cost.py --compile``: B = 64 quadratics play at 4.1x Adam's cost
            eager and 1.8x compiled; its kernels run on one thread). The first step of each new shape (B, the
            game's sizes) compiles, 10-20 s; later drivers of the same rule class and shapes reuse it; under
            autograd (meta-training) the first two or three steps of a shape compile again as the meta-graph
            reaches the rule's state. At most :data:`RECOMPILE_LIMIT` graphs a process (then a RuntimeError, not
            torch's silent fall back to eager; checked on each batch size's first :data:`COMPILING_STEPS` steps, where
            graphs compile). A step equals the eager rule's to float32 round-off (fused kernels
            reassociate sums), not bit for bit: the pins and seeded replays are of the eager rule. Over a game the
            difference can grow where the game amplifies round-off: under ``mgda`` (a min-norm point that is often
            exactly 0, and a brake that reads the log of the move) a float64 quadratic game's losses differed by
            order 1 after 7 steps (the agent and driver forms of the eager rule drift so too).
    """

    def __init__(
        self,
        rule: Rule | PortfolioRule,
        game: Game,
        log_step_range: tuple[float, float] = (-5.0, -1.0),
        max_update: float | None = None,
        compile: bool = False,
    ):
        #: The rule given: a portfolio (:class:`~agents.learned.portfolio.PortfolioRule`), or the rule itself.
        self.given = rule
        if isinstance(rule, PortfolioRule):  # the expert the portfolio picks for this game plays it
            rule = rule.expert_for_game(game)
        assert not isinstance(rule, PortfolioRule)
        step_rule = isinstance(rule, StepRule)
        if not (step_rule or isinstance(rule, (MLPRule, LSTMRule))):
            raise TypeError(f"rule must be an MLPRule, LSTMRule, StepRule or PortfolioRule, got {type(rule).__name__}")
        expected = "step_size" if step_rule else "update"
        if game.action_mode != expected:
            raise ValueError(
                f"{type(rule).__name__} plays action_mode={expected!r} games, got a game with "
                f"action_mode={game.action_mode!r}"
            )
        rule_device = next(rule.parameters()).device
        if rule_device != game.device:
            raise ValueError(
                f"the rule's parameters are on {rule_device}, the game on {game.device}; move the rule with "
                f"rule.to({str(game.device)!r})"
            )
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        self.rule = rule
        self.game = game
        self.log_step_range = (float(log_step_range[0]), float(log_step_range[1]))
        self.max_update = max_update
        #: Whether the rule's step runs compiled (``compile``).
        self.compiled = compile
        #: Compiled steps played per (batch size, grad mode): the first :data:`COMPILING_STEPS` are watched.
        self._calls: dict[tuple[int, bool], int] = {}
        #: One step of the rule (compiled with ``compile``): ``StepRule.play``, or :meth:`_update`.
        self._play: Callable[..., tuple[Any, RuleState]] = rule.play if isinstance(rule, StepRule) else self._update
        if compile:
            # One thread a kernel: the rule's tensors are small (a parallel loop's startup costs more than the
            # loop), and TorchInductor's OpenMP kernels for this step corrupt the heap when torch has 2+ threads
            # (torch 2.13: `free(): invalid next size` on B = 8 quadratic games; tests/test_compiled.py).
            self._play = torch.compile(self._play, dynamic=False, options={"cpp.threads": 1})
        device = game.device
        m, n = game.num_tasks, game.trunk_size
        coord_task = torch.cat([game.head_index, torch.arange(m, device=device).repeat_interleave(n)])
        is_trunk = torch.cat(
            [torch.zeros(game.head_index.numel(), dtype=torch.bool, device=device),
             torch.ones(m * n, dtype=torch.bool, device=device)]
        )  # fmt: skip
        #: The coordinates' blocks: task m's head is block 2m, its trunk proposal 2m + 1.
        self.blocks = Blocks(is_trunk, 2 * coord_task + is_trunk.long(), 2 * m)
        #: ``[2M]`` the task of each block (a block reads its task's features).
        self.block_task = torch.arange(m, device=device).repeat_interleave(2)
        #: ``[M, 2]`` each task's head and trunk sizes (the step rule's guard bounds a first move by them).
        self.sizes = self.blocks.sizes.view(m, 2)
        #: The factor of every trunk proposal: the game's ``sum_scale`` for a rule with ``sum_scaled`` (1 where the game
        #: has none: a consensus rule without a constant unanimity gain), else 1.
        self.trunk_scale = trunk_scale(rule, lambda: game.sum_scale)
        #: Whether the rule's trunk boost may play in these games: the game's ``linear_consensus`` for a rule with
        #: ``boost_linear_only``, else True.
        self.boost_allowed = boost_allowed(rule, lambda: game.linear_consensus)

        def min_bounded() -> bool:  # measured only when a rule's option asks
            return game.min_bounded_consensus and not game.linear_consensus

        #: Whether the rule's AMSGrad share may play in these games: the game's ``min_bounded_consensus`` and not its
        #: ``linear_consensus`` for a rule with ``trunk_adam`` and ``adam_min_bounded_only``, else True (not measured).
        self.adam_allowed = adam_allowed(rule, min_bounded)
        #: Whether the rule balances its trunk proposals in these games (``balance_min_bounded``): the game's
        #: ``min_bounded_consensus`` and not its ``linear_consensus``; False (not measured) for a rule without it.
        self.balanced = balance_allowed(rule, min_bounded)
        #: Whether the rule plays its ``guard_memory_noisy_bounded`` in these games: the game's
        #: ``stochastic_gradients``, ``min_bounded_consensus`` and not its ``linear_consensus``; False (not measured)
        #: for a rule without it.
        self.noisy_bounded = noisy_bounded_allowed(rule, lambda: game.stochastic_gradients and min_bounded())
        #: Whether the rule plays Adam's heads in these games (``heads_adam``): the game's ``stochastic_gradients``;
        #: False for a rule without it.
        self.heads_adam = heads_adam_allowed(rule, lambda: game.stochastic_gradients)

    def gradients(self, out: StepOutput) -> Tensor:
        """``[B, K]`` every task's head gradient then its trunk gradient (detached: the first-order meta-gradient)."""
        return _coordinates(out.head_grads, out.jacobian)

    def start(self, out: StepOutput) -> RuleState:
        """The rule's fresh state for the games of ``out`` (from :func:`mtg_env.engine.reset`)."""
        if isinstance(self.rule, StepRule):
            return self.rule.init_state(out.losses.shape[0], self.game.num_tasks)
        if isinstance(self.rule, MLPRule):
            return self.rule.init_state(
                self.gradients(out), self.blocks, linear_consensus=self.boost_allowed,
                min_bounded_consensus=self.adam_allowed, balanced=self.balanced, noisy_bounded=self.noisy_bounded,
                stochastic=self.heads_adam,
            )  # fmt: skip
        return self.rule.init_state(self.gradients(out), self.blocks)

    def act(self, state: GameState, out: StepOutput, memory: RuleState) -> tuple[Tensor | Updates, RuleState]:
        """The engine's actions for this step and the rule's next state."""
        if not self.compiled:
            return self._act(state, out, memory)
        # Graphs compile on a shape's first steps (under autograd the first two or three, as the meta-graph reaches
        # the rule's state). Only there does the driver raise torch's limit and make hitting it an error, and
        # silence torch's tracing warning: patching torch's config costs about 0.1 ms a call, a quarter of a
        # compiled step on small games.
        key = (out.head_grads.shape[0], torch.is_grad_enabled())
        calls = self._calls.get(key, 0)
        if calls >= COMPILING_STEPS:
            return self._act(state, out, memory)
        self._calls[key] = calls + 1
        with (
            warnings.catch_warnings(),
            torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True),
        ):
            # Dynamo reads .grad of the inputs it wraps; for the rule's state, which carries the meta-graph between
            # steps when meta-training, torch warns that a non-leaf's .grad is not populated (a false alarm of
            # torch's, raised by tracing only).
            warnings.filterwarnings("ignore", "The .grad attribute of a Tensor that is not a leaf", UserWarning)
            try:
                return self._act(state, out, memory)
            except torch._dynamo.exc.FailOnRecompileLimitHit as err:
                raise RuntimeError(
                    f"compile=True: this process has compiled the learned rules' step {RECOMPILE_LIMIT} times (one "
                    "graph per game shape, rule config, trunk scale and grad mode); past that torch would play it "
                    "uncompiled without saying so. Play games of many shapes with compile=False, or call "
                    "torch._dynamo.reset() between batches of shapes"
                ) from err

    def _act(self, state: GameState, out: StepOutput, memory: RuleState) -> tuple[Tensor | Updates, RuleState]:
        inputs = (out.head_grads, out.jacobian, out.features)
        if self.compiled:  # a graph is specialised to its inputs' strides (the engine's are views, a merged output not)
            head_grads, jacobian, features = (x.contiguous() for x in inputs)
        else:
            head_grads, jacobian, features = inputs
        if isinstance(self.rule, StepRule):
            log_steps, memory = self._play(features, self.log_step_range, self.sizes, memory)
            return log_steps.to(self.game.dtype), memory
        return self._play(head_grads, jacobian, features, state.t, memory)

    def _update(
        self, head_grads: Tensor, jacobian: Tensor, features: Tensor, t: Tensor, memory: RuleState
    ) -> tuple[Updates, RuleState]:
        """``update`` mode's step: the rule on every task's coordinates, its update split into the engine's action."""
        g = _coordinates(head_grads, jacobian)
        if "balance_on" in memory:  # balance_min_bounded, where it plays: G of this step, the same for every player
            memory = memory | {"trunk_grad_norm_mean": trunk_grad_norm_mean(jacobian).unsqueeze(1)}
        update, memory = self.rule(g, features[:, self.block_task], self.blocks, t, memory)
        update = update.to(self.game.dtype)
        h = self.game.head_index.numel()
        heads, proposals = update[:, :h], update[:, h:].reshape(-1, self.game.num_tasks, self.game.trunk_size)
        if self.trunk_scale != 1.0:  # sum_scaled: the proposals as the consensus rule needs them to move as sum's
            proposals = proposals * self.trunk_scale
        if self.max_update is not None:
            heads, proposals = (
                heads.clamp(-self.max_update, self.max_update),
                proposals.clamp(-self.max_update, self.max_update),
            )
        return (heads, proposals), memory

    def reset_where(self, mask: Tensor, out: StepOutput | None, memory: RuleState) -> RuleState:
        """Fresh rule state for the games where ``mask [B]`` is true (after :func:`mtg_env.engine.reset_where`)."""
        if not memory or out is None:
            return memory
        fresh = self.start(out)
        index = mask.nonzero().flatten()
        return {k: v.index_copy(0, index, fresh[k].to(v.dtype)) for k, v in memory.items()}


def _coordinates(head_grads: Tensor, jacobian: Tensor) -> Tensor:
    """``[B, K]``: the heads' gradients ``[B, H]`` then each task's trunk gradient ``[B, M, n]``, detached."""
    return torch.cat([head_grads.detach(), jacobian.detach().flatten(1)], dim=1)


def trunk_scale(rule: Rule, sum_scale: Callable[[], float | None]) -> float:
    """The factor of ``rule``'s trunk proposals: the game's ``sum_scale()`` (M / γ) when its config has ``sum_scaled``
    and the game has one, else 1 (``sum_scale`` is not called for a rule without the option: measuring it calls the
    consensus rule)."""
    if not getattr(rule.config, "sum_scaled", False):
        return 1.0
    scale = sum_scale()
    return 1.0 if scale is None else float(scale)


def adam_allowed(rule: Rule, min_bounded: Callable[[], bool]) -> bool:
    """What ``rule`` is told of the games' consensus rule for its AMSGrad share: ``min_bounded()`` (the shortest
    proposal bounds the move, and the rule is not linear) for a rule with ``trunk_adam`` and
    ``adam_min_bounded_only``, else True (an ungated share plays everywhere; ``min_bounded`` is then not called:
    measuring it calls the consensus rule)."""
    config = rule.config
    if getattr(config, "trunk_adam", False) and getattr(config, "adam_min_bounded_only", False):
        return bool(min_bounded())
    return True


def balance_allowed(rule: Rule, min_bounded: Callable[[], bool]) -> bool:
    """Whether ``rule`` balances its trunk proposals in the games: ``min_bounded()`` (the shortest proposal bounds the
    move, and the rule is not linear) for a rule with ``balance_min_bounded``, else False (``min_bounded`` is then
    not called: measuring it calls the consensus rule)."""
    if getattr(rule.config, "balance_min_bounded", False):
        return bool(min_bounded())
    return False


def noisy_bounded_allowed(rule: Rule, noisy_bounded: Callable[[], bool]) -> bool:
    """Whether ``rule`` plays its guard memory for noisy min-bounded games: ``noisy_bounded()`` (the gradients are
    estimates, the shortest proposal bounds the move, and the consensus rule is not linear) for a guarded rule with
    ``guard_memory_noisy_bounded``, else False (``noisy_bounded`` is then not called: measuring it calls the consensus
    rule)."""
    config = rule.config
    if getattr(config, "guard", False) and getattr(config, "guard_memory_noisy_bounded", None) is not None:
        return bool(noisy_bounded())
    return False


def heads_adam_allowed(rule: Rule, stochastic: Callable[[], bool]) -> bool:
    """Whether ``rule`` plays Adam's heads in the games: ``stochastic()`` (the gradients are estimates) for a rule with
    ``heads_adam``, else False (``stochastic`` is then not called)."""
    if getattr(rule.config, "heads_adam", False):
        return bool(stochastic())
    return False


def boost_allowed(rule: Rule, linear_consensus: Callable[[], bool]) -> bool:
    """What ``rule`` is told of the games' consensus rule: ``linear_consensus()`` for a rule whose boost plays only
    under a linear one (``trunk_boost`` > 0 with ``boost_linear_only``), else True (``linear_consensus`` is then not
    called: measuring it calls the consensus rule)."""
    config = rule.config
    if getattr(config, "trunk_boost", 0.0) > 0 and getattr(config, "boost_linear_only", False):
        return bool(linear_consensus())
    return True
