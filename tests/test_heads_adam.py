"""``MLPRuleConfig.heads_adam``: in games of estimated gradients the heads play Adam's own step (what the tuned Adam
baselines play on the heads), handed over from the trained heads' step over a share of the horizon, and the trunk
plays as without it; in games of exact gradients, or no longer than ``heads_adam_min_horizon``, the rule plays as
without the option."""

from __future__ import annotations

import pytest
import torch

from agents import run_episode
from agents.learned import EngineDriver, LearnedAgent, new_rule
from agents.learned.blocks import Blocks
from agents.learned.checkpoint import load_rule, pretrained_path, with_options
from agents.learned.rule_base import PROGRESS
from agents.learned.rules import MLPRule
from mtg_env import engine
from tests.conftest import ROOT, make_env
from tests.test_learned import assert_forms_agree

H, N, HORIZON = 3, 4, 8  # two players, heads of 3, a trunk of 4; the horizon the progress feature counts in


def _gradients(steps: int) -> torch.Tensor:
    """``[steps, 1, 2H + 2N]``: the fixed, seeded stream of gradients the rule is called on (torch's generator fills a
    longer tensor in another order, so a shorter stream is not a longer one's prefix)."""
    return torch.randn(steps, 1, 2 * H + 2 * N, generator=torch.Generator().manual_seed(0))


