"""ModuleSuite (any user's trunk, heads, losses and data as a game) and MultiDigits, the MultiMNIST suite on it."""

from __future__ import annotations

import copy
import functools
import io
import os
import pickle
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test
from torch import Tensor, nn

import mtg_env
from agents import AdamAgent, GradientAgent, make_agents, run_episode
from agents.learned import learned_agent, pretrained_path
from mtg_env import engine
from mtg_env.cli import main
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.engine.optim import optimizer_spec
from mtg_env.suites import SUITES, ModuleSuite, MultiDigits, make_suite
from mtg_env.suites.base import least_squares
from mtg_env.suites.multidigits import multidigits_data

TASKS = ("sum", "sign", "square")


# ------------------------------------------------------------------------------------------- a user's model
def user_model(dtype: torch.dtype = torch.float64, n: int = 120) -> tuple[nn.Module, dict[str, nn.Module], Any, Any]:
    """A user's 3-task model as a user writes it: an MLP trunk, two linear heads and an MLP head, losses, data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g, dtype=dtype)
    targets = {"sum": x[:, :2].sum(1, keepdim=True), "sign": (x[:, 0] > 0).long(), "square": x[:, 3:4] ** 2}
    with torch.random.fork_rng(devices=[]):  # the modules' own init draws: leave the global generator as it was
        torch.manual_seed(0)
        trunk = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh()).to(dtype)
        heads = {
            "sum": nn.Linear(8, 1).to(dtype),
            "sign": nn.Linear(8, 2).to(dtype),
            "square": nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 1)).to(dtype),
        }
    losses = {"sum": nn.MSELoss(), "sign": nn.CrossEntropyLoss(), "square": nn.functional.mse_loss}
    return trunk, heads, losses, (x, targets)


def bench_suite(batch_size: int | None = 32, dtype: str = "float32", device: str = "cpu") -> ModuleSuite:
    """The user's model as a suite factory, for ``suite = "tests.test_module_suite:bench_suite"``."""
    trunk, heads, losses, train = user_model(torch.float32)
    return ModuleSuite(trunk, heads, losses, train, batch_size=batch_size, dtype=dtype, device=device)


