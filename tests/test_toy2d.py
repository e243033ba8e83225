"""The toy2d suite: the published formulas, empty heads, the Pareto set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env.metrics import pareto_stationarity
from mtg_env.suites.toy2d import (
    CAGRAD_STARTS,
    PARETO_X2,
    STANDARD_STARTS,
    START_SETS,
    Toy2DSuite,
    distance_to_pareto_set,
    toy_losses,
)


def reference(x1: float, x2: float) -> tuple[float, float]:
    """The formulas as printed, in plain floats."""
    lower = 5e-6
    c1 = max(math.tanh(x2 / 2), 0.0)
    c2 = max(math.tanh(-x2 / 2), 0.0)
    f1 = c1 * (math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), lower)) + 6) + c2 * (
        ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    )
    f2 = c1 * (math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), lower)) + 6) + c2 * (
        ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    )
    return f1, f2


@pytest.mark.parametrize("point", [*STANDARD_STARTS, (3.0, -8.3552), (-2.0, 4.0), (6.5, 0.3)])
def test_losses_match_the_published_formulas(point: tuple[float, float]) -> None:
    got = toy_losses(torch.tensor(point, dtype=torch.float64)).tolist()
    np.testing.assert_allclose(got, reference(*point), rtol=1e-12, atol=1e-12)


def test_pareto_set_is_pareto_stationary_and_other_points_are_not() -> None:
    for x1 in np.linspace(-6.5, 6.5, 7):
        x = torch.tensor([x1, PARETO_X2], dtype=torch.float64, requires_grad=True)
        jac = torch.autograd.functional.jacobian(toy_losses, x)
        assert pareto_stationarity(jac) < 1e-2, x1  # x2 = −8.3552 is printed to 4 decimals
    for point in STANDARD_STARTS:
        jac = torch.autograd.functional.jacobian(toy_losses, torch.tensor(point, dtype=torch.float64))
        assert pareto_stationarity(jac) > 5e-2, point
    assert distance_to_pareto_set(torch.tensor([0.0, PARETO_X2], dtype=torch.float64)) == pytest.approx(0.0)
    assert distance_to_pareto_set(torch.tensor([10.0, PARETO_X2], dtype=torch.float64)) == pytest.approx(3.0)


def test_env_with_empty_heads() -> None:
    env = mtg_env.parallel_env(suite="toy2d", start=2, dtype="float64", max_cycles=3)
    obs, _ = env.reset(seed=0)
    assert [env.head_size(a) for a in env.agents] == [0, 0] and env.trunk_size == 2
    assert env.action_space("task_0").shape == (2,)
    _, trunk = env.get_parameters()
    assert trunk.tolist() == [9.0, 9.0]
    # the observation begins with the agent's own trunk gradient (the head part is empty)
    jac = torch.autograd.functional.jacobian(toy_losses, trunk)
    np.testing.assert_allclose(obs["task_1"][:2], jac[1].numpy(), rtol=1e-12)
    env.step({a: np.clip(-0.1 * obs[a][:2], -1, 1) for a in env.agents})


def test_start_options() -> None:
    assert Toy2DSuite(start=(1.0, 2.0)).params_for_seed(0)[1].tolist() == [1.0, 2.0]
    points = torch.stack([Toy2DSuite().params_for_seed(s)[1] for s in range(50)])
    assert (points.abs() <= 10).all() and points.std(0).min() > 3  # uniform on [-10, 10]^2: std 5.8
    with pytest.raises(ValueError, match=r"start must be an int in \[0, 4\]"):
        Toy2DSuite(start=7)


@pytest.mark.parametrize("point", [*CAGRAD_STARTS, (3.0, -8.3552), (6.5, 0.3)])
def test_scale_multiplies_f1_as_nash_mtl_and_famo_do(point: tuple[float, float]) -> None:
    f1, f2 = reference(*point)
    x = torch.tensor(point, dtype=torch.float64)
    np.testing.assert_allclose(toy_losses(x, 0.1).tolist(), [0.1 * f1, f2], rtol=1e-12, atol=1e-12)
    suite = Toy2DSuite(start=point, scale=0.1, dtype="float64")
    env = mtg_env.parallel_env(suite=suite, max_cycles=2)
    _, infos = env.reset(seed=0)
    np.testing.assert_allclose([infos[a]["loss"] for a in env.agents], [0.1 * f1, f2], rtol=1e-12, atol=1e-12)
    assert suite.describe()["scale"] == 0.1


def test_scaled_toy_keeps_the_pareto_set_and_refuses_a_bad_scale() -> None:
    for x1 in np.linspace(-6.5, 6.5, 5):  # a positive factor on f1 changes no dominance
        jac = torch.autograd.functional.jacobian(lambda x: toy_losses(x, 0.1), torch.tensor([x1, PARETO_X2]).double())
        assert pareto_stationarity(jac) < 1e-2, x1
    for bad, error in (
        (0.0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("0.1", TypeError),
    ):
        with pytest.raises(
            error, match=r"scale must be a finite number > 0.0 \(the factor on f1, e.g. 0.1 for Nash-MTL\)"
        ):
            Toy2DSuite(scale=bad)  # type: ignore[arg-type]


def test_cagrad_starts_are_a_named_set_beside_the_five() -> None:
    assert START_SETS == {"standard": STANDARD_STARTS, "cagrad": CAGRAD_STARTS}
    assert CAGRAD_STARTS == ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))  # CAGrad's toy.py
    assert (-8.5, -5.0) not in STANDARD_STARTS
    env = mtg_env.parallel_env(suite="toy2d", start=CAGRAD_STARTS[1], dtype="float64", max_cycles=2)
    env.reset(seed=0)
    assert env.get_parameters()[1].tolist() == [-8.5, -5.0]
