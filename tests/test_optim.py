"""The optimizer after the consensus rule: exact against torch.optim, in the engine's batched state, through the
env (the literature's recipe), checkpoints, resets and differentiable unrolls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.engine.optim import BoundOptimizer, optimizer_spec
from mtg_env.envs.checkpoint import upgrade_checkpoint
from mtg_env.suites import make_suite
from tests.test_engine import make_game, play

CASES: list[tuple[str, type[torch.optim.Optimizer], dict[str, Any]]] = [
    ("sgd", torch.optim.SGD, {"lr": 0.1}),
    ("sgd", torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.2}),
    ("momentum", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    ("momentum", torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("momentum", torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1}),
    ("adam", torch.optim.Adam, {"lr": 0.01}),
    ("adam", torch.optim.Adam, {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", torch.optim.AdamW, {"lr": 0.01}),
    ("adamw", torch.optim.AdamW, {"lr": 0.02, "weight_decay": 0.3, "betas": (0.8, 0.99)}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "cls", "kwargs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_functional_step_equals_torch_optim_bit_for_bit(
    name: str, cls: type[torch.optim.Optimizer], kwargs: dict[str, Any], dtype: torch.dtype
) -> None:
    """Three games at different points of their episodes (step counters 0, 7, 0 after a restart) each follow
    ``torch.optim`` on the same gradient sequence exactly."""
    opt = BoundOptimizer(optimizer_spec(name, kwargs), dtype, torch.device("cpu"), horizon=100)
    assert optimizer_spec(cls, kwargs) == opt.spec  # the torch class maps to the same functional form
    g = torch.Generator().manual_seed(0)
    n, steps = 37, 40
    start = torch.randn(3, n, generator=g, dtype=dtype)
    grads = torch.randn(3, steps + 7, n, generator=g, dtype=dtype)
    offsets = [0, 7, 0]  # game 1 starts its optimizer later (as after a reset_where)
    refs = [torch.nn.Parameter(start[b].clone()) for b in range(3)]
    torch_opts = [cls([p], **kwargs) for p in refs]
    for b in range(3):  # game 1 has already played 7 steps
        for i in range(offsets[b]):
            refs[b].grad = grads[b, i].clone()
            torch_opts[b].step()
    params = torch.stack([p.detach().clone() for p in refs])
    state = opt.init_state(3, n)
    if opt.slots:  # game 1's optimizer state after its 7 steps, from torch
        st = torch_opts[1].state[refs[1]]
        values = [st["momentum_buffer"]] if name == "momentum" else [st["exp_avg"], st["exp_avg_sq"]]
        state[1] = torch.stack(values)
    t = torch.tensor(offsets)
    for i in range(steps):
        for b in range(3):
            refs[b].grad = grads[b, offsets[b] + i].clone()
            torch_opts[b].step()
        step_grads = torch.stack([grads[b, offsets[b] + i] for b in range(3)])
        params, state = opt.step(params, step_grads, state, t)
        t = t + 1
        for b in range(3):
            assert torch.equal(params[b], refs[b].detach()), f"{name}: game {b} differs from torch.optim at step {i}"


def test_bad_optimizer_arguments_are_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"unknown trunk_optimizer 'adagrad'; available: \['sgd', 'momentum'"):
        mtg_env.parallel_env(suite="quadratic", trunk_optimizer="adagrad")
    with pytest.raises(ValueError, match=r"trunk_optimizer_kwargs\['lr'\] must be a finite number > 0, got -1"):
        mtg_env.parallel_env(suite="quadratic", trunk_optimizer="adam", trunk_optimizer_kwargs={"lr": -1})
    with pytest.raises(ValueError, match=r"head_optimizer_kwargs\['lr'\] must be a finite number > 0, got '0.1'"):
        mtg_env.parallel_env(suite="quadratic", head_optimizer="sgd", head_optimizer_kwargs={"lr": "0.1"})
    with pytest.raises(ValueError, match=r"\['lr'\] must be a finite number > 0, got True"):
        optimizer_spec("sgd", {"lr": True})
    with pytest.raises(ValueError, match=r"\['betas'\] must be a pair \(beta1, beta2\) of numbers in \[0, 1\)"):
        optimizer_spec("adam", {"betas": (0.9, 1.0)})
    with pytest.raises(ValueError, match=r"trunk_optimizer='sgd' has no option\(s\) \['betas'\]; its options are"):
        optimizer_spec("sgd", {"betas": (0.9, 0.99)})
    with pytest.raises(ValueError, match=r"\['momentum'\] must be a number in \(0, 1\)"):
        optimizer_spec("momentum", {"momentum": 1.5})
    with pytest.raises(ValueError, match="nesterov=True needs dampening=0"):
        optimizer_spec(torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "dampening": 0.1})
    with pytest.raises(ValueError, match=r"torch.optim.rmsprop.RMSprop has no functional form here"):
        optimizer_spec(torch.optim.RMSprop, {})
    with pytest.raises(ValueError, match="amsgrad=True has no functional form here"):
        optimizer_spec(torch.optim.Adam, {"amsgrad": True})
    with pytest.raises(ValueError, match=r"trunk_optimizer_kwargs \['lr'\] given without trunk_optimizer"):
        mtg_env.parallel_env(suite="quadratic", trunk_optimizer_kwargs={"lr": 0.1})
    with pytest.raises(TypeError, match="trunk_optimizer must be a name in"):
        mtg_env.parallel_env(suite="quadratic", trunk_optimizer=torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    assert repr(optimizer_spec(torch.optim.SGD, {"lr": 0.5})) == "sgd(lr=0.5, weight_decay=0.0)"
    assert optimizer_spec(None) is None


@pytest.mark.parametrize("rule", ["mean", "sum"])
def test_rule_then_adam_on_the_env_equals_the_hand_written_training_loop(rule: str) -> None:
    """The literature's recipe: agents that report their gradients (log step 0: p_m = −∇_Ψ ℓ_m), a named rule,
    ``trunk_optimizer="adam"``; against g = rule of the task gradients, ``torch.optim.Adam`` on the trunk (and
    ``torch.optim.SGD`` on the heads) in a plain loop. Bit for bit."""
    config: dict[str, Any] = {"suite": "quadratic", "dtype": "float64", "action_mode": "step_size"}
    env = mtg_env.parallel_env(
        **config, consensus=rule, max_cycles=60, step_size_units="log", log_step_range=(-5.0, 1.0),
        trunk_optimizer="adam", trunk_optimizer_kwargs={"lr": 0.05},
        head_optimizer="sgd", head_optimizer_kwargs={"lr": 0.1},
    )  # fmt: skip
    env.reset(seed=3)
    heads0, trunk0 = env.get_parameters()
    suite = make_suite("quadratic", dtype="float64")
    heads, trunk = torch.nn.Parameter(heads0.clone()), torch.nn.Parameter(trunk0.clone())
    trunk_opt = torch.optim.Adam([trunk], lr=0.05)
    head_opt = torch.optim.SGD([heads], lr=0.1)
    unit = {a: np.zeros(2) for a in env.agents}  # log step 0: the proposals are the negative gradients
    for t in range(60):
        _, head_grads, jac = suite.closed_form(heads.detach()[None], trunk.detach()[None])
        trunk.grad = jac[0].sum(0) if rule == "sum" else jac[0].mean(0)
        heads.grad = head_grads[0]
        trunk_opt.step()
        head_opt.step()
        env.step(unit)
        got_heads, got_trunk = env.get_parameters()
        assert torch.equal(got_trunk, trunk.detach()), f"trunk differs at step {t}"
        assert torch.equal(got_heads, heads.detach()), f"heads differ at step {t}"
    assert env.engine_state.trunk_opt.shape == (1, 2, env.trunk_size)


def test_update_mode_gradient_agents_with_unit_steps_give_the_same_training() -> None:
    """The recipe in ``update`` mode: ``GradientAgent(lr=1.0)`` proposes −∇ (and −∇ for its head); with Adam on
    the trunk and SGD on the heads the game is the step_size recipe's, bit for bit."""
    from agents import GradientAgent, run_episode

    common: dict[str, Any] = {
        "suite": "quadratic", "dtype": "float64", "max_cycles": 25, "consensus": "mean",
        "trunk_optimizer": "adam", "trunk_optimizer_kwargs": {"lr": 0.05},
        "head_optimizer": "sgd", "head_optimizer_kwargs": {"lr": 0.1},
    }  # fmt: skip
    env = mtg_env.parallel_env(**common, action_mode="update", max_update=None)
    run_episode(env, {a: GradientAgent(lr=1.0) for a in env.possible_agents}, seed=4, evaluate=False)
    ref = mtg_env.parallel_env(**common, action_mode="step_size", step_size_units="log", log_step_range=(-5.0, 1.0))
    ref.reset(seed=4)
    while ref.agents:
        ref.step({a: np.zeros(2) for a in ref.agents})
    for got, want in zip(env.get_parameters(), ref.get_parameters(), strict=True):
        assert torch.equal(got, want)