class SmallConv(nn.Module):
    """A small conv trunk on 8×8 images (conv, ReLU, max-pool, linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 3 * 3, 8)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.fc(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1)))


def conv_suite(dtype: str) -> ModuleSuite:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(300, 1, 8, 8, generator=g)
    targets = {"a": torch.randint(0, 3, (300,), generator=g), "b": torch.randn(300, 2, generator=g)}
    heads = {"a": nn.Linear(8, 3), "b": nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 2))}
    losses = {"a": nn.CrossEntropyLoss(), "b": nn.MSELoss()}
    return ModuleSuite(SmallConv(), heads, losses, (x, targets), batch_size=16, dtype=dtype)


def play_gradient_agents(env: mtg_env.MultiTaskGameEnv, seed: int, lr: float) -> None:
    agents = {a: GradientAgent(lr=lr) for a in env.possible_agents}
    obs, infos = env.reset(seed=seed)
    for a in env.agents:
        agents[a].reset(obs[a], infos[a], env.action_space(a))
    while env.agents:
        obs, _, _, _, infos = env.step({a: agents[a].act(obs[a], infos[a]) for a in env.agents})


Batches = Callable[[int], tuple[Tensor, dict]]


def hand_written_loop(
    trunk: nn.Module, heads: dict[str, nn.Module], losses: Any, batches: Batches, lr: float, steps: int
) -> tuple[Tensor, Tensor]:
    """Plain PyTorch: forward, every task's gradient from one batched backward, each head by its own gradient and
    the trunk by the sum of the tasks' (the paper's Eq. 23 and Eq. 24). Returns the flat (heads, trunk)."""
    trunk_params = list(trunk.parameters())
    head_params = [list(heads[t].parameters()) for t in TASKS]
    eye = torch.eye(len(TASKS), dtype=trunk_params[0].dtype)
    for t in range(steps):
        x, ys = batches(t)
        feats = trunk(x)
        values = torch.stack([losses[task](heads[task](feats), ys[task]) for task in TASKS])
        every = trunk_params + [p for params in head_params for p in params]
        grads = torch.autograd.grad(values, every, grad_outputs=eye, is_grads_batched=True)
        with torch.no_grad():
            for p, g in zip(trunk_params, grads, strict=False):
                p += (-lr * g).sum(0)
            k = len(trunk_params)
            for m, params in enumerate(head_params):
                for p in params:
                    p += -lr * grads[k][m]
                    k += 1
    flat_heads = torch.cat([p.detach().reshape(-1) for params in head_params for p in params])
    return flat_heads, torch.cat([p.detach().reshape(-1) for p in trunk_params])


# ------------------------------------------------------------------------- the env equals a hand-written loop
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch_size", [None, 32])
def test_a_users_model_played_through_the_env_equals_a_hand_written_torch_loop(
    dtype: torch.dtype, batch_size: int | None
) -> None:
    trunk, heads, losses, train = user_model(dtype)
    suite = ModuleSuite(trunk, heads, losses, train, batch_size=batch_size, init="module")
    env = mtg_env.parallel_env(suite=suite, consensus="sum", max_update=None, max_cycles=50)
    play_gradient_agents(env, seed=3, lr=0.1)
    env_heads, env_trunk = env.get_parameters()

    def batches(t: int) -> tuple[Tensor, dict]:
        if batch_size is None:
            return train
        x, ys = suite.batch_for_seed(3, step=t).game(0)  # the batch the game drew at step t
        return x, dict(zip(TASKS, ys, strict=True))

    hand_heads, hand_trunk = hand_written_loop(trunk, heads, losses, batches, lr=0.1, steps=50)
    if dtype == torch.float64:  # the same operations in the same order: exactly
        assert torch.equal(env_trunk, hand_trunk) and torch.equal(env_heads, hand_heads)
    torch.testing.assert_close(env_trunk, hand_trunk, rtol=0, atol=1e-6)
    torch.testing.assert_close(env_heads, hand_heads, rtol=0, atol=1e-6)
    assert not torch.equal(env_trunk, torch.nn.utils.parameters_to_vector(user_model(dtype)[0].parameters()))


def test_the_suite_flattens_the_modules_parameters_in_order_and_never_changes_the_users_modules() -> None:
    trunk, heads, losses, train = user_model()
    before = [p.clone() for p in trunk.parameters()]
    suite = ModuleSuite(trunk, heads, losses, train, init="module")
    flat_heads, flat_trunk = suite.params_for_seed(0)
    assert torch.equal(flat_trunk, nn.utils.parameters_to_vector(trunk.parameters()))
    for m, task in enumerate(TASKS):  # head m is the contiguous slice m, in the order of the heads' keys
        lo, hi = suite.head_offsets[m], suite.head_offsets[m + 1]
        assert torch.equal(flat_heads[lo:hi], nn.utils.parameters_to_vector(heads[task].parameters()))
    assert suite.task_names == TASKS and suite.trunk_size == 6 * 16 + 16 + 16 * 8 + 8
    env = mtg_env.parallel_env(suite=suite, max_update=None, max_cycles=5)
    rng_state = torch.random.get_rng_state()
    play_gradient_agents(env, seed=0, lr=0.5)
    assert torch.equal(rng_state, torch.random.get_rng_state())  # the game draws nothing from torch's generator
    assert all(torch.equal(a, b) for a, b in zip(before, trunk.parameters(), strict=True))
    assert env.metadata["name"] == "mtg_module_v6" and [env.task_name(a) for a in env.agents or env.possible_agents] \
        == list(TASKS)  # fmt: skip


class _PairDataset(torch.utils.data.Dataset):
    """Examples as a user's Dataset returns them: ``(x, {task: y})``."""

    def __init__(self, x: Tensor, targets: dict[str, Tensor]):
        self.x, self.targets = x, targets

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.x[i], {k: v[i] for k, v in self.targets.items()}


def test_a_dataloader_gives_the_same_game_as_the_tensors() -> None:
    trunk, heads, losses, (x, targets) = user_model()
    loader = torch.utils.data.DataLoader(_PairDataset(x, targets), batch_size=50, shuffle=False)
    from_loader = ModuleSuite(trunk, heads, losses, loader, batch_size=16)
    from_tensors = ModuleSuite(trunk, heads, losses, (x, targets), batch_size=16)
    assert from_loader.fingerprint() == from_tensors.fingerprint()
    heads0, trunk0 = from_tensors.params_for_seed(4)
    batch = from_tensors.batch_for_seed(4, step=2)
    assert torch.equal(from_loader.losses(heads0, trunk0, batch), from_tensors.losses(heads0, trunk0, batch))