def _updates(steps: int, stochastic: bool = True, **options: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(head updates [2H], trunk proposals [2, N]) of ``steps`` calls of an untrained rule on a fixed, seeded stream of
    gradients (the guard off: it caps nothing here, so each half is the rule's own), told the gradients are estimates
    (``stochastic``) or exact."""
    rule = new_rule("learned_mlp", guard=False, **options)
    assert isinstance(rule, MLPRule)
    is_trunk = torch.tensor([False] * 2 * H + [True] * 2 * N)
    blocks = Blocks(is_trunk, torch.tensor([0] * H + [2] * H + [1] * N + [3] * N), 4)
    grads = _gradients(steps)
    state = rule.init_state(grads[0], blocks, stochastic=stochastic)
    out = []
    for t in range(steps):
        features = torch.zeros(1, 4, 8)
        features[..., PROGRESS] = t / HORIZON
        with torch.no_grad():
            update, state = rule(grads[t], features, blocks, torch.tensor([t]), state)
        heads, trunk = blocks.split(update)
        out.append((heads[0], trunk[0]))
    return out


#: One player's layout: a head of H, then a trunk proposal of N.
_ONE = Blocks(torch.tensor([False] * H + [True] * N), torch.tensor([0] * H + [1] * N), 2)


def _first_heads(rule: object, g: torch.Tensor, features: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The head updates ``[B, H]`` of one call of ``rule`` (laid out as ``_ONE``) from its fresh state, told the
    gradients are estimates."""
    assert isinstance(rule, MLPRule)
    with torch.no_grad():
        update, _ = rule(g, features, _ONE, t, rule.init_state(g, _ONE, stochastic=True))
    return _ONE.split(update)[0]


def test_the_heads_step_hands_over_from_the_trained_step_to_torch_adams() -> None:
    """On the first step (p = 0) the heads play the trained step, as the rule without the option; once the handover is
    over (p >= its share of the horizon) each head update equals what ``torch.optim.Adam`` steps a parameter by on the
    same gradients at α_H; in between, neither."""
    lr, handover, steps = 0.05, 0.25, 8
    played = _updates(steps, heads_adam=True, heads_adam_lr=lr, heads_handover=handover)
    trained = _updates(steps)
    assert torch.equal(played[0][0], trained[0][0])
    grads = _gradients(steps)[:, 0, : 2 * H]
    x = torch.zeros(2 * H, requires_grad=True)
    adam = torch.optim.Adam([x], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for t in range(steps):
        before = x.detach().clone()
        x.grad = grads[t].clone()
        adam.step()
        if t / HORIZON >= handover:
            torch.testing.assert_close(played[t][0], x.detach() - before)
        elif t > 0:
            assert not torch.allclose(played[t][0], x.detach() - before)


def test_without_a_handover_the_first_head_step_is_adams_full_step() -> None:
    (heads, _), *_ = _updates(1, heads_adam=True, heads_adam_lr=0.05, heads_handover=0.0)
    torch.testing.assert_close(heads.abs(), torch.full_like(heads, 0.05), rtol=1e-5, atol=0.0)  # Adam: α·sign(g)


def test_the_trunk_plays_as_without_the_option() -> None:
    """Given the same gradients a step, the trunk proposals are the trained rule's (in a game they differ only through
    the gradients: the heads' moves change them)."""
    with_adam, without = _updates(6, heads_adam=True), _updates(6)
    for (_, trunk_a), (_, trunk_b) in zip(with_adam, without, strict=True):
        assert torch.equal(trunk_a, trunk_b)
    assert not torch.equal(with_adam[-1][0], without[-1][0])  # the heads' steps are Adam's, not the mix's


def test_in_games_of_exact_gradients_the_rule_plays_as_without_the_option() -> None:
    exact = _updates(6, stochastic=False, heads_adam=True)
    for (heads_a, trunk_a), (heads_b, trunk_b) in zip(exact, _updates(6, stochastic=False), strict=True):
        assert torch.equal(heads_a, heads_b) and torch.equal(trunk_a, trunk_b)


@pytest.mark.parametrize(("batch_size", "plays"), [(64, True), (None, False)])
def test_driver_and_agent_play_it_where_the_gradients_are_estimates(batch_size: int | None, plays: bool) -> None:
    """Digits on minibatches (the game's ``stochastic_gradients``, the env's info of that name) plays Adam's heads; on
    the whole train split (exact gradients) the trained heads."""
    env = make_env("digits", max_update=None, batch_size=batch_size)
    assert env.game.stochastic_gradients is plays
    rule = new_rule("learned_mlp", heads_adam=True)
    assert EngineDriver(rule, env.game).heads_adam is plays
    obs, infos = env.reset(seed=0)
    agent = LearnedAgent(rule, "learned_mlp")
    agent.reset(obs["task_0"], infos["task_0"], env.action_space("task_0"))
    assert ("heads_adam_on" in agent._memory) is plays
    assert EngineDriver(new_rule("learned_mlp"), env.game).heads_adam is False  # without the option: never


@pytest.mark.parametrize("consensus", ["sum", "mgda"])
@pytest.mark.parametrize("min_horizon", [0, 9, 10])  # assert_forms_agree's game is 10 steps long
def test_the_agent_and_the_driver_play_it_alike(consensus: str, min_horizon: int) -> None:
    options = {"heads_adam": True, "heads_adam_lr": 0.05, "heads_adam_min_horizon": min_horizon}
    assert_forms_agree("learned_mlp", "update", options, "digits", consensus)


def test_the_shipped_digits_file_plays_adams_heads_only_past_its_min_horizon() -> None:
    """The shipped digits specialist (``heads_adam_min_horizon`` 100) in a 20-step minibatch game, one agent a player
    reading the horizon off the env's progress feature: bit for bit the file without ``heads_adam``; with the bound
    at 19 it plays Adam's heads and the game goes otherwise."""
    shipped = load_rule(pretrained_path("learned_mlp", "digits"))[1]
    assert shipped.config.heads_adam and shipped.config.heads_adam_min_horizon == 100
    finals = {}
    for label, options in (("shipped", {}), ("trained heads", {"heads_adam": False}),
                           ("bound 19", {"heads_adam_min_horizon": 19})):  # fmt: skip
        rule = with_options("learned_mlp", shipped, **options)
        env = make_env("digits", max_cycles=20, max_update=None)
        assert env.game.stochastic_gradients
        players = {a: LearnedAgent(rule, "learned_mlp") for a in env.possible_agents}
        finals[label] = run_episode(env, players, seed=0, evaluate=False).losses
    assert torch.equal(torch.as_tensor(finals["shipped"]), torch.as_tensor(finals["trained heads"]))
    assert not torch.equal(torch.as_tensor(finals["shipped"]), torch.as_tensor(finals["bound 19"]))


def test_in_games_no_longer_than_its_min_horizon_the_trained_heads_play() -> None:
    """``heads_adam_min_horizon``: in a game of ``HORIZON`` steps the rule plays bit for bit as without the option when
    the bound is ``HORIZON``, and as the option without the bound when it is one step shorter."""
    short = _updates(HORIZON, heads_adam=True, heads_adam_min_horizon=HORIZON)
    for (heads_a, trunk_a), (heads_b, trunk_b) in zip(short, _updates(HORIZON), strict=True):
        assert torch.equal(heads_a, heads_b) and torch.equal(trunk_a, trunk_b)
    long = _updates(HORIZON, heads_adam=True, heads_adam_min_horizon=HORIZON - 1)
    for (heads_a, trunk_a), (heads_b, trunk_b) in zip(long, _updates(HORIZON, heads_adam=True), strict=True):
        assert torch.equal(heads_a, heads_b) and torch.equal(trunk_a, trunk_b)
    assert not torch.equal(long[-1][0], short[-1][0])


@pytest.mark.parametrize("bound", [100, 2**20 - 1])
@pytest.mark.parametrize("via_float64", [False, True])
def test_the_horizon_read_off_the_clock_is_exact(bound: int, via_float64: bool) -> None:
    """Each row a game at its own step t of a horizon of ``bound`` or ``bound + 1`` steps, its progress feature
    t / horizon rounded to float32 as the engine computes it (or to float64 first, as the agent's observation carries
    it): every row of the shorter horizon plays the trained heads bit for bit, every row of the longer one not, at
    every step from the second on (sampled where the horizon is long)."""
    gen = torch.Generator().manual_seed(1)
    rows = []
    for horizon in (bound, bound + 1):
        steps = torch.arange(1, horizon) if horizon < 1000 else torch.randint(1, horizon, (400,), generator=gen)
        rows += [(int(t), horizon) for t in steps]
    t = torch.tensor([r[0] for r in rows])
    horizons = torch.tensor([float(r[1]) for r in rows], dtype=torch.float64 if via_float64 else torch.float32)
    progress = (t.to(horizons.dtype) / horizons).to(torch.float32)
    b = len(rows)
    g = torch.randn(b, H + N, generator=gen)
    features = torch.zeros(b, 2, 8)
    features[..., PROGRESS] = progress.unsqueeze(1)
    heads = {}
    for name, options in (("gated", {"heads_adam": True, "heads_adam_min_horizon": bound, "heads_handover": 1.0}),
                          ("trained", {})):  # fmt: skip
        heads[name] = _first_heads(new_rule("learned_mlp", guard=False, **options), g, features, t)
    same = (heads["gated"] == heads["trained"]).all(dim=1)
    assert torch.equal(same, torch.tensor([r[1] == bound for r in rows]))


@pytest.mark.parametrize("bound", [0, HORIZON])
def test_where_adams_weight_is_0_an_infinite_trained_head_update_stays_itself(bound: int) -> None:
    """On the first step (w = 0), and where the bound shuts the option, the heads play the trained update itself: an
    overflowing one stays infinite (a lerp at weight 0 would make it NaN), as without the option."""
    rules = [new_rule("learned_mlp", guard=False, heads_adam=True, heads_adam_min_horizon=bound),
             new_rule("learned_mlp", guard=False)]  # fmt: skip
    g = torch.full((1, H + N), 3e38)  # float32: g² overflows, and the BB step η₀·g below
    heads = []
    for rule in rules:
        assert isinstance(rule, MLPRule)
        with torch.no_grad():
            rule.log_eta0.fill_(4.6)  # η₀ ≈ 100
        heads.append(_first_heads(rule, g, torch.zeros(1, 2, 8), torch.tensor([0])))  # the first step: progress 0
    assert heads[1].isinf().all()  # the trained update overflowed
    assert torch.equal(heads[0], heads[1])


def test_without_heads_adam_its_bound_needs_no_handover() -> None:
    """The bound and the handover are ``heads_adam``'s: with it off neither plays, and the pair is not refused."""
    rule = new_rule("learned_mlp", heads_adam_min_horizon=100, heads_handover=0.0)
    assert isinstance(rule, MLPRule) and not rule.config.heads_adam


def test_past_its_bound_the_shipped_digits_file_plays_k26s_game_bit_for_bit() -> None:
    """In a 120-step minibatch game (longer than the bound, 100) the shipped digits specialist plays the file K26
    scored (its copy beside K27), step for step and bit for bit: K26's 2x and 5x figures are this file's too."""
    env = make_env("digits", max_cycles=120, max_update=None, consensus="mgda")
    assert env.game.stochastic_gradients
    losses = []
    for path in (
        pretrained_path("learned_mlp", "digits"),
        ROOT / "docs/sealed/general/k27/learned_mlp_digits_before.pt",
    ):
        driver = EngineDriver(load_rule(path)[1], env.game)
        state, out = engine.reset(env.game, [0, 1])
        memory, trajectory = driver.start(out), []
        with torch.no_grad():
            for _ in range(120):
                action, memory = driver.act(state, out, memory)
                state, out = engine.step(env.game, state, action)
                trajectory.append(out.losses)
        losses.append(torch.stack(trajectory))
    assert torch.equal(losses[0], losses[1])
    assert bool(losses[0][-1].sum() < losses[0][0].sum())


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"heads_adam": 1}, TypeError, "heads_adam must be a bool"),
        ({"heads_adam_lr": 0.0}, ValueError, r"^heads_adam_lr must be > 0 .*got 0\.0$"),
        ({"heads_adam_lr": True}, ValueError, "heads_adam_lr must be a finite number"),
        ({"heads_adam_lr": float("nan")}, ValueError, "heads_adam_lr must be a finite number"),
        ({"heads_handover": 1.5}, ValueError, r"^heads_handover must be in \[0, 1\] .*got 1\.5$"),
        ({"heads_handover": -0.1}, ValueError, r"^heads_handover must be in \[0, 1\] .*got -0\.1$"),
        (
            {"heads_adam_min_horizon": -1},
            ValueError,
            r"^heads_adam_min_horizon must be an int in \[0, 2\*\*20\) .*got -1$",
        ),
        ({"heads_adam_min_horizon": 2**20}, ValueError, r"^heads_adam_min_horizon must be an int in .*got 1048576$"),
        ({"heads_adam_min_horizon": 100.0}, ValueError, r"^heads_adam_min_horizon must be an int in .*got 100\.0$"),
        ({"heads_adam_min_horizon": True}, ValueError, r"^heads_adam_min_horizon must be an int in .*got True$"),
        (
            {"heads_adam": True, "heads_adam_min_horizon": 100, "heads_handover": 0.0},
            ValueError,
            r"^heads_adam_min_horizon needs heads_handover > 0: the rule reads the horizon off its clock .*got"
            r" heads_handover=0\.0 \(set heads_handover > 0, or heads_adam_min_horizon = 0\)$",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field(options: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        new_rule("learned_mlp", **options)