def test_default_without_optimizer_is_bit_identical_to_sgd_with_lr_1() -> None:
    """trunk ← trunk + C(P) (None) is SGD(lr=1) on −C(P): the same trajectory exactly."""
    plain = play(make_game("regression"), [5, 6], 6)[-1]
    sgd = play(make_game("regression", trunk_optimizer=optimizer_spec("sgd", {"lr": 1.0})), [5, 6], 6)[-1]
    assert torch.equal(plain.trunk, sgd.trunk) and torch.equal(plain.losses, sgd.losses)
    assert plain.trunk_opt.shape == (2, 0, plain.trunk.shape[1])


@pytest.mark.parametrize("name", ["quadratic", "digits"])
def test_game_b_with_optimizers_is_the_same_alone_first_or_last_of_64(name: str) -> None:
    adam = optimizer_spec("adam", {"lr": 0.01})
    momentum = optimizer_spec("momentum", {"lr": 0.05})
    game = make_game(name, trunk_optimizer=adam, head_optimizer=momentum)
    target, others = 77, [500 + i for i in range(63)]
    alone, first, last = (play(game, seeds, 4) for seeds in ([target], [target, *others], [*others, target]))
    for t, (a, f, z) in enumerate(zip(alone, first, last, strict=True)):
        for key, value in a.tensors().items():
            for other, pos in ((f, 0), (z, 63)):
                assert torch.equal(value[0], other.tensors()[key][pos]), f"{key} of game at {pos} differs at step {t}"