def test_a_seed_decides_the_initial_parameters_as_pytorchs_default_init_draws_them() -> None:
    trunk, heads, losses, train = user_model()
    trunk.append(nn.LayerNorm(8).double())  # a parameter the init table does not draw: kept at the module's value
    suite = ModuleSuite(trunk, heads, losses, train)
    h0, t0 = suite.params_for_seed(0)
    h0b, t0b = suite.params_for_seed(0)
    h1, t1 = suite.params_for_seed(1)
    assert torch.equal(t0, t0b) and torch.equal(h0, h0b) and not torch.equal(t0, t1) and not torch.equal(h0, h1)
    first = t0[: 6 * 16].abs()  # trunk[0].weight: U(-1/√6, 1/√6)
    assert float(first.max()) <= 6**-0.5 and float(first.max()) > 0.8 * 6**-0.5
    second = t0[6 * 16 + 16 : 6 * 16 + 16 + 16 * 8].abs()  # trunk[2].weight: U(-1/√16, 1/√16)
    assert float(second.max()) <= 0.25 and float(second.max()) > 0.2
    layer_norm = t0[-16:]
    assert torch.equal(layer_norm, torch.cat([torch.ones(8), torch.zeros(8)]).to(layer_norm))


# -------------------------------------------------------------------------------------- batch invariance
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_game_b_of_an_engine_batch_is_the_lone_game_bit_for_bit(dtype: str) -> None:
    suite = conv_suite(dtype)
    game = Game(suite, consensus_rule("mean"), action_mode="update", horizon=10)

    def play(seeds: list[int]) -> list[engine.GameState]:
        state, _ = engine.reset(game, seeds)
        states = [state]
        for t in range(3):  # actions that read the state, so any difference would spread
            scale = 0.05 + 0.01 * t + 0.01 * state.losses.clamp(0, 5).mean(1, keepdim=True)
            state, _ = engine.step(game, state, (-scale * state.head_grads, -scale.unsqueeze(2) * state.jacobian))
            states.append(state)
        return states

    others = [10_000 + i for i in range(63)]
    alone, first, last = play([1234]), play([1234, *others]), play([*others, 1234])
    for t, (a, f, z) in enumerate(zip(alone, first, last, strict=True)):
        for key, value in a.tensors().items():
            for other, position in ((f, 0), (z, 63)):
                assert torch.equal(value[0], getattr(other, key)[position]), (
                    f"{dtype}: {key} of the game at position {position} of 64 differs from the lone game at step {t}"
                )


