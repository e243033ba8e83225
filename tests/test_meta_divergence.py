"""A game that diverges while a meta-training batch is unrolled (its loss or gradients stop being finite) must not
take the other games' meta-gradient with it: the meta-gradient stays finite and is the one of the batch without that
game (times its share of the mean), and the dead game's meta-loss still counts the upper clamp."""

from __future__ import annotations

import dataclasses

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


def _kill(unroll: object, game: int) -> None:
    """Game ``game``'s trunk becomes NaN (what an overflowing step leaves), the others' state and graph as they were."""
    state = unroll.state  # type: ignore[attr-defined]
    rows = torch.zeros(state.trunk.shape[0], dtype=torch.bool)
    rows[game] = True
    trunk = torch.where(rows.view(-1, *([1] * (state.trunk.dim() - 1))), torch.nan, state.trunk)
    unroll.state = dataclasses.replace(state, trunk=trunk)  # type: ignore[attr-defined]


def _meta_gradient(consensus: str, seeds: list[int], kill: int | None, before: int, after: int) -> tuple[list, float]:
    """The meta-gradient of ``before + after`` unrolled steps (one truncation, one graph), game ``kill`` of the batch
    made NaN between them; and the meta-loss of the ``after`` steps."""
    config = _config(consensus)
    rule = perturbed_rule("learned_mlp", seed=3)
    game, floor, whole = _game(config, QUADRATIC, before + after + 2)
    unroll = _unroll(config, rule, game, seeds, floor, whole)
    first = unroll.advance(before)
    if kill is not None:
        _kill(unroll, kill)
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
