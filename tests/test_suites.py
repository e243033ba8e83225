"""Suites: closed forms checked against independent computations, data, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtg_env
from mtg_env.engine import losses_and_grads
from mtg_env.suites import DigitsSuite, QuadraticSuite, RegressionSuite


# ------------------------------------------------------------------------------ quadratic
def test_quadratic_equilibrium_is_stationary_and_minimises_l_mt() -> None:
    suite = QuadraticSuite(num_tasks=4, head_dim=3, trunk_dim=2, condition=50.0, dtype="float64")
    heads, trunk = suite.equilibrium()
    losses, head_grads, jac = (x[0] for x in losses_and_grads(suite, heads[None], trunk[None], None))
    assert head_grads.abs().max() < 1e-12  # ∇_{Θ_m} ℓ_m = 0 for every m (Eq. 19)
    assert jac.sum(0).abs().max() < 1e-12  # Σ_m ∇_Ψ ℓ_m = 0: the fixed point of sum and mean consensus
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # L_MT is strictly convex: every perturbation raises it
        dh = torch.randn(heads.shape, generator=g, dtype=torch.float64) * 1e-3
        dt = torch.randn(trunk.shape, generator=g, dtype=torch.float64) * 1e-3
        assert suite.losses(heads + dh, trunk + dt).sum() > losses.sum()


def test_quadratic_user_game_matches_its_formula_and_closed_forms() -> None:
    # Two tasks, head sizes 1 and 2, trunk 1: ℓ_m = ½ zᵀ A_m z − b_mᵀ z, z = [Θ_m; Ψ].
    A = [np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([[3.0, 0.0, 1.0], [0.0, 1.0, 0.2], [1.0, 0.2, 2.0]])]
    b = [np.array([1.0, -1.0]), np.array([0.5, 0.0, 2.0])]
    suite = QuadraticSuite(A=A, b=b, trunk_dim=1, dtype="float64")
    assert suite.head_sizes == (1, 2) and suite.trunk_size == 1
    heads, trunk = torch.tensor([0.3, -0.2, 0.7], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    z0, z1 = np.array([0.3, 1.5]), np.array([-0.2, 0.7, 1.5])
    expected = [0.5 * z0 @ A[0] @ z0 - b[0] @ z0, 0.5 * z1 @ A[1] @ z1 - b[1] @ z1]
    np.testing.assert_allclose(suite.losses(heads, trunk).numpy(), expected, rtol=1e-14)
    # Best response: argmin over the head with the trunk fixed, by brute-force linear algebra.
    best = suite.best_response(heads, trunk).numpy()
    np.testing.assert_allclose(best[:1], np.linalg.solve(A[0][:1, :1], b[0][:1] - A[0][:1, 1:] @ [1.5]))
    np.testing.assert_allclose(best[1:], np.linalg.solve(A[1][:2, :2], b[1][:2] - A[1][:2, 2:] @ [1.5]))
    # Gap = ℓ(current) − ℓ(best response), and it is ≥ 0.
    gaps = suite.nash_gaps(heads, trunk).numpy()
    direct = suite.losses(heads, trunk).numpy() - suite.losses(torch.from_numpy(best), trunk).numpy()
    np.testing.assert_allclose(gaps, direct, rtol=1e-10, atol=1e-14)
    assert (gaps > 0).all()
    # Equilibrium: solve the stationarity system by hand.
    K = np.array([[2.0, 0.0, 0.0, 0.5], [0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.2], [0.5, 1.0, 0.2, 3.0]])
    c = np.array([1.0, 0.5, 0.0, 1.0])
    h_star, t_star = suite.equilibrium()
    np.testing.assert_allclose(torch.cat([h_star, t_star]).numpy(), np.linalg.solve(K, c), rtol=1e-12)


@pytest.mark.parametrize(
    ("A", "b", "message"),
    [
        ([[[1.0, 2.0], [0.0, 1.0]]], [[0.0, 0.0]], "must be symmetric"),
        ([[[1.0, 0.0], [0.0, -1.0]]], [[0.0, 0.0]], "must be positive definite"),
        ([[[1.0, 0.0], [0.0, 1.0]]], [[0.0, 0.0, 0.0]], r"b\[0\] must have shape \(2,\)"),
        ([[[1.0, 0.0], [0.0, 1.0]]], [], "same number"),
        ([[[1.0]]], [[0.0]], r"size head_dim \+ trunk_dim >= 2"),
    ],
)
def test_quadratic_user_game_validation(A, b, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QuadraticSuite(A=A, b=b, trunk_dim=1 if message != r"size head_dim \+ trunk_dim >= 2" else 2)


def test_quadratic_needs_all_three_user_arguments() -> None:
    with pytest.raises(ValueError, match="needs all of A"):
        QuadraticSuite(A=[np.eye(2)], trunk_dim=1)


def test_quadratic_random_game_is_fixed_by_game_seed_and_has_the_asked_conditioning() -> None:
    s1, s2 = QuadraticSuite(condition=30.0, game_seed=4), QuadraticSuite(condition=30.0, game_seed=4)
    s3 = QuadraticSuite(condition=30.0, game_seed=5)
    assert all(torch.equal(a, b) for a, b in zip(s1._A64, s2._A64, strict=True))
    assert not torch.equal(s1._A64[0], s3._A64[0])
    eig = torch.linalg.eigvalsh(s1._A64[0])
    assert eig[-1] / eig[0] == pytest.approx(30.0, rel=1e-9)


# ----------------------------------------------------------------------------- regression
def test_regression_best_response_and_gap_match_numpy_least_squares() -> None:
    suite = RegressionSuite(num_tasks=3, trunk="mlp", hidden=8, dtype="float64", task_sizes=(50, 30, 20))
    heads, trunk = suite.params_for_seed(0)
    gaps = suite.nash_gaps(heads, trunk).numpy()
    x, y, _w = suite.train_batch()
    f = suite.features(trunk, x).numpy()
    for m, n_m in enumerate((50, 30, 20)):
        design = np.hstack([f[m, :n_m], np.ones((n_m, 1))])
        target = y[m, :n_m].numpy()
        sol, *_ = np.linalg.lstsq(design, target, rcond=None)
        head = heads.view(3, -1)[m].numpy()
        gap = np.mean((design @ head - target) ** 2) - np.mean((design @ sol - target) ** 2)
        assert gaps[m] == pytest.approx(gap, rel=1e-8, abs=1e-12)
        np.testing.assert_allclose(suite.best_response(heads, trunk).view(3, -1)[m].numpy(), sol, rtol=1e-7)


def test_regression_relatedness_one_means_identical_teachers() -> None:
    same = RegressionSuite(relatedness=1.0)
    assert torch.allclose(same.teacher[0], same.teacher[1])
    unrelated = RegressionSuite(relatedness=0.0)
    cos = torch.nn.functional.cosine_similarity(unrelated.teacher[0], unrelated.teacher[1], dim=0)
    assert abs(cos.item()) < 0.9


def test_regression_batches_come_from_each_tasks_own_samples() -> None:
    suite = RegressionSuite(task_sizes=(40, 10, 5), batch_size=500, dtype="float64")
    x, _y, w = (t[0] if t.dim() == 4 else t for t in suite.batch_for_seed(0))
    x_train, _y_train, _ = suite.train_batch()
    for m, n_m in enumerate((40, 10, 5)):
        drawn = {tuple(row) for row in x[m].tolist()}
        own = {tuple(row) for row in x_train[m, :n_m].tolist()}
        assert drawn == own, f"task {m} drew outside its {n_m} samples"
    assert torch.allclose(w.sum(1), torch.ones(3, dtype=torch.float64))


def test_regression_validation() -> None:
    with pytest.raises(ValueError, match=r"relatedness must be a finite number in \[0.0, 1.0\]"):
        RegressionSuite(relatedness=1.5)
    with pytest.raises(ValueError, match="task_sizes must list 3"):
        RegressionSuite(task_sizes=(10, 10))


# --------------------------------------------------------------------------------- digits
def test_digits_data_split_and_targets() -> None:
    suite = DigitsSuite()
    x, labels, ink = suite.train_batch()
    assert x.min() >= 0 and x.max() <= 1 and x.shape[1] == 64
    assert len(labels) + len(suite._test[1]) == 1797
    assert torch.equal(labels[:, 1], labels[:, 0] % 2) and torch.equal(labels[:, 2], (labels[:, 0] >= 5).long())
    assert abs(ink.mean().item()) < 1e-5 and ink.std().item() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(  # ink is the standardised mean intensity of the very same images
        np.corrcoef(x.mean(1).numpy(), ink.numpy())[0, 1], 1.0, rtol=1e-6
    )
    again = DigitsSuite()
    assert torch.equal(again.train_batch()[1], labels)  # a fixed split


def test_digits_heads_are_linear_maps_of_trunk_features() -> None:
    suite = DigitsSuite(dtype="float64")
    heads, trunk = suite.params_for_seed(0)
    x = suite.train_batch()[0][:5]
    feats = suite.features(trunk, x)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU())
    net = net.double()
    torch.nn.utils.vector_to_parameters(trunk, net.parameters())
    torch.testing.assert_close(feats, net(x))
    outs = suite.outputs(heads, trunk, x)
    head0 = heads[:650].view(10, 65)
    torch.testing.assert_close(outs[0], feats @ head0[:, :64].T + head0[:, 64])
    assert [o.shape[1] for o in outs] == [10, 2, 2, 1]


def test_digits_best_response_has_zero_gap_and_lowers_every_loss() -> None:
    suite = DigitsSuite(hidden=(16, 8), dtype="float64")
    heads, trunk = suite.params_for_seed(1)
    gaps = suite.nash_gaps(heads, trunk)
    assert (gaps > 0).all()
    best = suite.best_response(heads, trunk)
    assert suite.nash_gaps(best, trunk).max() < 1e-6  # a best response cannot be improved on
    full = suite.train_batch()
    assert (suite.losses(best, trunk, full) < suite.losses(heads, trunk, full)).all()


def test_every_suite_builds_on_the_requested_dtype() -> None:
    for name in mtg_env.SUITES:
        suite = mtg_env.make_suite(name, dtype="float64")
        heads, trunk = suite.params_for_seed(0)
        assert heads.dtype == trunk.dtype == torch.float64
        assert suite.batched_losses(heads[None], trunk[None], suite.batch_for_seed(0)).dtype == torch.float64


def test_digits_regression_gap_is_exact_and_repeatable_with_dead_units() -> None:
    # Dead ReLU units make the features rank-deficient; LAPACK's default gelsy driver was seen to give
    # different, wrong answers there from run to run. The gap must match an SVD least-squares solve.
    suite = DigitsSuite(hidden=(32, 16), dtype="float64")
    heads, trunk = suite.params_for_seed(2)
    trunk = trunk.clone()
    w2_start = 32 * 64 + 32
    trunk[w2_start : w2_start + 16 * 4] = -1.0  # first 4 units of the last layer: weights < 0 ...
    trunk[w2_start + 16 * 32 : w2_start + 16 * 32 + 4] = -10.0  # ... and biases < 0: always off
    x, _, ink = suite.train_batch()
    feats = suite.features(trunk, x).numpy()
    assert (feats[:, :4] == 0).all()
    design = np.hstack([feats, np.ones((len(feats), 1))])
    sol, *_ = np.linalg.lstsq(design, ink.numpy(), rcond=None)
    head = heads[-17:].numpy()
    expected = np.mean((design @ head - ink.numpy()) ** 2) - np.mean((design @ sol - ink.numpy()) ** 2)
    gaps = [suite.nash_gaps(heads, trunk)[3].item() for _ in range(2)]
    assert gaps[0] == gaps[1]
    assert gaps[0] == pytest.approx(expected, rel=1e-9)


def test_quadratic_with_empty_heads_is_a_pure_trunk_game() -> None:
    env = mtg_env.parallel_env(
        suite="quadratic", head_dim=0, trunk_dim=3, dtype="float64", max_cycles=400, update_units="raw"
    )  # raw: the actions below are the updates
    obs, infos = env.reset(seed=0)
    assert env.head_size("task_0") == 0 and infos["task_0"]["nash_gap"] == 0.0
    while env.agents:
        obs, *_ = env.step({a: np.clip(-0.05 * obs[a][:3], -1, 1) for a in env.agents})
    _, trunk = env.get_parameters()
    assert torch.allclose(trunk, env.suite.equilibrium()[1], atol=1e-8)


def test_digits_reads_the_file_scikit_learn_ships_exactly_as_load_digits() -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from mtg_env.suites.digits import load_digits_arrays

    pixels, digits = load_digits_arrays()
    reference = load_digits()
    np.testing.assert_array_equal(pixels, reference.data)
    np.testing.assert_array_equal(digits, reference.target)
    # and without importing scikit-learn (its import is most of the main job's start-up)
    code = "import sys; from mtg_env.suites.digits import DigitsSuite; DigitsSuite(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