def test_a_differentiable_unroll_through_a_module_suite_matches_finite_differences() -> None:
    trunk, heads, losses, train = user_model()  # float64
    game = Game(ModuleSuite(trunk, heads, losses, train, batch_size=32), consensus_rule("mean"),
                action_mode="step_size", second_order=True)  # fmt: skip

    def loss_after(log_step: Tensor) -> Tensor:
        state, _ = engine.reset(game, [11, 12])
        for _ in range(4):
            state, out = engine.step(game, state, log_step.expand(2, 3, 2))
        return out.losses.sum()

    x = torch.tensor(-1.5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_after(x), x)
    eps = 1e-6
    with torch.no_grad():
        fd = (loss_after(x + eps) - loss_after(x - eps)) / (2 * eps)
    assert abs(grad.item()) > 1e-3 and grad.item() == pytest.approx(fd.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_round_trip_finishes_identically() -> None:
    def fresh() -> mtg_env.MultiTaskGameEnv:  # a suite built anew from the same model: the same game
        trunk, heads, losses, train = user_model(torch.float32)
        suite = ModuleSuite(trunk, heads, losses, train, batch_size=16)
        return mtg_env.parallel_env(suite=suite, consensus="upgrad", max_cycles=20, max_update=None,
                                    trunk_optimizer="adam", trunk_optimizer_kwargs={"lr": 0.01})  # fmt: skip

    def finish(env: mtg_env.MultiTaskGameEnv, obs: dict, agents: dict, steps: int) -> dict:
        for _ in range(steps):
            obs, *_ = env.step({a: agents[a].act(obs[a], {}) for a in env.agents})
        return obs

    env = fresh()
    agents = {a: AdamAgent(lr=0.01) for a in env.possible_agents}
    obs, infos = env.reset(seed=5)
    for a in env.agents:
        agents[a].reset(obs[a], infos[a], env.action_space(a))
    obs = finish(env, obs, agents, 8)
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    saved_agents, saved_obs = copy.deepcopy(agents), copy.deepcopy(obs)
    end = finish(env, obs, agents, 12)
    restored = fresh()
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    end_restored = finish(restored, saved_obs, saved_agents, 12)
    for a in end:
        np.testing.assert_array_equal(end[a], end_restored[a])
    for x, y in zip(env.get_parameters(), restored.get_parameters(), strict=True):
        assert torch.equal(x, y)
    assert env.agents == restored.agents == []
    pickled = pickle.loads(pickle.dumps(restored))  # the env pickles too, its suite (modules, data) with it
    assert all(torch.equal(x, y) for x, y in zip(pickled.get_parameters(), restored.get_parameters(), strict=True))
    other = mtg_env.parallel_env(
        suite=bench_suite(batch_size=8), consensus="upgrad", max_cycles=20, max_update=None, trunk_optimizer="adam",
        trunk_optimizer_kwargs={"lr": 0.01},
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"another configuration: suite\.batch_size"
    ):  # another batch size: another game
        other.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))


# ------------------------------------------------------------------ what works on a built-in suite works here
@pytest.mark.parametrize("mode", ["update", "step_size"])
def test_the_pettingzoo_checkers_pass_on_a_module_suite(mode: str) -> None:
    suite = bench_suite(batch_size=16)
    factory = functools.partial(mtg_env.parallel_env, suite=suite, action_mode=mode, max_cycles=30)
    parallel_api_test(factory(), num_cycles=30)
    parallel_seed_test(factory, num_cycles=10)
    with warnings.catch_warnings():  # the heads differ in size: in update mode each agent sees its own
        warnings.filterwarnings("ignore", "Agents have different observation space sizes")
        warnings.filterwarnings("ignore", "Observations are different shapes")
        api_test(mtg_env.env(suite=suite, action_mode=mode, max_cycles=30), num_cycles=30)


def test_the_vector_env_plays_the_parallel_envs_game() -> None:
    suite = bench_suite(batch_size=16)
    venv = mtg_env.vector_env(num_games=3, suite=suite, action_mode="step_size", max_cycles=5)
    obs, _ = venv.reset(seed=40)
    lone = mtg_env.parallel_env(suite=suite, action_mode="step_size", max_cycles=5)
    lone_obs, _ = lone.reset(seed=41)
    np.testing.assert_array_equal(obs[1].numpy(), np.stack([lone_obs[a] for a in lone.agents]))
    for t in range(4):
        obs, rewards, *_ = venv.step(torch.full((3, 3, 2), -0.3))
        lone_obs, lone_rewards, *_ = lone.step({a: np.full(2, -0.3, np.float32) for a in lone.agents})
        assert rewards[1].tolist() == list(lone_rewards.values()), f"step {t}"


@pytest.mark.parametrize("rule", list(mtg_env.CONSENSUS_RULES))
def test_every_consensus_rule_plays_a_module_suite(rule: str) -> None:
    env = mtg_env.parallel_env(
        suite=bench_suite(batch_size=16), consensus=rule, action_mode="step_size", max_cycles=4,
        log_step_range=(-5.0, 1.0), trunk_optimizer="adam", head_optimizer="adam",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)  # Nash-MTL's solver remark
        warnings.filterwarnings("ignore", "nash_mtl: ", mtg_env.ConsensusWarning)
        history = run_episode(env, make_agents("gradient", env, lr=1.0), seed=0, evaluate=False)
    assert history.steps == 4 and not history.terminated and np.isfinite(history.losses).all()


