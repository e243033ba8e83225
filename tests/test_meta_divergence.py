"""A game that diverges while a meta-training batch is unrolled (its loss or gradients stop being finite) must not
take the other games' meta-gradient with it: the meta-gradient stays finite and is the one of the batch without that
game (times its share of the mean), and the dead game's meta-loss still counts the upper clamp."""

from __future__ import annotations

import dataclasses
import gc
import math
import weakref

import pytest
import torch

from agents.learned.meta_config import MetaTrainConfig
from agents.learned.meta_grad import _tbptt_iteration
from agents.learned.meta_loss import _LOG_HIGH, _game, _unroll
from tests.test_learned import perturbed_rule

QUADRATIC = {"num_tasks": 3}
SEEDS = [11, 12, 13]


def _config(consensus: str) -> MetaTrainConfig:
    return MetaTrainConfig(agent="learned_mlp", suite="quadratic", consensus=consensus)


def _kill(unroll: object, game: int, factor: float = math.nan) -> None:
    """Game ``game``'s trunk times ``factor`` (NaN: what an overflowing step leaves; 1e60: a float64 game past float32's
    range, which the float32 rule reads before the game's own losses overflow), the others' state and graph as they
    were."""
    state = unroll.state  # type: ignore[attr-defined]
    rows = torch.zeros(state.trunk.shape[0], dtype=torch.bool)
    rows[game] = True
    blown = state.trunk.detach() * factor  # a value put there, not a function of the rule (0 · NaN in backward)
    trunk = torch.where(rows.view(-1, *([1] * (state.trunk.dim() - 1))), blown, state.trunk)
    unroll.state = dataclasses.replace(state, trunk=trunk)  # type: ignore[attr-defined]


def _meta_gradient(
    consensus: str, seeds: list[int], kill: int | None, before: int, after: int, agent: str = "learned_mlp",
    dtype: str = "auto", factor: float = math.nan,
) -> tuple[list, float]:  # fmt: skip
    """The meta-gradient of ``before + after`` unrolled steps (one truncation, one graph), game ``kill`` of the batch
    made to diverge between them; and the meta-loss of the ``after`` steps."""
    config = dataclasses.replace(_config(consensus), agent=agent, dtype=dtype)
    rule = perturbed_rule(agent, seed=3)
    game, floor, whole = _game(config, QUADRATIC, before + after + 2)
    unroll = _unroll(config, rule, game, seeds, floor, whole)
    first = unroll.advance(before)
    if kill is not None:
        _kill(unroll, kill, factor)
    second = unroll.advance(after)
    (first + second).backward()
    return [p.grad.clone() for p in rule.parameters()], float(second.detach())


@pytest.mark.parametrize("consensus", ["sum", "mgda"])
@pytest.mark.parametrize("before", [0, 2])
def test_a_diverging_game_leaves_the_others_meta_gradient_finite_and_unchanged(consensus: str, before: int) -> None:
    """Game 1 of three dies after ``before`` steps of a truncation: every step of its own gives no gradient (those
    before its death included), the other two give exactly what they give alone, scaled by the mean's 2/3."""
    after = 3
    grads, loss = _meta_gradient(consensus, SEEDS, 1, before, after)
    alone, alone_loss = _meta_gradient(consensus, [SEEDS[0], SEEDS[2]], None, before, after)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in alone)
    for g, a in zip(grads, alone, strict=True):
        torch.testing.assert_close(g * 3, a * 2, rtol=1e-5, atol=1e-7)
    # The dead game still counts: the upper clamp on each of its steps, in the mean over three games.
    assert loss == pytest.approx((2 * alone_loss + after * _LOG_HIGH) / 3, rel=1e-5)


@pytest.mark.parametrize("agent", ["learned_mlp", "learned_lstm"])
@pytest.mark.parametrize("factor", [math.nan, 1e60])
def test_a_float64_game_past_float32s_range_is_dead_before_the_rule_reads_it(agent: str, factor: float) -> None:
    """A float64 game (the quadratic recipes' dtype) 1e60 from the start is finite in its own dtype, not in the rule's
    float32: the rule must not read it (its NaNs would reach the shared meta-gradient and stay in its memory), and the
    others' meta-gradient is that of the batch without it, in this truncation and the next."""
    grads, _ = _meta_gradient("sum", SEEDS, 1, 2, 3, agent, "float64", factor)
    alone, _ = _meta_gradient("sum", [SEEDS[0], SEEDS[2]], None, 2, 3, agent, "float64")
    for g, a in zip(grads, alone, strict=True):
        torch.testing.assert_close(g * 3, a * 2, rtol=1e-5, atol=1e-7)


def test_an_unroll_is_freed_once_its_truncations_are_done() -> None:
    """The backward hooks must not keep an unroll (its games, states, suite) alive after meta-training drops it: a
    graph that outlives a truncation (the engine's rewards) holds the hooks."""
    config = _config("sum")
    rule = perturbed_rule("learned_mlp", seed=3)
    game, floor, whole = _game(config, QUADRATIC, 8)
    unroll = _unroll(config, rule, game, SEEDS, floor, whole)
    for _ in range(2):
        unroll.advance(3).backward()
        unroll.detach()
    ref = weakref.ref(unroll)
    del unroll
    gc.collect()
    assert ref() is None


def test_an_iteration_with_a_diverging_game_takes_every_meta_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meta-iteration whose first game dies at its first step: no meta-step is skipped (before, every truncation
    after the death was), and the rule's parameters stay finite."""
    import agents.learned.meta_grad as meta_grad

    made = []

    def unroll_then_kill(*args: object, **kwargs: object) -> object:
        unroll = _unroll(*args, **kwargs)  # type: ignore[arg-type]
        if not made:
            _kill(unroll, 0)
        made.append(unroll)
        return unroll

    monkeypatch.setattr(meta_grad, "_unroll", unroll_then_kill)
    config = dataclasses.replace(_config("sum"), games=3, configs=2, horizons=(9,), truncation=3)
    rule = perturbed_rule("learned_mlp", seed=3)
    optimizer = torch.optim.Adam(rule.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in rule.parameters()]
    loss, skipped = _tbptt_iteration(rule, optimizer, config, 0)
    assert skipped == 0 and loss < _LOG_HIGH
    assert len(made) == 2 and bool(made[0].dead[0]) and not bool(made[0].dead[1:].any())
    assert all(bool(torch.isfinite(p).all()) for p in rule.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, rule.parameters(), strict=True))
