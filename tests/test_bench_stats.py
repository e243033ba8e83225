"""The benchmark's statistics: IQM, the stratified bootstrap (its coverage), probability of improvement, profiles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.integrate import trapezoid

from mtg_env.bench import stats


def test_iqm_is_scipys_trimmed_mean() -> None:
    rng = np.random.default_rng(0)
    for k in (4, 7, 10, 41):
        x = rng.standard_cauchy(k)
        assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25), rel=1e-12)
    assert stats.iqm(np.array([0.0, 1.0, 2.0, 100.0])) == 1.5  # the outlier is cut


def test_the_stratified_bootstrap_keeps_every_task_and_resamples_within_it() -> None:
    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    sample = stats.stratified_resample(scores, 500, np.random.default_rng(1))
    assert sample.shape == (500, 3, 2)
    assert set(np.unique(sample[:, :, 0])) == {0.0, 1.0, 2.0}
    assert set(np.unique(sample[:, :, 1])) == {10.0, 11.0, 12.0}


def test_bootstrap_ci_covers_the_true_iqm_at_its_nominal_rate() -> None:
    # 400 seeded data sets of 10 runs x 5 tasks from a known mixture (task t ~ N(t, 1)); the population IQM of
    # the equal-weight mixture is its truth. Coverage of the 95 % CI within 3 binomial SE of 0.95:
    # SE = sqrt(0.95 * 0.05 / 400) = 0.011, so |coverage - 0.95| <= 0.033 (the percentile bootstrap of a
    # trimmed mean with 50 points runs slightly narrow; it must still be within 3 SE).
    tasks, runs, sims = 5, 10, 400
    grid = np.linspace(-6, 10, 400_001)
    cdf = np.mean([scipy_stats.norm.cdf(grid, loc=t) for t in range(tasks)], axis=0)
    pdf = np.mean([scipy_stats.norm.pdf(grid, loc=t) for t in range(tasks)], axis=0)
    q25, q75 = np.interp([0.25, 0.75], cdf, grid)
    inside = (grid >= q25) & (grid <= q75)
    truth = trapezoid(grid[inside] * pdf[inside], grid[inside]) / 0.5  # scipy's: numpy 1.24 has no np.trapezoid
    rng = np.random.default_rng(2024)
    covered = 0
    for i in range(sims):
        data = rng.normal(size=(runs, tasks)) + np.arange(tasks)
        _, low, high = stats.bootstrap_ci(data, stats.iqm, reps=1000, seed=i)
        covered += low <= truth <= high
    coverage = covered / sims
    assert abs(coverage - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / sims), coverage


def test_bootstrap_ci_of_a_constant_is_a_point_and_bad_input_is_refused() -> None:
    point, low, high = stats.bootstrap_ci(np.full((4, 3), 2.5), reps=50)
    assert point == low == high == 2.5
    with pytest.raises(ValueError, match=r"\[runs, tasks\]"):
        stats.bootstrap_ci(np.zeros(5))
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap_ci(np.zeros((2, 2)), level=1.5)
    with pytest.raises(ValueError, match="reps"):
        stats.bootstrap_ci(np.zeros((2, 2)), reps=True)  # type: ignore[arg-type]


def test_probability_of_improvement_is_the_normalised_mann_whitney_u() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.5, 1, size=(12, 3)), rng.normal(0.0, 1, size=(9, 3))
    expected = np.mean(
        [scipy_stats.mannwhitneyu(x[:, t], y[:, t]).statistic / (12 * 9) for t in range(3)]
    )  # U counts x > y (ties one half)
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected, rel=1e-12)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    assert stats.probability_of_improvement(x + 100, y) == 1.0
    point, low, high = stats.probability_of_improvement_ci(x, y, reps=500)
    assert low <= point <= high and point > 0.5


def test_performance_profile_and_its_integrated_score() -> None:
    # 3 policies x 4 problems; inf = missed the target.
    times = np.array([[10.0, 20.0, 5.0, np.inf], [20.0, 10.0, 25.0, 8.0], [np.inf, np.inf, np.inf, np.inf]])
    ratios = stats.performance_ratios(times)
    np.testing.assert_array_equal(ratios[0], [1.0, 2.0, 1.0, np.inf])
    np.testing.assert_array_equal(ratios[1], [2.0, 1.0, np.inf, 1.0])  # 25 / 5 = 5 > 4: capped to a miss
    rho = stats.performance_profile(times, np.array([1.0, 1.5, 2.0, 4.0]))
    np.testing.assert_array_equal(rho[0], [0.5, 0.5, 0.75, 0.75])
    np.testing.assert_array_equal(rho[2], [0.0, 0.0, 0.0, 0.0])
    # the exact area under a step function, against a fine Riemann sum
    taus = np.linspace(1, 4, 300_001)
    area = stats.performance_profile(times, taus).mean(axis=1)
    np.testing.assert_allclose(stats.integrated_profile(times), area, atol=1e-4)
    np.testing.assert_allclose(stats.integrated_profile(times), [(3 + 2 + 3) / 12, (2 + 3 + 3) / 12, 0.0])
    with pytest.raises(ValueError, match="> 0"):
        stats.performance_ratios(np.array([[0.0, 1.0]]))
