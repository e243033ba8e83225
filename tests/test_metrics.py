"""Metrics against independent closed forms (float64), and their place in the env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env.metrics import game_metrics, lyapunov
from mtg_env.suites import QuadraticSuite, RegressionSuite
from tests.conftest import steps_action


def quadratic_by_hand(suite: QuadraticSuite, heads: torch.Tensor, trunk: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-task gradient blocks and exact gaps of ℓ_m = ½ zᵀAz − bᵀz, in numpy."""
    grads_h, grads_t, gaps = [], [], []
    for m, theta in enumerate(heads.view(suite.num_tasks, -1)):
        a, b = suite._A64[m].numpy(), suite._b64[m].numpy()
        h = theta.numel()
        z = np.concatenate([theta.numpy(), trunk.numpy()])
        g = a @ z - b
        grads_h.append(g[:h])
        grads_t.append(g[h:])
        best = np.linalg.solve(a[:h, :h], b[:h] - a[:h, h:] @ trunk.numpy())
        zb = np.concatenate([best, trunk.numpy()])
        gaps.append((0.5 * z @ a @ z - b @ z) - (0.5 * zb @ a @ zb - b @ zb))
    return {"head": np.asarray(grads_h), "trunk": np.asarray(grads_t), "gap": np.asarray(gaps)}


def test_quadratic_metrics_match_closed_forms() -> None:
    suite = QuadraticSuite(num_tasks=3, head_dim=2, trunk_dim=3, condition=20.0, dtype="float64")
    g = torch.Generator().manual_seed(0)
    heads = torch.randn(6, generator=g, dtype=torch.float64)
    trunk = torch.randn(3, generator=g, dtype=torch.float64)
    metrics = game_metrics(suite, heads, trunk, mtg_env.consensus_rule("sum"))
    ref = quadratic_by_hand(suite, heads, trunk)
    np.testing.assert_allclose(metrics["nash_gap"], ref["gap"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(metrics["stationarity"], np.linalg.norm(ref["head"], axis=1), rtol=1e-10)
    assert metrics["consensus_residual"] == pytest.approx(np.linalg.norm(ref["trunk"].sum(0)), rel=1e-10)
    h_star, t_star = suite.equilibrium()
    v = float(((heads - h_star) ** 2).sum() + ((trunk - t_star) ** 2).sum())
    assert metrics["lyapunov"] == pytest.approx(v, rel=1e-12)
    assert metrics["distance"] == pytest.approx(v**0.5, rel=1e-12)
    assert metrics["nash_gap_exact"] is True
    assert metrics["nash_gap_total"] == pytest.approx(ref["gap"].sum(), rel=1e-8)


def test_every_metric_vanishes_at_the_equilibrium() -> None:
    suite = QuadraticSuite(num_tasks=3, head_dim=2, trunk_dim=2, dtype="float64")
    h_star, t_star = suite.equilibrium()
    metrics = game_metrics(suite, h_star, t_star, mtg_env.consensus_rule("mean"))
    assert max(metrics["nash_gap"]) < 1e-24 and max(metrics["stationarity"]) < 1e-12
    assert metrics["consensus_residual"] < 1e-12 and metrics["lyapunov"] == 0.0
    # Pareto stationarity need not vanish: the equilibrium of the game is not a Pareto-stationary point
    # of the trunk in general (the tasks' trunk gradients sum to zero, so 0 is in their hull: here it is).
    assert metrics["pareto_stationarity"] < 1e-10


def test_regression_held_out_gap_is_least_squares_on_the_test_split() -> None:
    suite = RegressionSuite(trunk="mlp", hidden=8, dtype="float64")
    heads, trunk = suite.params_for_seed(0)
    metrics = game_metrics(suite, heads, trunk, mtg_env.consensus_rule("sum"), split="eval")
    x, y, _ = suite.eval_batch()
    feats = suite.features(trunk, x).numpy()
    for m in range(suite.num_tasks):
        design = np.hstack([feats[m], np.ones((feats.shape[1], 1))])
        sol, *_ = np.linalg.lstsq(design, y[m].numpy(), rcond=None)
        head = heads.view(suite.num_tasks, -1)[m].numpy()
        gap = np.mean((design @ head - y[m].numpy()) ** 2) - np.mean((design @ sol - y[m].numpy()) ** 2)
        assert metrics["nash_gap"][m] == pytest.approx(gap, rel=1e-8, abs=1e-12)
    train = suite.nash_gaps(heads, trunk, "train").tolist()
    assert train != metrics["nash_gap"]  # the held-out gap is its own number


def test_lyapunov_is_eq_28() -> None:
    h, t = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5])
    assert lyapunov(h, t, torch.zeros(3), torch.ones(1)) == pytest.approx(1 + 4 + 9 + 0.25)


class NoBestResponse(QuadraticSuite):
    """A quadratic game that hides its closed form: the env must approximate the gap."""

    exact_best_response = False
    cheap_nash_gap = False

    def best_response(self, heads, trunk, split="train"):  # type: ignore[no-untyped-def, override]
        return None

    def nash_gaps(self, heads, trunk, split="train"):  # type: ignore[no-untyped-def, override]
        return mtg_env.TaskSuite.nash_gaps(self, heads, trunk, split)


def test_approximate_gap_for_a_suite_without_best_response() -> None:
    exact = QuadraticSuite(num_tasks=2, head_dim=3, trunk_dim=2, dtype="float64")
    hidden = NoBestResponse(num_tasks=2, head_dim=3, trunk_dim=2, dtype="float64")
    heads, trunk = exact.params_for_seed(4)
    approx = game_metrics(hidden, heads, trunk, mtg_env.consensus_rule("sum"))
    assert approx["nash_gap_exact"] is False
    np.testing.assert_allclose(approx["nash_gap"], exact.nash_gaps(heads, trunk).numpy(), rtol=1e-6)


def test_env_metrics_and_metrics_every() -> None:
    env = mtg_env.parallel_env(
        suite="quadratic", dtype="float64", metrics_every=3, action_mode="step_size", numeric_infos=False
    )
    _, infos = env.reset(seed=0)
    assert "metrics" in infos["task_0"]
    for t in range(1, 7):
        _, _, _, _, infos = env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})
        assert ("metrics" in infos["task_1"]) == (t % 3 == 0), t
    m = infos["task_1"]["metrics"]
    assert {"nash_gap", "stationarity", "loss", "consensus_residual", "lyapunov", "pareto_stationarity"} <= set(m)
    assert m["nash_gap"] == pytest.approx(infos["task_1"]["nash_gap"], rel=1e-12)
    full = env.metrics()
    assert set(full) == {"agents", "game"} and set(full["agents"]) == set(env.possible_agents)


@pytest.mark.parametrize("consensus", ["random", "nash_mtl", "upgrad"])
def test_measuring_does_not_change_the_game(consensus: str) -> None:
    def play(metrics_every: int) -> list[dict[str, float]]:
        env = mtg_env.parallel_env(  # trunk_dim 4 > 3 tasks: Nash-MTL needs independent trunk gradients
            suite="quadratic",
            trunk_dim=4,
            consensus=consensus,
            metrics_every=metrics_every,
            numeric_infos=False,
            action_mode="step_size",
            max_cycles=8,
        )
        env.reset(seed=0)
        out = []
        while env.agents:
            out.append(env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})[1])
        return out

    assert play(0) == play(1)  # randomized and stateful rules are measured on a copy
