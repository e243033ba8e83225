"""The engine: batch independence, env == engine, closed forms against autograd, differentiable unrolls."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.consensus.loss_rules import LOSS_RULES
from mtg_env.engine import Game, GameRNG
from mtg_env.engine.optim import optimizer_spec
from mtg_env.suites import make_suite
from tests.conftest import DEVICE

SUITES: dict[str, dict[str, Any]] = {
    "quadratic": {},
    "regression": {"trunk": "mlp", "hidden": 8},
    "toy2d": {"start": None},
    "digits": {"hidden": (16, 8), "batch_size": 32},
}


def make_game(name: str, mode: str = "step_size", rule: str = "mean", dtype: str = "float64", **kwargs: Any) -> Game:
    suite = make_suite(name, dtype=dtype, device=DEVICE, **SUITES[name])
    return Game(suite, consensus_rule(rule, num_tasks=suite.num_tasks), action_mode=mode, **kwargs)


def play(game: Game, seeds: list[int], steps: int) -> list[engine.GameState]:
    """States after each step, with actions that depend on the state (so any difference would spread)."""
    state, _ = engine.reset(game, seeds)
    states = [state]
    for t in range(steps):
        if game.action_mode == "step_size":
            # Per-task step sizes from the game's own losses: a policy that reads its observation.
            actions = (-2.5 - 0.1 * state.losses.clamp(-5, 5)).unsqueeze(2).expand(-1, -1, 2) - 0.01 * t
            state, _ = engine.step(game, state, actions)
        else:
            state, _ = engine.step(game, state, (-0.05 * state.head_grads, -0.05 * state.jacobian))
        states.append(state)
    return states


@pytest.mark.parametrize("name", list(SUITES))
@pytest.mark.parametrize("mode", ["step_size", "update"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_game_b_is_the_same_alone_first_or_last_of_512(name: str, mode: str, dtype: str) -> None:
    # Bit for bit on CPU in both dtypes, under every MKL_CBWR branch (CI runs this file under several): no
    # operation of the step may reduce across games or let the batch's shape pick a kernel (a GEMM over the B
    # games did, on AVX2 and AVX-512 machines).
    game = make_game(name, mode, dtype=dtype)
    target = 1234
    others = [10_000 + i for i in range(511)]
    alone = play(game, [target], 3)
    first = play(game, [target, *others], 3)
    last = play(game, [*others, target], 3)
    for t, (a, f, z) in enumerate(zip(alone, first, last, strict=True)):
        for key, value in a.tensors().items():
            exact = DEVICE == "cpu"  # on CPU: bit for bit; elsewhere to round-off
            for other, pos in ((f, 0), (z, 511)):
                got = other.tensors()[key][pos]
                if exact:
                    assert torch.equal(value[0], got), (
                        f"{name}/{mode}/{dtype}: {key} of the game at position {pos} differs at step {t}"
                    )
                elif not value.dtype.is_floating_point:  # counters, seeds, flags: exact on every device
                    assert torch.equal(value[0], got), f"{name}/{mode}/{dtype}: {key} at position {pos}, step {t}"
                else:  # a GPU may pick its kernels by shape too: equal to a few hundred ulps
                    eps = torch.finfo(value.dtype).eps
                    torch.testing.assert_close(value[0], got, rtol=500 * eps, atol=500 * eps)


@pytest.mark.parametrize("name", list(SUITES))
@pytest.mark.parametrize("mode", ["step_size", "update"])
def test_env_plays_the_engine_game(name: str, mode: str) -> None:
    env = mtg_env.parallel_env(suite=name, action_mode=mode, dtype="float64", device=DEVICE, consensus="mean",
                               max_cycles=20, step_size_units="log", max_update=None, update_units="raw",
                               **SUITES[name])  # fmt: skip  # raw: the actions are the updates
    game = Game(env.suite, env.consensus, action_mode=mode, horizon=20)
    obs, _ = env.reset(seed=77)
    state, out = engine.reset(game, [77])
    rng = np.random.default_rng(0)
    for t in range(6):
        if mode == "step_size":
            steps = rng.uniform(-4, -2, size=(game.num_tasks, 2))
            actions = {a: steps[m] for m, a in enumerate(env.agents)}
            engine_actions: Any = torch.tensor(steps, device=DEVICE).unsqueeze(0)
        else:
            actions = {a: -0.05 * o[: env.head_slot(a) + env.trunk_size] for a, o in obs.items()}
            heads = np.concatenate([actions[a][: env.head_size(a)] for a in env.agents])
            trunk = np.stack([actions[a][env.head_slot(a) :] for a in env.agents])
            engine_actions = (torch.tensor(heads, device=DEVICE)[None], torch.tensor(trunk, device=DEVICE)[None])
        obs, rewards, *_ = env.step(actions)
        state, out = engine.step(game, state, engine_actions)
        assert list(rewards.values()) == (-out.losses[0]).tolist(), f"step {t}"
        np.testing.assert_array_equal(env.state(), out.features[0].cpu().numpy().reshape(-1), err_msg=f"step {t}")
        heads_env, trunk_env = env.get_parameters()
        assert torch.equal(heads_env, state.heads[0]) and torch.equal(trunk_env, state.trunk[0]), f"step {t}"


def test_same_seed_same_game_on_any_batch_of_the_vector_env() -> None:
    venv = mtg_env.vector_env(num_games=4, suite="regression", action_mode="step_size", max_cycles=3)
    assert venv.action_low.tolist() == [-1.0, -1.0] and venv.action_high.tolist() == [1.0, 1.0]
    obs, infos = venv.reset(seed=50)
    assert infos["seeds"].tolist() == [50, 51, 52, 53]
    lone = mtg_env.parallel_env(suite="regression", action_mode="step_size", max_cycles=3)
    lone_obs, _ = lone.reset(seed=52)
    np.testing.assert_array_equal(obs[2].numpy(), np.stack([lone_obs[a] for a in lone.agents]))
    actions = torch.full((4, 3, 2), -0.2)
    for t in range(3):
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        lone_obs, lone_rewards, *_ = lone.step({a: np.full(2, -0.2, np.float32) for a in lone.agents})
        assert rewards[2].tolist() == list(lone_rewards.values()), f"step {t}"
    # Step 3 ends every episode: the vector env resets in the same call and reports the last observation.
    assert truncated.all() and not terminated.any() and infos["done"].all()
    final = np.stack([lone_obs[a] for a in lone.possible_agents])
    np.testing.assert_array_equal(infos["final_observation"][2].numpy(), final)
    # ... and each game goes on with its seed's next episode, as a lone env reset without a seed does.
    next_obs, _ = lone.reset()
    np.testing.assert_array_equal(obs[2].numpy(), np.stack([next_obs[a] for a in lone.agents]))
    assert venv.state.episodes.tolist() == [1, 1, 1, 1] and venv.state.t.tolist() == [0, 0, 0, 0]


def test_vector_env_refuses_bad_actions_naming_game_and_task_and_changes_nothing() -> None:
    venv = mtg_env.vector_env(
        num_games=3, suite="quadratic", action_mode="step_size", log_step_range=(-5.0, 0.0), step_size_units="log"
    )
    venv.reset(seed=0)
    before = venv.state.tensors()
    actions = torch.full((3, 3, 2), -1.0)
    actions[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="game 1, task_2 at index 0 is nan"):
        venv.step(actions)
    actions[1, 2, 0] = 0.5
    with pytest.raises(ValueError, match=r"outside \[-5.0, 0.0\]"):
        venv.step(actions)
    with pytest.raises(ValueError, match=r"shape \(3, 3, 2\)"):
        venv.step(torch.zeros(3, 2))
    for key, value in venv.state.tensors().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(ValueError, match="num_games must be an int >= 1"):
        mtg_env.vector_env(num_games=0)
    with pytest.raises(ValueError, match=r"seed must list one seed per game \(3\)"):
        venv.reset(seed=[1, 2])


def test_vector_env_update_mode_pads_unequal_heads_as_the_env_does() -> None:
    venv = mtg_env.vector_env(num_games=2, suite="digits", hidden=(16, 8), batch_size=32, max_cycles=4)
    obs, _ = venv.reset(seed=5)
    lone = mtg_env.parallel_env(suite="digits", hidden=(16, 8), batch_size=32, max_cycles=4)
    lone_obs, _ = lone.reset(seed=6)
    widest = max(lone.head_size(a) for a in lone.agents)
    width = widest + lone.trunk_size + len(mtg_env.FEATURES)
    assert obs.shape == (2, 4, width)
    assert {lone.observation_space(a).shape for a in lone.agents} == {(width,)}
    for m, agent in enumerate(lone.agents):
        h = lone.head_size(agent)
        assert lone.head_slot(agent) == widest
        np.testing.assert_array_equal(obs[1, m].numpy(), lone_obs[agent])
        assert not obs[1, m, h:widest].any()  # the padding is zero


def test_quadratic_closed_form_equals_autograd() -> None:
    suite = make_suite("quadratic", num_tasks=4, head_dim=3, trunk_dim=5, dtype="float64")
    rng = GameRNG.from_seeds([0, 1, 2])
    heads, trunk = suite.init_params(rng)
    losses, head_grads, jac = suite.closed_form(heads, trunk, None)
    for b in range(3):
        h = heads[b].clone().requires_grad_(True)
        t = trunk[b].clone().requires_grad_(True)
        # An independent formula: ℓ_m = ½ zᵀA z − bᵀz with z = [Θ_m; Ψ], summed task by task.
        value = torch.stack(
            [
                0.5 * torch.cat([hm, t]) @ a @ torch.cat([hm, t]) - v @ torch.cat([hm, t])
                for hm, a, v in zip(h.split(3), suite._A, suite._b, strict=True)
            ]
        )
        torch.testing.assert_close(value, losses[b], rtol=1e-13, atol=1e-13)
        grads_h = torch.autograd.grad(value.sum(), h, retain_graph=True)[0]
        torch.testing.assert_close(grads_h, head_grads[b], rtol=1e-13, atol=1e-13)
        for m in range(4):
            row = torch.autograd.grad(value[m], t, retain_graph=True)[0]
            torch.testing.assert_close(row, jac[b, m], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["regression", "toy2d", "digits"])
def test_engine_jacobian_rows_equal_per_task_backward(name: str) -> None:
    suite = make_suite(name, dtype="float64", **SUITES[name])
    rng = GameRNG.from_seeds([3, 4])
    heads, trunk = suite.init_params(rng)
    batch = suite.sample_batch(rng)
    losses, head_grads, jac = engine.losses_and_grads(suite, heads, trunk, batch)
    h = heads.clone().requires_grad_(True)
    t = trunk.clone().requires_grad_(True)
    value = suite.batched_losses(h, t, batch)
    torch.testing.assert_close(value.detach(), losses, rtol=1e-12, atol=1e-12)
    for m in range(suite.num_tasks):
        row = torch.autograd.grad(value[:, m].sum(), t, retain_graph=True)[0]
        torch.testing.assert_close(row, jac[:, m], rtol=1e-10, atol=1e-12)
    if heads.shape[1]:
        torch.testing.assert_close(torch.autograd.grad(value.sum(), h)[0], head_grads, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["quadratic", "regression"])
def test_unroll_gradient_in_a_step_size_matches_finite_differences(name: str) -> None:
    game = make_game(name, "step_size", second_order=True)
    k = 5

    def loss_after(log_step: torch.Tensor) -> torch.Tensor:
        state, _ = engine.reset(game, [11, 12])
        for _ in range(k):
            state, out = engine.step(game, state, log_step.expand(2, game.num_tasks, 2))
        return out.losses.sum()

    x = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_after(x), x)
    eps = 1e-6
    with torch.no_grad():
        fd = (loss_after(x + eps) - loss_after(x - eps)) / (2 * eps)
    assert abs(grad.item()) > 1e-3  # the step size matters
    assert grad.item() == pytest.approx(fd.item(), rel=1e-6)


def test_first_order_unroll_detaches_the_observed_gradients() -> None:
    game = make_game("quadratic", "update")
    state, _ = engine.reset(game, [0])
    head_updates = torch.zeros_like(state.heads, requires_grad=True)
    proposals = torch.zeros_like(state.jacobian, requires_grad=True)
    state, out = engine.step(game, state, (head_updates, proposals))
    assert out.losses.requires_grad and state.trunk.requires_grad  # the losses keep their graph ...
    assert not out.head_grads.requires_grad and not out.jacobian.requires_grad  # ... the gradients do not
    out.losses.sum().backward()
    torch.testing.assert_close(head_updates.grad, out.head_grads)  # dℓ/du at u = 0 is the gradient itself


def test_a_solver_backed_rule_refuses_a_differentiable_unroll() -> None:
    game = make_game("quadratic", "step_size", rule="upgrad")
    state, _ = engine.reset(game, [0])
    log_step = torch.full((1, 3, 2), -2.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="consensus rule 'upgrad' is not differentiable"):
        engine.step(game, state, log_step)
    engine.step(game, state, log_step.detach())  # without grad it plays


def test_engine_leaves_torch_global_rng_alone_and_randomized_rules_follow_the_seed() -> None:
    game = make_game("quadratic", "step_size", rule="pcgrad")
    before = torch.get_rng_state()
    first = play(game, [1, 2, 3], 4)[-1]
    assert torch.equal(torch.get_rng_state(), before)
    again = play(game, [9, 2], 4)[-1]
    assert torch.equal(first.trunk[1], again.trunk[1])  # game with seed 2: the same draws wherever it sits


def test_stateful_rules_keep_one_state_per_game_and_fresh_state_on_reset() -> None:
    game = make_game("quadratic", "step_size", rule="nash_mtl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mtg_env.ConsensusWarning)  # a failed solve is counted, not the point here
        state = play(game, [0, 1], 3)[-1]
    assert state.rule_state["nash_step"].tolist() == [3, 3] and state.rule_objects == ()
    assert not torch.equal(state.rule_state["nash_alpha"][0], state.rule_state["nash_alpha"][1])
    merged, out = engine.reset_where(game, state, torch.tensor([False, True]))
    assert out is not None and merged.episodes.tolist() == [0, 1]
    assert merged.rule_state["nash_step"].tolist() == [3, 0]  # game 1 starts again; game 0 keeps its warm start
    assert torch.equal(merged.rule_state["nash_alpha"][0], state.rule_state["nash_alpha"][0])
    assert merged.rule_state["nash_alpha"][1].tolist() == [1.0, 1.0, 1.0]
    assert state.rule_state["nash_step"].tolist() == [3, 3]  # the state given is never modified


def test_counter_rng_is_uniform_and_each_number_depends_only_on_its_game() -> None:
    rng = GameRNG.from_seeds(list(range(4000)))
    u = rng.uniform(5, 64)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert float(u.mean()) == pytest.approx(0.5, abs=0.003) and float(u.var()) == pytest.approx(1 / 12, abs=0.002)
    z = rng.normal(5, 64)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.01) and float(z.std()) == pytest.approx(1.0, abs=0.01)
    ints = rng.integers(5, 64, torch.tensor(7))
    assert set(ints.unique().tolist()) == set(range(7))
    counts = torch.bincount(ints.flatten(), minlength=7).double()
    assert float(counts.max() / counts.min()) < 1.05  # 256 000 draws: uniform to a few per cent
    assert torch.equal(GameRNG.from_seeds([17]).uniform(5, 64)[0], u[17])
    assert not torch.equal(rng.uniform(6, 64), u)  # another stream, other numbers
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63\)"):
        mtg_env.parallel_env(suite="quadratic").reset(seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        mtg_env.parallel_env(suite="quadratic").reset(seed=1.5)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- issue 20: a pure engine
class Counting:
    """A consensus callable of one's own that keeps state on itself (``reset()``): its move depends on its count."""

    loss_aware = True

    def __init__(self) -> None:
        self.calls = 0

    refuse: float | None = None
    """A loss the rule refuses (a class attribute, so that it reaches the engine's copies)."""

    def __call__(self, p: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        if self.refuse is not None and bool((losses == self.refuse).any()):
            task = int((losses == self.refuse).nonzero()[0])
            raise ValueError(f"Counting refuses the loss {self.refuse} of task_{task}")
        self.calls += 1
        return p.mean(0) * (1.0 + 0.1 * self.calls)

    def reset(self) -> None:
        self.calls = 0


STATEFUL = [*sorted(LOSS_RULES), "nash_mtl", "famo+adam", "counting"]


def stateful_game(name: str) -> Game:
    suite = make_suite("regression", dtype="float64", device=DEVICE, **SUITES["regression"])
    if name == "counting":
        return Game(suite, Counting(), action_mode="step_size")
    if name == "famo+adam":
        adam = optimizer_spec("adam", {"lr": 0.01})
        return Game(suite, consensus_rule("famo"), action_mode="step_size", trunk_optimizer=adam, head_optimizer=adam)
    return Game(suite, consensus_rule(name, num_tasks=suite.num_tasks), action_mode="step_size")


def assert_same_step(a: tuple[engine.GameState, engine.StepOutput], b: tuple[engine.GameState, engine.StepOutput]):
    (sa, oa), (sb, ob) = a, b
    for field in ("losses", "head_grads", "jacobian", "features", "rewards", "diverged", "truncated"):
        assert torch.equal(getattr(oa, field), getattr(ob, field)), field
    ta, tb = sa.tensors(), sb.tensors()
    assert ta.keys() == tb.keys()
    for key, value in ta.items():
        assert torch.equal(value, tb[key]), key


@pytest.mark.parametrize("name", STATEFUL)
def test_stepping_one_state_twice_plays_the_same_step(name: str) -> None:
    """The state in is never modified, the rule's state and the optimizers' included: one state stepped twice gives
    the same step, and so does every step after it."""
    game = stateful_game(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mtg_env.ConsensusWarning)  # Nash-MTL's solver may miss: it must miss alike
        state = play(game, [3, 4], 3)[-1]
        before = {k: v.clone() for k, v in state.tensors().items()}
        actions = torch.full((2, game.num_tasks, 2), -2.0, dtype=torch.float64)
        first, second = engine.step(game, state, actions), engine.step(game, state, actions)
        assert_same_step(first, second)
        for key, value in state.tensors().items():
            assert torch.equal(value, before[key]), f"{key} of the state given was modified"
        assert_same_step(engine.step(game, first[0], actions), engine.step(game, second[0], actions))


def test_a_refused_vector_step_changes_no_game_and_names_the_game_and_task() -> None:
    """A rule that refuses game 1 of 3 mid-step: the step raises naming the game and the task, and every game (the
    rule's state in game 0, which the rule had already moved, included) goes on as if the step was never tried."""
    config: dict[str, Any] = {"suite": "regression", "action_mode": "step_size", "max_cycles": 50}
    venv, twin = (
        mtg_env.vector_env(3, consensus=Counting(), **config),
        mtg_env.vector_env(3, consensus=Counting(), **config),
    )
    venv.reset(seed=5)
    twin.reset(seed=5)
    actions = torch.full((3, 3, 2), -0.3)
    for _ in range(2):
        venv.step(actions)
        twin.step(actions)
    before = {k: v.clone() for k, v in venv.state.tensors().items()}
    Counting.refuse = float(venv.state.losses[1, 2])  # the rule refuses task_2's loss of game 1
    try:
        with pytest.raises(ValueError, match=r"game 1\b.*task_2"):
            venv.step(actions)
    finally:
        Counting.refuse = None
    for key, value in venv.state.tensors().items():
        assert torch.equal(value, before[key]), key
    for t in range(4):
        got, want = venv.step(actions), twin.step(actions)
        assert torch.equal(got[1], want[1]), f"rewards differ {t + 1} steps after the refused one"


def test_copying_a_stateful_callable_each_step_leaks_no_reference_to_none() -> None:
    """The engine copies a stateful callable at every step. ``copy.deepcopy`` of the ``torch.Generator`` it holds went
    through torch's ``__reduce_ex__``, which drops a reference to ``None`` per call (torch 2.13): the 100 000-step toy
    replay ran None's count to zero and Python aborted. 300 steps must leave the count where it was."""
    import sys

    class Seeded:
        batched = True

        def __init__(self) -> None:
            self.generator = torch.Generator().manual_seed(0)
            self.calls = 0

        def reset(self) -> None:
            self.calls = 0

        def __call__(self, proposals: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return proposals.mean(1)

    suite = make_suite("toy2d", dtype="float64", start=None)
    game = Game(suite, Seeded(), action_mode="update", horizon=10_000, divergence_threshold=None)
    state, _ = engine.reset(game, [0, 1])
    step = (torch.zeros(2, 0, dtype=torch.float64), torch.zeros(2, 2, 2, dtype=torch.float64))
    state, _ = engine.step(game, state, step)
    before = sys.getrefcount(None)
    for _ in range(300):
        state, _ = engine.step(game, state, step)
    assert sys.getrefcount(None) - before > -30, "each step dropped a reference to None"


@pytest.mark.parametrize("bad", ["nan", "inf", "overflow"])
@pytest.mark.parametrize("rule", sorted(mtg_env.consensus.RULE_TABLE))
def test_a_diverging_game_under_any_rule_leaves_the_batch_playing(rule: str, bad: str) -> None:
    # A diverging game's proposals are not finite, or finite but so long that their norms overflow (a game stepped on
    # after it diverged): that game is done, and the batch's other games step on as lone games. Solver-backed rules
    # (MGDA's Gram, CAGrad's and IMTL-G's SVD, Aligned-MTL's eigh) used to raise there and stop every game of the
    # batch: a sealed cell or a meta-training run under `mgda` crashed on one diverging game.
    game = make_game("regression", "update", rule=rule)
    state, _ = engine.reset(game, [3, 4])
    lone, _ = engine.reset(game, [3])
    heads, props = -0.05 * state.head_grads, -0.05 * state.jacobian
    props[1] = {"nan": float("nan"), "inf": float("inf"), "overflow": 1e200}[bad]  # every player's: no finite move
    after, out = engine.step(game, state, (heads, props))
    alone, _ = engine.step(game, lone, (heads[:1], props[:1]))
    if bad != "overflow":  # a rule may answer huge finite rows with a finite move (FairGrad's weights shrink)
        assert out.diverged.tolist() == [False, True]
        assert after.done.tolist() == [False, True]
    assert not bool(out.diverged[0])
    torch.testing.assert_close(after.trunk[0], alone.trunk[0], rtol=0, atol=0)
    torch.testing.assert_close(after.heads[0], alone.heads[0], rtol=0, atol=0)
