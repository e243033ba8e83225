"""``MLPRuleConfig.heads_adam``: the heads play Adam's own step with a linear warm-up over a share of the horizon
(what the tuned Adam baselines play on the heads), and the trunk plays as without it."""

from __future__ import annotations

import pytest
import torch

from agents.learned import new_rule
from agents.learned.blocks import Blocks
from agents.learned.rule_base import PROGRESS
from agents.learned.rules import MLPRule
from tests.test_learned import assert_forms_agree

H, N, HORIZON = 3, 4, 8  # two players, heads of 3, a trunk of 4; the horizon the progress feature counts in


def _updates(steps: int, **options: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(head updates [2H], trunk proposals [2, N]) of ``steps`` calls of an untrained rule on a fixed, seeded stream of
    gradients (the guard off: it caps nothing here, so each half is the rule's own)."""
    rule = new_rule("learned_mlp", guard=False, **options)
    assert isinstance(rule, MLPRule)
    is_trunk = torch.tensor([False] * 2 * H + [True] * 2 * N)
    blocks = Blocks(is_trunk, torch.tensor([0] * H + [2] * H + [1] * N + [3] * N), 4)
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(steps, 1, 2 * H + 2 * N, generator=gen)
    state = rule.init_state(grads[0], blocks)
    out = []
    for t in range(steps):
        features = torch.zeros(1, 4, 8)
        features[..., PROGRESS] = t / HORIZON
        with torch.no_grad():
            update, state = rule(grads[t], features, blocks, torch.tensor([t]), state)
        heads, trunk = blocks.split(update)
        out.append((heads[0], trunk[0]))
    return out


def test_the_heads_step_is_torch_adams_with_the_warm_up() -> None:
    """Each head update equals what ``torch.optim.Adam`` steps a parameter by on the same gradients, its learning rate
    α_H·min(1, p / warm-up) at progress p (zero on the first step, where p = 0)."""
    lr, warmup, steps = 0.05, 0.25, 8
    played = _updates(steps, heads_adam=True, heads_adam_lr=lr, heads_warmup=warmup)
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(steps, 1, 2 * H + 2 * N, generator=gen)[:, 0, : 2 * H]
    x = torch.zeros(2 * H, requires_grad=True)
    adam = torch.optim.Adam([x], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for t in range(steps):
        before = x.detach().clone()
        for group in adam.param_groups:
            group["lr"] = lr * min(1.0, (t / HORIZON) / warmup)
        x.grad = grads[t].clone()
        adam.step()
        torch.testing.assert_close(played[t][0], x.detach() - before)
    assert played[0][0].abs().max() == 0  # p = 0: the warm-up's first step
    assert played[-1][0].abs().max() > 0.5 * lr  # past the warm-up: steps of about α_H a coordinate


def test_without_a_warm_up_the_first_head_step_is_adams_full_step() -> None:
    (heads, _), *_ = _updates(1, heads_adam=True, heads_adam_lr=0.05, heads_warmup=0.0)
    torch.testing.assert_close(heads.abs(), torch.full_like(heads, 0.05), rtol=1e-5, atol=0.0)  # Adam: α·sign(g)


def test_the_trunk_plays_as_without_the_option() -> None:
    with_adam, without = _updates(6, heads_adam=True), _updates(6)
    for (_, trunk_a), (_, trunk_b) in zip(with_adam, without, strict=True):
        assert torch.equal(trunk_a, trunk_b)
    assert not torch.equal(with_adam[-1][0], without[-1][0])  # the heads' steps are Adam's, not the mix's


@pytest.mark.parametrize("consensus", ["sum", "mgda"])
def test_the_agent_and_the_driver_play_it_alike(consensus: str) -> None:
    assert_forms_agree("learned_mlp", "update", {"heads_adam": True, "heads_adam_lr": 0.05}, "digits", consensus)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"heads_adam": 1}, TypeError, "heads_adam must be a bool"),
        ({"heads_adam_lr": 0.0}, ValueError, "heads_adam_lr must be > 0"),
        ({"heads_adam_lr": True}, ValueError, "heads_adam_lr must be a finite number"),
        ({"heads_adam_lr": float("nan")}, ValueError, "heads_adam_lr must be a finite number"),
        ({"heads_warmup": 1.5}, ValueError, r"heads_warmup in \[0, 1\]"),
        ({"heads_warmup": -0.1}, ValueError, r"heads_warmup in \[0, 1\]"),
    ],
)
def test_bad_values_are_refused_naming_the_field(options: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        new_rule("learned_mlp", **options)
