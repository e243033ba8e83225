"""The block layout the learned rules play on (agents/learned/blocks.py): its per-block sums and spreads equal the
per-coordinate ones (a gather and a scatter over every coordinate, which it replaces), and a layout the rules cannot
play is refused, saying why."""

from __future__ import annotations

import pytest
import torch

from agents.learned import EngineDriver, new_rule
from agents.learned.blocks import Blocks
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.suites import make_suite


def _layout() -> tuple[torch.Tensor, torch.Tensor]:
    """Heads of three players interleaved (7 coordinates), then three trunk proposals of 4: the engine's layout."""
    head_task = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    task = torch.cat([head_task, torch.arange(3).repeat_interleave(4)])
    is_trunk = torch.cat([torch.zeros(7, dtype=torch.bool), torch.ones(12, dtype=torch.bool)])
    return is_trunk, 2 * task + is_trunk.long()


def test_block_sums_norms_and_spreads_equal_the_per_coordinate_ones() -> None:
    is_trunk, groups = _layout()
    blocks = Blocks(is_trunk, groups, 6)
    x = torch.randn(5, 19, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    head, trunk = blocks.split(x)
    assert head.shape == (5, 7) and trunk.shape == (5, 3, 4)
    assert torch.equal(blocks.join(head, trunk), x)
    expected = torch.zeros(5, 6, dtype=torch.float64).index_add(1, groups, x)
    torch.testing.assert_close(blocks.sums(head, trunk), expected, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(blocks.norms(head, trunk), expected.new_zeros(5, 6).index_add(1, groups, x**2).sqrt())
    v = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    per_head, per_trunk = blocks.spread(v)
    assert torch.equal(blocks.join(per_head * head, per_trunk * trunk), v[:, groups] * x)
    assert torch.equal(blocks.join(per_head, per_trunk.expand(-1, -1, 4)), v[:, groups])
    assert torch.equal(blocks.trunk_block, torch.tensor([False, True] * 3))
    assert blocks.sizes.tolist() == [2.0, 4.0, 2.0, 4.0, 3.0, 4.0]


def test_the_engine_driver_and_the_env_player_lay_out_their_blocks_alike() -> None:
    """The driver's blocks: task m's head 2m, its proposal 2m + 1, P = M proposals of the trunk's n; the env player's:
    its head 0, its proposal 1 (the default groups)."""
    suite = make_suite("digits", batch_size=8)
    game = engine.Game(suite, consensus_rule("sum", num_tasks=suite.num_tasks), action_mode="update", horizon=10)
    driver = EngineDriver(new_rule("learned_mlp"), game)
    m, n = game.num_tasks, game.trunk_size
    assert (driver.blocks.num_trunks, driver.blocks.trunk_size, driver.blocks.num_groups) == (m, n, 2 * m)
    assert driver.blocks.trunk_groups.tolist() == [2 * t + 1 for t in range(m)]
    assert torch.equal(driver.blocks.head_groups, 2 * game.head_index)
    one = Blocks(torch.tensor([False] * 3 + [True] * 5))
    assert (one.num_heads, one.num_trunks, one.trunk_size, one.num_groups) == (3, 1, 5, 2)


@pytest.mark.parametrize(
    ("is_trunk", "groups", "match"),
    [
        ([True, False, True], None, "is_trunk must mark the last coordinates"),
        ([False, True, True, True], [0, 1, 1, 3], "runs of equal length"),
        ([False, True, True, True, True], [0, 1, 3, 1, 3], "runs of equal length"),
        ([False, False, True, True], [0, 1, 1, 1], r"blocks \[1\] hold both head and trunk"),
        ([False, True], [0, -1], "groups must be >= 0"),
    ],
)
def test_a_layout_the_rules_cannot_play_is_refused_saying_why(
    is_trunk: list[bool], groups: list[int] | None, match: str
) -> None:
    flags = torch.tensor(is_trunk)
    index = None if groups is None else torch.tensor(groups)
    with pytest.raises(ValueError, match=match):
        Blocks(flags, index)


def test_too_few_groups_and_wrong_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"num_groups \(2\) must exceed the largest block index \(3\)"):
        Blocks(torch.tensor([False, True]), torch.tensor([0, 3]), 2)
    with pytest.raises(ValueError, match="is_trunk must be a \\[K\\] bool tensor"):
        Blocks(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="groups must be a \\[K\\] int64 tensor"):
        Blocks(torch.tensor([False, True]), torch.tensor([0.0, 1.0]))


def test_the_guard_remembers_the_norm_of_the_move_it_played() -> None:
    """The guard keeps each block's last move as a norm (its secant's divisor): the norm of what the rule played,
    capped, restarted or neither, on a stiff quadratic (condition 1e4) where the cap and the heavy ball's restart
    engage."""
    from agents.learned.family import build_suite

    options = {"num_tasks": 3, "head_dim": 2, "trunk_dim": 8, "condition": 1e4}
    suite = build_suite("quadratic", options, dtype="float64")
    game = engine.Game(suite, consensus_rule("sum", num_tasks=3), horizon=40)
    rule = new_rule("learned_mlp", init_trunk_lr=0.3, init_lr=0.3).double()
    driver = EngineDriver(rule, game)
    capped = 0.0
    with torch.no_grad():
        state, out = engine.reset(game, [0, 1])
        memory = driver.start(out)
        for _ in range(40):
            (heads, proposals), memory = driver.act(state, out, memory)
            played = driver.blocks.norms(heads, proposals)
            torch.testing.assert_close(memory["guard_s"], played, rtol=1e-12, atol=0.0)
            capped = max(capped, float(memory["guard_armed"].sum()))
            state, out = engine.step(game, state, (heads, proposals))
    assert capped > 0  # the cap engaged


def test_the_guard_keeps_meta_gradients_finite_where_a_block_does_not_move() -> None:
    """An untrained LSTM rule proposes exactly 0 (its output layer starts at zero): the guard's ‖u‖ of such a block
    must not turn the meta-gradient into NaN (√0's derivative), so meta-training with the guard on can start there."""
    from agents.learned.family import build_suite

    options = {"num_tasks": 2, "head_dim": 2, "trunk_dim": 4, "condition": 10.0}
    suite = build_suite("quadratic", options, dtype="float64")
    game = engine.Game(suite, consensus_rule("sum", num_tasks=2), horizon=5)
    rule = new_rule("learned_lstm", guard=True).double()
    driver = EngineDriver(rule, game)
    state, out = engine.reset(game, [0, 1])
    memory = driver.start(out)
    for _ in range(3):
        actions, memory = driver.act(state, out, memory)
        state, out = engine.step(game, state, actions)
    out.losses.sum().backward()
    grads = [p.grad for p in rule.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_blocks_on_two_devices_are_refused() -> None:
    is_trunk = torch.tensor([False, True])
    with pytest.raises(ValueError, match="groups is on meta, is_trunk on cpu"):
        Blocks(is_trunk, torch.tensor([0, 1], device="meta"))
