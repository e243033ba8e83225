"""The learned rules' step compiled (``EngineDriver(..., compile=True)``): it plays what the eager rule plays, to
float32 round-off, meta-gradients included, and compiles once per shape (a step that compiled again every call, or for
every new driver, would cost more than it saves).

Tolerances: the rules compute in float32 (ε = 1.2e-7). A fused kernel reassociates a sum of at most K terms and keeps
intermediates in registers, so an action differs from the eager one by a few ε relative to the largest coordinate per
operation it passes through, a few hundred in a step; over five steps of a stable game 1e-4 of the actions' scale
bounds that with room, while a wrong operand (a stale state, a swapped block) moves actions by O(1) of their scale.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
import torch._dynamo.utils

from agents.learned import EngineDriver, load_rule, new_rule, pretrained_path
from agents.learned.rules import Rule
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.suites import make_suite

SEEDS = [0, 1, 2, 3]


@pytest.fixture(autouse=True)
def _fresh_compiler() -> None:
    """Each test starts with no compiled graph: torch counts graphs per code object across the process, and a test
    that ran after others' graphs could find the limit reached and compare the eager rule with itself."""
    torch._dynamo.reset()


def _game(mode: str, consensus: str = "sum") -> engine.Game:
    suite = make_suite("quadratic", num_tasks=3, head_dim=2, trunk_dim=4, condition=100.0)
    return engine.Game(suite, consensus_rule(consensus, num_tasks=3), action_mode=mode, horizon=50)