def test_reset_where_gives_a_fresh_optimizer_state() -> None:
    game = make_game("quadratic", trunk_optimizer=optimizer_spec("adam", {"lr": 0.01}))
    state = play(game, [1, 2], 3)[-1]
    assert bool((state.trunk_opt != 0).any(dim=(1, 2)).all())
    merged, _ = engine.reset_where(game, state, torch.tensor([False, True]))
    assert torch.equal(merged.trunk_opt[0], state.trunk_opt[0])
    assert bool((merged.trunk_opt[1] == 0).all()) and int(merged.t[1]) == 0


def test_env_reset_forgets_the_optimizer_state_and_checkpoints_carry_it() -> None:
    config: dict[str, Any] = {
        "suite": "regression", "trunk": "mlp", "hidden": 8, "consensus": "mean", "action_mode": "step_size",
        "max_cycles": 30, "trunk_optimizer": "adam", "trunk_optimizer_kwargs": {"lr": 0.02},
        "head_optimizer": "momentum", "head_optimizer_kwargs": {"lr": 0.02},
    }  # fmt: skip
    env = mtg_env.parallel_env(**config)

    def episode_rewards(e: mtg_env.MultiTaskGameEnv, steps: int | None = None) -> list[list[float]]:
        out = []
        while e.agents and (steps is None or len(out) < steps):
            out.append(list(e.step({a: np.array([0.3, -0.2], dtype=np.float32) for a in e.agents})[1].values()))
        return out

    env.reset(seed=9)
    first = episode_rewards(env)
    env.reset(seed=9)
    assert episode_rewards(env) == first  # the second episode starts with zero moments again
    env.reset(seed=9)
    episode_rewards(env, 12)
    checkpoint = env.state_dict()
    assert checkpoint["state"]["trunk_opt"].shape == (1, 2, env.trunk_size)
    rest = episode_rewards(env)
    fresh = mtg_env.parallel_env(**config)
    fresh.load_state_dict(checkpoint)
    assert episode_rewards(fresh) == rest == first[12:]
    other = mtg_env.parallel_env(**{**config, "trunk_optimizer_kwargs": {"lr": 0.03}})
    with pytest.raises(ValueError, match=r"trunk_optimizer.lr: expected 0.03 \(this env\), found 0.02"):
        other.load_state_dict(checkpoint)


