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

import torch
from torch import Tensor

from agents.learned.blocks import Blocks
from agents.learned.rules import LSTMRule, MLPRule, Rule, RuleState, StepRule
from mtg_env.engine import Game, GameState, StepOutput
from mtg_env.engine.core import Updates


class EngineDriver:
    """A learned rule acting for every task of B games of ``game`` (see the module docstring).

    Args:
        rule: An :class:`MLPRule` or :class:`LSTMRule` (``update`` games) or a :class:`StepRule`
            (``step_size`` games).
        game: The engine's game spec.
        log_step_range: ``step_size`` mode: the log step sizes the rule's output is clamped into (the env's).
        max_update: ``update`` mode: the bound of each update coordinate (the env's ``max_update``; ``None``:
            no bound).
    """

    def __init__(
        self,
        rule: Rule,
        game: Game,
        log_step_range: tuple[float, float] = (-5.0, -1.0),
        max_update: float | None = None,
    ):
        step_rule = isinstance(rule, StepRule)
        if not (step_rule or isinstance(rule, (MLPRule, LSTMRule))):
            raise TypeError(f"rule must be an MLPRule, LSTMRule or StepRule, got {type(rule).__name__}")
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
        self.rule = rule
        self.game = game
        self.log_step_range = (float(log_step_range[0]), float(log_step_range[1]))
        self.max_update = max_update
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

    def gradients(self, out: StepOutput) -> Tensor:
        """``[B, K]`` every task's head gradient then its trunk gradient (detached: the first-order meta-gradient)."""
        return torch.cat([out.head_grads.detach(), out.jacobian.detach().flatten(1)], dim=1)

    def start(self, out: StepOutput) -> RuleState:
        """The rule's fresh state for the games of ``out`` (from :func:`mtg_env.engine.reset`)."""
        if isinstance(self.rule, StepRule):
            return self.rule.init_state(out.losses.shape[0], self.game.num_tasks)
        return self.rule.init_state(self.gradients(out), self.blocks)

    def act(self, state: GameState, out: StepOutput, memory: RuleState) -> tuple[Tensor | Updates, RuleState]:
        """The engine's actions for this step and the rule's next state."""
        if isinstance(self.rule, StepRule):
            log_steps, memory = self.rule.play(out.features, self.log_step_range, self.sizes, memory)
            return log_steps.to(self.game.dtype), memory
        g = self.gradients(out)
        update, memory = self.rule(g, out.features[:, self.block_task], self.blocks, state.t, memory)
        update = update.to(self.game.dtype)
        if self.max_update is not None:
            update = update.clamp(-self.max_update, self.max_update)
        h = self.game.head_index.numel()
        bsz = update.shape[0]
        return (update[:, :h], update[:, h:].reshape(bsz, self.game.num_tasks, self.game.trunk_size)), memory

    def reset_where(self, mask: Tensor, out: StepOutput | None, memory: RuleState) -> RuleState:
        """Fresh rule state for the games where ``mask [B]`` is true (after :func:`mtg_env.engine.reset_where`)."""
        if not memory or out is None:
            return memory
        fresh = self.start(out)
        index = mask.nonzero().flatten()
        return {k: v.index_copy(0, index, fresh[k].to(v.dtype)) for k, v in memory.items()}