def test_the_learned_agent_reads_the_same_observation_and_trains_the_model() -> None:
    env = mtg_env.parallel_env(suite=bench_suite(batch_size=None), max_cycles=60, max_update=None)
    rule = pretrained_path("learned_mlp", "digits")  # meta-trained on digits, played on the user's model
    players = {a: learned_agent("learned_mlp", weights=rule) for a in env.possible_agents}
    history = run_episode(env, players, seed=0)
    assert not history.terminated
    assert history.losses[-1].sum() < 0.5 * history.losses[0].sum()


def test_metrics_and_evaluate_report_every_task() -> None:
    trunk, heads, losses, train = user_model()
    x, targets = train
    held_out = (x[:40], {k: v[:40] for k, v in targets.items()})
    error = {"test_error": lambda out, y: (out.argmax(1) != y).double().mean()}
    suite = ModuleSuite(trunk, heads, losses, train, eval=held_out, metrics={"sign": error})
    env = mtg_env.parallel_env(suite=suite, max_update=None, max_cycles=5)
    run_episode(env, make_agents("gradient", env, lr=0.1), seed=0)
    evaluated = env.evaluate()
    assert set(evaluated["task_0"]) == {"task", "train_loss", "test_mse"}
    assert set(evaluated["task_1"]) == {"task", "train_loss", "test_accuracy", "test_loss", "test_error"}
    assert evaluated["task_1"]["test_accuracy"] + evaluated["task_1"]["test_error"] == pytest.approx(1.0)
    metrics = env.metrics("train")
    assert metrics["game"]["nash_gap_exact"] is False  # one head's best response is approximate
    assert all(v["nash_gap"] >= 0 for v in metrics["agents"].values())
    assert suite.tasks[1].kind == "classification" and suite.tasks[1].num_classes == 2
    assert suite.describe()["best_response"] == {"sum": "least squares", "sign": "convex", "square": "approximate"}


def test_linear_mse_heads_have_an_exact_nash_gap() -> None:
    trunk, heads, losses, train = user_model()
    heads["square"] = nn.Linear(8, 1).to(torch.float64)
    losses = {"sum": nn.MSELoss(), "sign": nn.MSELoss(), "square": nn.functional.mse_loss}
    x, targets = train
    train = (x, {**targets, "sign": nn.functional.one_hot(targets["sign"], 2).double()})
    suite = ModuleSuite(trunk, heads, losses, train)
    assert suite.exact_best_response
    head_params, trunk_params = suite.params_for_seed(0)
    gaps = suite.nash_gaps(head_params, trunk_params)
    feats = suite.features(trunk_params, x)
    design = torch.cat([feats, torch.ones(len(x), 1, dtype=feats.dtype)], 1)
    batch = suite.train_batch()
    losses_now = suite.losses(head_params, trunk_params, batch)
    for m, y in enumerate(suite.train_batch().targets):  # the gap is the loss above the least-squares fit
        fit = design @ least_squares(design, y)
        assert float(gaps[m]) == pytest.approx(float(losses_now[m] - nn.functional.mse_loss(fit, y)), rel=1e-9)
    best = suite.best_response(head_params, trunk_params)
    assert float(suite.nash_gaps(best, trunk_params).max()) < 1e-12