def test_a_differentiable_unroll_passes_through_adam() -> None:
    """d(loss after 5 steps)/d(log step) through the Adam state equals finite differences."""
    game = make_game("regression", "step_size", second_order=True, trunk_optimizer=optimizer_spec("adam", {"lr": 0.05}))

    def loss_after(log_step: torch.Tensor) -> torch.Tensor:
        state, _ = engine.reset(game, [11, 12])
        for _ in range(5):
            state, out = engine.step(game, state, log_step.expand(2, game.num_tasks, 2))
        return out.losses.sum()

    x = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_after(x), x)
    eps = 1e-6
    with torch.no_grad():
        fd = (loss_after(x + eps) - loss_after(x - eps)) / (2 * eps)
    assert abs(grad.item()) > 1e-4
    assert grad.item() == pytest.approx(fd.item(), rel=1e-5)


def test_game_refuses_an_unvalidated_optimizer() -> None:
    suite = make_suite("quadratic")
    with pytest.raises(TypeError, match="trunk_optimizer must be an OptimizerSpec"):
        Game(suite, consensus_rule("mean"), trunk_optimizer="adam")  # type: ignore[arg-type]


def test_a_checkpoint_from_before_the_optimizers_still_loads() -> None:
    """A checkpoint of the old format without the optimizer state (as written before it existed) of a rule without
    state converts (mtg_env.envs.checkpoint.upgrade_checkpoint, nothing unpickled) and continues a game without one."""
    config: dict[str, Any] = {"suite": "regression", "action_mode": "step_size", "max_cycles": 10}
    env = mtg_env.parallel_env(**config)
    env.reset(seed=2)
    step = {a: np.zeros(2, np.float32) for a in env.agents}
    for _ in range(4):
        env.step(step)
    new = env.state_dict()
    old_config = {k: new["config"][k] for k in ("env", "suite", "action_mode", "max_cycles", "dtype", "head_sizes")}
    old_config.update(consensus="sum", trunk_size=env.trunk_size, divergence_reward="remaining")
    state = {k: v for k, v in new["state"].items() if k not in ("trunk_opt", "head_opt")}
    old = {
        "format": "mtg_env.checkpoint/1", "config": old_config, "seed": 2, "episode": 0, "agents": list(env.agents),
        "state": state, "features": torch.zeros(3, 8), "loss_history": new["loss_history"], "rule": None,
    }  # fmt: skip
    expected = [env.step(step)[1] for _ in range(6)]
    fresh = mtg_env.parallel_env(**config)
    with pytest.raises(ValueError, match=r"'mtg_env.checkpoint/1'.*upgrade_checkpoint\(checkpoint, env\) converts it"):
        fresh.load_state_dict(old)
    fresh.load_state_dict(upgrade_checkpoint(old, fresh))
    assert [fresh.step(step)[1] for _ in range(6)] == expected
    with_adam = mtg_env.parallel_env(**config, trunk_optimizer="adam")
    with pytest.raises(ValueError, match=r"another configuration: trunk_optimizer: expected \{'name': 'adam'"):
        with_adam.load_state_dict(upgrade_checkpoint(old, fresh))
