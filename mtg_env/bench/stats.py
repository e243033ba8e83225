"""Aggregate statistics of a benchmark (rliable's and AlgoPerf's, in vectorised numpy).

Scores are arrays ``[runs, tasks]`` (higher is better): runs are seeds, tasks the strata (workloads). The
bootstrap is *stratified*: each replicate resamples the runs of every task separately, with replacement, so
every task keeps its weight (Agarwal et al. 2021). All replicates are drawn at once from one seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""A statistic of flattened scores along the last axis: ``[..., k] -> [...]``."""


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean of the middle 50 % (``scipy.stats.trim_mean(x, 0.25)``:
    ⌊k/4⌋ values cut from each end)."""
    x = np.sort(np.asarray(scores, dtype=np.float64), axis=-1)
    k = x.shape[-1]
    cut = int(0.25 * k)
    return x[..., cut : k - cut].mean(axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
    """Mean along the last axis."""
    return np.asarray(scores, dtype=np.float64).mean(axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    """Median along the last axis."""
    return np.median(np.asarray(scores, dtype=np.float64), axis=-1)


def _check(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array [runs, tasks] with at least one of each, got shape {x.shape}")
    return x


def stratified_resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, runs, tasks]``: each replicate resamples the runs of every task with replacement."""
    x = _check(scores)
    runs, tasks = x.shape
    index = rng.integers(0, runs, size=(reps, runs, tasks))
    return x[index, np.arange(tasks)]


def bootstrap_ci(
    scores: np.ndarray, statistic: Statistic = iqm, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(point, low, high)``: the statistic of all scores and its stratified percentile-bootstrap CI.

    Args:
        scores: ``[runs, tasks]``.
        statistic: Of the flattened scores (default :func:`iqm`).
        reps: Bootstrap replicates.
        level: Coverage of the interval.
        seed: Seed of the resampling.
    """
    x = _check(scores)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be an int >= 1, got {reps!r}")
    sample = stratified_resample(x, reps, np.random.default_rng(seed))
    stats = statistic(sample.reshape(reps, -1))
    tail = 50 * (1 - level)
    low, high = np.nanpercentile(stats, [tail, 100 - tail])
    return float(statistic(x.reshape(1, -1))[0]), float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the mean over tasks of P(x_i > y_j) + ½ P(x_i = y_j) for runs i of X and j of Y (the
    Mann-Whitney U statistic, normalised), as rliable defines it. ``x [runs_x, tasks]``, ``y [runs_y, tasks]``."""
    return float(_poi(_check(x, "x")[None], _check(y, "y")[None])[0])


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched over a leading replicate axis: ``x [R, n, T]``, ``y [R, m, T]`` -> ``[R]``."""
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y must have the same tasks, got {x.shape[2]} and {y.shape[2]}")
    greater = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    equal = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (greater + 0.5 * equal).mean(axis=1)


def probability_of_improvement_ci(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(point, low, high)`` of :func:`probability_of_improvement`, both samples stratified-bootstrapped."""
    x, y = _check(x, "x"), _check(y, "y")
    rng = np.random.default_rng(seed)
    stats = _poi(stratified_resample(x, reps, rng), stratified_resample(y, reps, rng))
    tail = 50 * (1 - level)
    low, high = np.percentile(stats, [tail, 100 - tail])
    return probability_of_improvement(x, y), float(low), float(high)


def performance_ratios(times: np.ndarray, tau_max: float = 4.0) -> np.ndarray:
    """``[policies, problems]`` ratios of each policy's time to the best policy's on each problem (AlgoPerf):
    +inf where the policy missed (time +inf), where no policy reached the target, or where the ratio exceeds
    ``tau_max``."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"times must be [policies, problems], got shape {t.shape}")
    if np.any(np.isnan(t)) or np.any(t <= 0):
        raise ValueError("times must be > 0 (+inf for a miss), without NaN")
    best = t.min(axis=0)
    with np.errstate(invalid="ignore"):
        ratios = np.where(np.isfinite(best), t / best, np.inf)
    return np.where(ratios <= tau_max, ratios, np.inf)


def performance_profile(times: np.ndarray, taus: np.ndarray, tau_max: float = 4.0) -> np.ndarray:
    """ρ_p(τ): ``[policies, len(taus)]`` the fraction of problems on which policy p is within τ of the best."""
    ratios = performance_ratios(times, tau_max)
    return (ratios[:, None, :] <= np.asarray(taus, dtype=np.float64)[None, :, None]).mean(axis=2)


def integrated_profile(times: np.ndarray, tau_max: float = 4.0) -> np.ndarray:
    """``[policies]`` the area under ρ_p(τ) for τ in [1, τ_max], divided by τ_max − 1 (AlgoPerf's benchmark
    score: 1 when a policy is the fastest on every problem, 0 when it is never within τ_max of the best).

    ρ_p is a step function, so the integral is exact: Σ_problems (τ_max − r)₊ / (problems · (τ_max − 1)).
    """
    if not tau_max > 1:
        raise ValueError(f"tau_max must be > 1, got {tau_max}")
    ratios = performance_ratios(times, tau_max)
    return np.where(np.isfinite(ratios), tau_max - ratios, 0.0).mean(axis=1) / (tau_max - 1.0)