def _flat(actions: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    if isinstance(actions, torch.Tensor):
        return actions.flatten(1)
    return torch.cat([actions[0], actions[1].flatten(1)], dim=1)


def _play(rule: Rule, game: engine.Game, compile: bool, steps: int = 5) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The actions of ``steps`` steps of the seeded games, and the differentiable sum of the losses after each."""
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0), compile=compile)
    state, out = engine.reset(game, SEEDS)
    memory, actions, total = driver.start(out), [], torch.zeros((), dtype=torch.float64)
    for _ in range(steps):
        action, memory = driver.act(state, out, memory)
        actions.append(_flat(action).detach())
        state, out = engine.step(game, state, action)
        total = total + out.losses.sum()
    return actions, total


def _moving_lstm() -> tuple[Rule, str]:
    """An LSTM rule whose output layer is not zero (an untrained one leaves every parameter where it is)."""
    rule = new_rule("learned_lstm", guard=True)
    with torch.no_grad():
        rule.out.weight.copy_(torch.randn(rule.out.weight.shape, generator=torch.Generator().manual_seed(0)))
    return rule, "update"


RULES: dict[str, Callable[[], tuple[Rule, str]]] = {
    # the generalist's shipped weights: the heads' network trained, the guard, the trunk's AMSGrad share
    "learned_mlp general": lambda: (load_rule(pretrained_path("learned_mlp", "general"))[1], "update"),
    "learned_lstm": _moving_lstm,
    "learned_step": lambda: (new_rule("learned_step", guard=True), "step_size"),
}


@pytest.mark.parametrize(
    ("name", "consensus"), [(name, "sum") for name in RULES] + [("learned_mlp general", "mean")]
)  # under mean the shipped generalist's proposals are scaled by 3 (sum_scaled): a constant of the compiled graph
def test_the_compiled_step_plays_what_the_eager_rule_plays(name: str, consensus: str) -> None:
    rule, mode = RULES[name]()
    game = _game(mode, consensus)
    with torch.no_grad():
        eager, _ = _play(rule, game, compile=False)
        compiled, _ = _play(rule, game, compile=True)
    for step, (a, b) in enumerate(zip(eager, compiled, strict=True)):
        scale = a.abs().max()
        assert scale > 0, f"step {step}: the rule did not move (the comparison would be vacuous)"
        assert (b - a).abs().max() <= 1e-4 * scale, f"step {step}: compiled {b} vs eager {a}"


@pytest.mark.parametrize("name", ["learned_mlp general", "learned_step"])
def test_meta_gradients_through_the_compiled_step_equal_the_eager_ones(name: str) -> None:
    """Meta-training differentiates through the step: the compiled graph's backward gives the eager gradients (and no
    warning: torch's about a non-leaf state tensor's .grad, which compiling raised, is the driver's to silence)."""
    grads = {}
    for compile in (False, True):
        rule, mode = RULES[name]()
        _, total = _play(rule, _game(mode), compile=compile, steps=4)
        total.backward()
        grads[compile] = {k: p.grad.clone() for k, p in rule.named_parameters() if p.grad is not None}
    assert grads[False].keys() == grads[True].keys() and grads[False]
    for key, eager in grads[False].items():
        assert torch.isfinite(eager).all()
        scale = eager.abs().max().clamp_min(1e-12)
        assert (grads[True][key] - eager).abs().max() <= 1e-3 * scale, key


def test_the_step_compiles_once_per_shape() -> None:
    """Every step after the first, and a second driver of the same shapes, run the first compiled graph; new shapes
    (another B) compile once more."""
    game = _game("update")
    rule = load_rule(pretrained_path("learned_mlp", "general"))[1]
    stats = torch._dynamo.utils.counters["stats"]

    def graphs_after(seeds: list[int]) -> int:
        driver = EngineDriver(rule, game, compile=True)
        with torch.no_grad():
            state, out = engine.reset(game, seeds)
            memory = driver.start(out)
            for _ in range(4):
                actions, memory = driver.act(state, out, memory)
                state, out = engine.step(game, state, actions)
        return int(stats["unique_graphs"])

    first = graphs_after([10, 11, 12])
    assert graphs_after([13, 14, 15]) == first
    assert graphs_after([16, 17]) == first + 1


def test_under_autograd_the_step_compiles_a_few_graphs_then_none() -> None:
    """Meta-training: as the meta-graph reaches more of the rule's state, torch compiles again (the state's
    requires_grad is part of a graph's guards), two or three times a shape; then every step reuses them."""
    game = _game("update")
    rule = load_rule(pretrained_path("learned_mlp", "general"))[1]
    stats = torch._dynamo.utils.counters["stats"]
    before = int(stats["unique_graphs"])
    _, total = _play(rule, game, compile=True, steps=6)
    settled = int(stats["unique_graphs"])
    _, total = _play(rule, game, compile=True, steps=12)
    assert 1 <= settled - before <= 4 and int(stats["unique_graphs"]) == settled
    total.backward()


def test_past_the_limit_the_driver_refuses_rather_than_play_uncompiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch falls back to the eager rule without saying so once a function has compiled its limit of graphs; the
    driver raises, naming the option and what to do."""
    import agents.learned.batched as batched

    monkeypatch.setattr(batched, "RECOMPILE_LIMIT", 2)
    game = _game("update")
    rule = load_rule(pretrained_path("learned_mlp", "general"))[1]
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"compile=True: this process has compiled .* 2 times"):
        for games in (1, 2, 3):  # a new B, a new graph
            driver = EngineDriver(rule, game, compile=True)
            state, out = engine.reset(game, list(range(games)))
            driver.act(state, out, driver.start(out))


def test_reset_games_play_on_compiled_as_eager() -> None:
    """Autoreset (``engine.reset_where`` and ``driver.reset_where``) inside a compiled run: the same actions as the
    eager driver's, with no new graph."""
    game = _game("update")
    rule = load_rule(pretrained_path("learned_mlp", "general"))[1]
    stats = torch._dynamo.utils.counters["stats"]
    actions: dict[bool, list[torch.Tensor]] = {}
    for compile in (False, True):
        driver = EngineDriver(rule, game, compile=compile)
        actions[compile] = []
        with torch.no_grad():
            state, out = engine.reset(game, list(range(6)))
            memory = driver.start(out)
            for step in range(10):
                if step in (4, 7):
                    mask = torch.tensor([True, False, True, False, False, True])
                    state, fresh = engine.reset_where(game, state, mask)
                    assert fresh is not None
                    memory = driver.reset_where(mask, fresh, memory)
                    merged = {}
                    for name in ("head_grads", "jacobian", "features"):  # what a driver reads of an output
                        value = getattr(out, name).clone()
                        value[mask] = getattr(fresh, name)
                        merged[name] = value
                    out = dataclasses.replace(out, **merged)
                if compile and step == 1:
                    graphs = int(stats["unique_graphs"])
                action, memory = driver.act(state, out, memory)
                actions[compile].append(_flat(action))
                state, out = engine.step(game, state, action)
    assert int(stats["unique_graphs"]) == graphs
    for a, b in zip(actions[False], actions[True], strict=True):
        assert (b - a).abs().max() <= 1e-4 * a.abs().max()


@pytest.mark.parametrize("bound", [0, 49, 50])  # the game is 50 steps long: Adam's heads, Adam's, the trained heads
def test_adams_heads_by_the_games_length_play_on_compiled_as_eager(bound: int) -> None:
    """``heads_adam`` with ``heads_adam_min_horizon`` in a game of noisy gradients (where it plays): the compiled step
    reads the horizon off the clock as the eager one does, and plays its actions, the handover's over."""
    suite = make_suite("quadratic", num_tasks=3, head_dim=2, trunk_dim=4, condition=100.0)
    game = engine.Game(suite, consensus_rule("sum", num_tasks=3), action_mode="update", horizon=50,
                       noise_model={"grad_std": 0.1})  # fmt: skip
    assert game.stochastic_gradients
    rule = new_rule("learned_mlp", heads_adam=True, heads_handover=0.05, heads_adam_min_horizon=bound)
    with torch.no_grad():
        eager, _ = _play(rule, game, compile=False, steps=6)
        compiled, _ = _play(rule, game, compile=True, steps=6)
    for step, (a, b) in enumerate(zip(eager, compiled, strict=True)):
        assert (b - a).abs().max() <= 1e-4 * a.abs().max(), f"step {step}: compiled {b} vs eager {a}"


def test_the_compiled_step_is_safe_with_several_torch_threads() -> None:
    """TorchInductor's multi-threaded kernels for this step corrupted the heap (torch 2.13, 2 threads, B = 8 games of
    the default quadratic suite: the process aborted); the driver compiles one-thread kernels. In a subprocess, so
    a crash fails this test rather than killing the run."""
    script = (
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "from agents.learned import EngineDriver, new_rule\n"
        "from mtg_env import engine\n"
        "from mtg_env.consensus import consensus_rule\n"
        "from mtg_env.suites import make_suite\n"
        "suite = make_suite('quadratic')\n"
        "game = engine.Game(suite, consensus_rule('sum', num_tasks=suite.num_tasks), horizon=100)\n"
        "driver = EngineDriver(new_rule('learned_mlp'), game, compile=True)\n"
        "state, out = engine.reset(game, list(range(8)))\n"
        "memory = driver.start(out)\n"
        "with torch.no_grad():\n"
        "    for _ in range(3):\n"
        "        actions, memory = driver.act(state, out, memory)\n"
        "        state, out = engine.step(game, state, actions)\n"
        "print(bool(torch.isfinite(out.losses).all()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


def test_compile_must_be_a_bool() -> None:
    game = _game("update")
    with pytest.raises(TypeError, match="compile must be True or False, got 'yes'"):
        EngineDriver(new_rule("learned_mlp"), game, compile="yes")  # type: ignore[arg-type]


def test_the_compiled_step_plays_the_rules_parameters_as_they_are_now() -> None:
    """The parameters are the graph's inputs, not constants baked in at compile time: after an in-place change (a
    meta-step, ``scale_trunk_step``) the compiled driver plays the changed rule, as the eager one does."""
    game = _game("update")
    actions = {}
    for compile in (False, True):
        rule = load_rule(pretrained_path("learned_mlp", "general"))[1]
        driver = EngineDriver(rule, game, compile=compile)
        with torch.no_grad():
            state, out = engine.reset(game, SEEDS)
            memory = driver.start(out)
            first, _ = driver.act(state, out, memory)
            rule.scale_trunk_step(3.0)
            second, _ = driver.act(state, out, memory)
        actions[compile] = (_flat(first), _flat(second))
    for a, b in zip(actions[False], actions[True], strict=True):
        assert (b - a).abs().max() <= 1e-4 * a.abs().max()
    assert not torch.allclose(actions[True][0], actions[True][1])  # the change moved the trunk's proposals