# ------------------------------------------------------------------------------------------------- bench
def test_a_module_suite_by_import_path_in_a_toml_benchmark_produces_a_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
name = "mine"
rules = ["sum"]
horizons = [6]
bootstrap_reps = 50
[[policies]]
name = "gradient"
baseline = "gradient"
[[policies]]
name = "adam"
baseline = "adam"
[[suites]]
name = "tests.test_module_suite:bench_suite"
options = { batch_size = 16 }
[tuning]
low = 0.01
high = 0.1
tuning_seeds = [1000]
eval_seeds = [0, 1]
"""
    )
    assert main(["bench", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| policy | IQM score" in printed and "| tests.test_module_suite:bench_suite |" in printed
    rows = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert len(rows) == 3 and {r.split(",")[0] for r in rows[1:]} == {"adam", "gradient"}


def test_make_suite_builds_a_suite_by_import_path() -> None:
    suite = make_suite("tests.test_module_suite:bench_suite", dtype="float64", batch_size=8)
    assert isinstance(suite, ModuleSuite) and suite.dtype == torch.float64 and suite.batch_size == 8
    with pytest.raises(ValueError, match=r"cannot import suite factory 'tests\.nowhere:make'"):
        make_suite("tests.nowhere:make")
    with pytest.raises(TypeError, match=r"'tests\.test_module_suite:user_model' returned tuple, not a TaskSuite"):
        make_suite("tests.test_module_suite:user_model")


# ------------------------------------------------------------------------------------------------ bad input
def _bad_param_trunk() -> nn.Module:
    trunk = user_model()[0]
    trunk.register_parameter("steps", nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False))
    return trunk


BAD: dict[str, tuple[Callable[[dict], None], type, str]] = {
    "non-floating parameter": (lambda a: a.update(trunk=_bad_param_trunk()), TypeError,
                               r"trunk parameter 'steps' has dtype torch.int64"),
    "head off the trunk's output": (lambda a: a["heads"].update(sum=nn.Linear(7, 1).double()), ValueError,
                                    r"heads\['sum'\] does not fit the trunk's output: .* shape \(2, 8\)"),
    "loss not a scalar": (lambda a: a["losses"].update(sum=nn.MSELoss(reduction="none")), ValueError,
                          r"losses\['sum'\] must return a floating scalar tensor .* got shape \(2, 1\)"),
    "targets shaped off the outputs": (lambda a: a["train"][1].update(sum=a["train"][1]["sum"][:, 0]), ValueError,
                                       r"losses\['sum'\] warned on heads\['sum'\]'s output .*target size"),
    "mismatched lengths": (lambda a: a["train"][1].update(sign=a["train"][1]["sign"][:-1]), ValueError,
                           r"train: targets of task 'sign' have 119 rows, the inputs 120"),
    "a task without targets": (lambda a: a["train"][1].pop("square"), ValueError,
                               r"train's targets must have one entry per task .* missing \['square'\]"),
    "empty task dict": (lambda a: a.update(heads={}), ValueError, r"heads is empty"),
    "duplicate task names": (lambda a: a.update(heads=[("sum", nn.Linear(8, 1)), ("sum", nn.Linear(8, 1))]),
                             ValueError, r"heads: task 'sum' is named twice"),
    "a loss per task": (lambda a: a["losses"].pop("sign"), ValueError, r"losses must have one entry per task"),
    "model on another device": (lambda a: a.update(device="meta"), ValueError,
                                r"device='meta', but the model's parameters are on cpu"),
    "a head sharing the trunk's layer": (lambda a: a["heads"].update(sum=a["trunk"][2]), ValueError,
                                         r"heads\['sum'\] shares parameter 'weight' with trunk.2.weight"),
    "eval of mismatched lengths": (lambda a: a.update(eval=(a["train"][0][:5], a["train"][1])), ValueError,
                                   r"eval: targets of task 'sum' have 120 rows, the inputs 5"),
    "batch larger than the data": (lambda a: a.update(batch_size=500), ValueError,
                                   r"batch_size must be in \[1, 120\]"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_naming_the_argument(case: str) -> None:
    trunk, heads, losses, (x, targets) = user_model()
    args: dict[str, Any] = {"trunk": trunk, "heads": heads, "losses": losses, "train": (x, dict(targets))}
    change, error, match = BAD[case]
    change(args)
    with pytest.raises(error, match=match):
        ModuleSuite(**args)


def test_repr_names_the_tasks_and_sizes() -> None:
    suite = bench_suite(batch_size=8)
    assert repr(suite) == (
        "ModuleSuite(tasks=('sum', 'sign', 'square'), trunk_size=248, head_sizes=(9, 18, 41), batch_size=8, "
        "init='seeded', device='cpu', dtype=torch.float32)"
    )


# ------------------------------------------------------------------------------------------------ MultiDigits
def test_multidigits_overlays_two_digits_of_different_classes() -> None:
    (x, y), (x_test, y_test) = multidigits_data(14, 2, 500, 100, 0.25, data_seed=0)
    assert x.shape == (500, 1, 14, 14) and x_test.shape == (100, 1, 14, 14)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert bool((y["left"] != y["right"]).all()) and bool((y_test["left"] != y_test["right"]).all())
    assert float(x[:, :, :2, :2].sum()) > 0 and float(x[:, :, -2:, -2:].sum()) > 0  # top-left and bottom-right
    assert float(x[:, :, -2:, :2].sum()) == 0 and float(x[:, :, :2, -2:].sum()) == 0
    again, _ = multidigits_data(14, 2, 500, 100, 0.25, data_seed=0)
    assert torch.equal(x, again[0])
    assert SUITES["multidigits"] is MultiDigits and make_suite("multidigits").task_names == ("left", "right")


def test_multidigits_learns_both_digits_in_a_short_run() -> None:
    suite = MultiDigits(n_train=1000, n_test=500, batch_size=64)
    env = mtg_env.parallel_env(suite=suite, consensus="mean", max_cycles=150, max_update=None)
    history = run_episode(env, make_agents("adam", env, lr=3e-3), seed=0)
    accuracy = {v["task"]: v["test_accuracy"] for v in history.final.values()}
    assert min(accuracy.values()) > 0.3, accuracy  # chance is 0.1
    assert history.final["task_0"]["nash_gap"] >= 0


def test_mtg_env_run_plays_multidigits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--suite", "multidigits", "--steps", "5", "--no-progress", "--out", str(tmp_path)]) == 0
    assert "mtg_multidigits_v6: gradient agents" in capsys.readouterr().out
    assert (tmp_path / "summary.json").exists()


def test_adam_after_the_rule_is_torch_adam_on_the_summed_gradient() -> None:
    trunk, heads, losses, train = user_model()
    suite = ModuleSuite(trunk, heads, losses, train, init="module")
    game = Game(suite, consensus_rule("sum"), action_mode="update", horizon=20,
                trunk_optimizer=optimizer_spec("adam", {"lr": 0.01}),
                head_optimizer=optimizer_spec("adam", {"lr": 0.01}, "head_optimizer"))  # fmt: skip
    state, _ = engine.reset(game, [0])
    for _ in range(20):
        state, _ = engine.step(game, state, (-state.head_grads, -state.jacobian))
    params = list(trunk.parameters()) + [p for t in TASKS for p in heads[t].parameters()]
    opt = torch.optim.Adam(params, lr=0.01)
    x, targets = train
    for _ in range(20):
        opt.zero_grad()
        feats = trunk(x)
        torch.stack([losses[t](heads[t](feats), targets[t]) for t in TASKS]).sum().backward()
        opt.step()
    torch.testing.assert_close(state.trunk[0], nn.utils.parameters_to_vector(trunk.parameters()), rtol=0, atol=1e-12)
    torch.testing.assert_close(state.heads[0], nn.utils.parameters_to_vector(params[len(list(trunk.parameters())):]),
                               rtol=0, atol=1e-12)  # fmt: skip


# ------------------------------------------------------------------------------------------ guide and example
ROOT = Path(__file__).resolve().parent.parent


def test_the_guide_bring_your_own_model_block_runs_and_learns(capsys: pytest.CaptureFixture[str]) -> None:
    guide = "docs/guides/add_a_suite.md"
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / guide).read_text(), flags=re.S)
    block = next(b for b in blocks if "mtg_env.ModuleSuite(" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, guide, "exec"), namespace)
    env, history = namespace["env"], namespace["history"]
    assert history.steps == 200 and not history.terminated
    evaluated = env.evaluate()
    assert evaluated["task_0"]["train_accuracy"] > 0.9 and evaluated["task_1"]["train_mse"] < 0.5
    assert "train_accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_the_bring_your_own_model_example_matches_its_references() -> None:
    done = subprocess.run(
        [sys.executable, "examples/bring_your_own_model.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's package, whatever the venv installed
    )
    lines = done.stdout.splitlines()
    differences = [float(line.split()[-1]) for line in lines if "largest parameter" in line]
    assert len(differences) == 2 and max(differences) < 1e-4, done.stdout  # float32 round-off after 300 steps
    ours = [line.split("digit accuracy")[1] for line in lines if line.startswith(("  env, Gradient", "  env, sum"))]
    theirs = [line.split("digit accuracy")[1] for line in lines if "same start and batches" in line]
    assert len(ours) == 2 and ours == theirs, done.stdout  # env and reference print the same held-out metrics
    assert "learned_mlp" in done.stdout and "IQM normalised score" in done.stdout
