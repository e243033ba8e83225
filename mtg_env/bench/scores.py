"""From records to a leaderboard's numbers: scores, targets, aggregates with CIs, the manipulability table.

Scores (per held-out game, higher is better):
- *normalised score* (L₀ − L) / (L₀ − L*): L₀ the game's training loss at reset, L its final training loss
  (summed over tasks), L* the best yardstick's median final loss on the workload (the policies with
  ``role = "yardstick"``, by default the tuned baselines); 1 means "as good as the best yardstick", 0 "no
  progress". Clipped to [−1, 2]; a diverged game scores −1.
- *steps-to-target*: the first step at which the mean batch loss, smoothed by a trailing mean, reaches the
  workload's target, +inf for a miss or a divergence. The target is the *largest* of the yardsticks' median
  final smoothed losses (every yardstick reaches it in about half its games).
Aggregates: the IQM of normalised scores over every (seed, workload) with a stratified bootstrap 95 % CI;
per-suite IQMs; the probability of improvement of each policy over the reference; the performance profile
over workloads (median steps-to-target, ratio to the fastest capped at 4) and its integrated score.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from mtg_env.bench import stats
from mtg_env.bench.config import BenchConfig

CLIP = (-1.0, 2.0)
TAU_MAX = 4.0


def _num(x: Any) -> float:
    """A record's number ("inf" strings included) as a float; None as NaN."""
    if x is None:
        return math.nan
    return float(x)


def _total(values: list[Any] | None) -> float:
    if values is None:
        return math.inf
    total = float(sum(_num(v) for v in values))
    return total if math.isfinite(total) else math.inf


def _smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (shorter at the start)."""
    c = np.cumsum(np.where(np.isfinite(curve), curve, np.nan))
    out = np.empty_like(curve)
    for t in range(len(curve)):
        lo = max(0, t - window + 1)
        out[t] = (c[t] - (c[lo - 1] if lo > 0 else 0.0)) / (t - lo + 1)
    return np.where(np.isnan(out), np.inf, out)


def _steps_to(curve: np.ndarray, target: float) -> float:
    hit = np.nonzero(curve <= target)[0]
    return float(hit[0]) if hit.size and math.isfinite(target) else math.inf


def summarize(config: BenchConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the report, as plain data (``leaderboard.json``)."""
    policies = [p.name for p in config.policies]
    baselines = [p.name for p in config.policies if p.is_baseline]  # the yardsticks (BenchConfig needs one)
    reference = config.reference or policies[0]
    workloads = [w.name for w in config.workloads()]
    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    games: dict[tuple[str, str], list[dict[str, Any]]] = {}
    mixed: list[dict[str, Any]] = []
    for r in records:
        if r["kind"] == "tune":
            tuned[(r["policy"], r["workload"])] = r["result"]
        elif r["kind"] == "eval":
            games[(r["policy"], r["workload"])] = r["result"]["games"]
        else:
            mixed.append(r)
    seeds = list(config.protocol.eval_seeds)
    n_seeds, n_work = len(seeds), len(workloads)

    final = {key: np.array([_total(g["final_train_loss"]) for g in gs]) for key, gs in games.items()}
    start = {key: np.array([_total(g["initial_train_loss"]) for g in gs]) for key, gs in games.items()}
    best_loss = {}
    targets = {}
    for w in workloads:
        horizon = len(games[(policies[0], w)][0]["curve"]) - 1
        window = max(1, horizon // config.smoothing)
        medians = [float(np.median(final[(b, w)])) for b in baselines]
        best_loss[w] = min(medians)
        ends = []
        for b in baselines:
            ends.append(float(np.median([_smooth(np.array([_num(v) for v in g["curve"]]), window)[-1]
                                         for g in games[(b, w)]])))  # fmt: skip
        finite = [e for e in ends if math.isfinite(e)]
        targets[w] = max(finite) if finite else math.inf

    scores = np.zeros((len(policies), n_seeds, n_work))
    steps = np.zeros((len(policies), n_seeds, n_work))
    per_workload: list[dict[str, Any]] = []
    for i, p in enumerate(policies):
        for j, w in enumerate(workloads):
            gs = games[(p, w)]
            horizon = len(gs[0]["curve"]) - 1
            window = max(1, horizon // config.smoothing)
            lstar, l0, lf = best_loss[w], start[(p, w)], final[(p, w)]
            with np.errstate(invalid="ignore", divide="ignore"):
                s = (l0 - lf) / (l0 - lstar)
            s = np.where(np.isfinite(lf), np.clip(np.nan_to_num(s, nan=CLIP[0]), *CLIP), CLIP[0])
            scores[i, :, j] = s
            for k, g in enumerate(gs):
                curve = _smooth(np.array([_num(v) for v in g["curve"]]), window)
                steps[i, k, j] = math.inf if g["diverged"] else _steps_to(curve, targets[w])
            gaps = [sum(_num(v) for v in g["nash_gap"]) for g in gs if g.get("nash_gap") is not None]
            held = defaultdict(list)
            for g in gs:
                for task, metrics in (g["held_out"] or {}).items():
                    for name, value in metrics.items():
                        held[f"{task}.{name}"].append(_num(value))
            per_workload.append(
                {
                    "policy": p,
                    "workload": w,
                    "lr": tuned[(p, w)]["best_lr"],
                    "tuning_all_diverged": tuned[(p, w)]["all_diverged"],
                    "lr_at_edge": bool(tuned[(p, w)].get("at_edge", False)),
                    "median_final_train_loss": float(np.median(lf)),
                    "median_normalized_score": float(np.median(s)),
                    "median_steps_to_target": float(np.median(steps[i, :, j])),
                    "target": targets[w],
                    "diverged": int(sum(g["diverged"] for g in gs)),
                    "games": len(gs),
                    "median_nash_gap": float(np.median(gaps)) if gaps else None,
                    "held_out": {k: float(np.median(v)) for k, v in held.items()},
                }
            )
    reps = config.bootstrap_reps
    times = np.median(steps, axis=1) + 1.0  # steps are counted from 0; ratios need times > 0
    profile_score = stats.integrated_profile(times, TAU_MAX)
    ref = policies.index(reference)
    board = []
    suites = [s.name for s in config.suites]
    for i, p in enumerate(policies):
        point, lo, hi = stats.bootstrap_ci(scores[i], stats.iqm, reps=reps, seed=i)
        poi = stats.probability_of_improvement_ci(scores[i], scores[ref], reps=reps, seed=100 + i)
        per_suite = {}
        for s_name in suites:
            cols = [j for j, w in enumerate(workloads) if w.split("/")[0] == s_name]
            per_suite[s_name] = stats.bootstrap_ci(scores[i][:, cols], stats.iqm, reps=reps, seed=i)
        diverged = sum(row["diverged"] for row in per_workload if row["policy"] == p)
        edge = sum(row["lr_at_edge"] for row in per_workload if row["policy"] == p)
        board.append(
            {
                "policy": p,
                "iqm": point,
                "iqm_ci": [lo, hi],
                "median": float(np.median(scores[i])),
                "mean": float(scores[i].mean()),
                "poi_vs_reference": list(poi),
                "profile_score": float(profile_score[i]),
                "diverged": diverged,
                "games": n_seeds * n_work,
                "lr_at_edge": edge,
                "per_suite": {k: list(v) for k, v in per_suite.items()},
            }
        )
    poi_matrix = [
        [stats.probability_of_improvement(scores[i], scores[j]) for j in range(len(policies))]
        for i in range(len(policies))
    ]
    taus = np.linspace(1.0, TAU_MAX, 61)
    return {
        "config": config.to_dict(),
        "digest": config.digest(),
        "protocol": config.protocol.describe(),
        "reference": reference,
        "policies": policies,
        "yardsticks": baselines,
        "workloads": workloads,
        "leaderboard": sorted(board, key=lambda row: -row["iqm"]),
        "per_workload": per_workload,
        "poi_matrix": poi_matrix,
        "profile": {"taus": taus.tolist(), "rho": stats.performance_profile(times, taus, TAU_MAX).tolist()},
        "targets": targets,
        "curves": _curves(config, games),
        "manipulability": _manipulability(config, games, mixed),
    }


def _naniqm(x: np.ndarray) -> np.ndarray:
    """IQM of the finite values along the last axis (NaN where there are none)."""
    x = np.sort(np.where(np.isfinite(x), x, np.inf), axis=-1)  # non-finite values sort last
    count = np.isfinite(x).sum(axis=-1)
    out = np.full(x.shape[:-1], np.nan)
    for k in np.unique(count):
        if k == 0:
            continue
        rows = count == k
        cut = int(0.25 * k)
        out[rows] = x[rows][..., cut : k - cut].mean(axis=-1)
    return out


def _curves(config: BenchConfig, games: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
    """Per workload and policy: the mean curve over seeds and a 95 % bootstrap band (diverged games left out)."""
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for (p, w), gs in games.items():
        c = np.array([[_num(v) for v in g["curve"]] for g in gs if not g["diverged"]])
        if c.size == 0:
            continue
        idx = rng.integers(0, c.shape[0], size=(500, c.shape[0]))
        means = c[idx].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
        out.setdefault(w, {})[p] = {"mean": c.mean(axis=0).tolist(), "low": lo.tolist(), "high": hi.tolist()}
    return out


def _manipulability(
    config: BenchConfig, games: dict[tuple[str, str], list[dict[str, Any]]], mixed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per rule and deviator: the deviator's gain in its own final loss and the change of the other tasks'
    losses, relative to the reference population's mean progress per task in the same game, in percent (IQM
    with a stratified bootstrap CI; games the deviator made diverge are counted apart)."""
    if config.mixed is None or not mixed:
        return []
    ref = config.mixed.reference
    seeds = list(config.protocol.eval_seeds)
    cells: dict[tuple[str, str], dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for r in mixed:
        w, m = r["workload"], r["task"]
        base = {g["seed"]: g for g in games[(ref, w)]}
        dev = {g["seed"]: g for g in r["result"]["games"]}
        own, others = np.full(len(seeds), np.nan), np.full(len(seeds), np.nan)
        diverged = 0
        for k, seed in enumerate(seeds):
            b, g = base[seed], dev[seed]
            if b["final_train_loss"] is None:  # no all-reference game to compare with
                continue
            if g["final_train_loss"] is None:
                diverged += 1
                continue
            l0 = np.array([_num(v) for v in b["initial_train_loss"]])
            l_ref = np.array([_num(v) for v in b["final_train_loss"]])
            l_dev = np.array([_num(v) for v in g["final_train_loss"]])
            # One scale per game: the reference population's mean progress per task (a task the reference barely
            # moves would otherwise blow its percentage up).
            rel = (l_dev - l_ref) / max(float(np.abs(l0 - l_ref).mean()), 1e-12)
            own[k] = -100.0 * rel[m]
            others[k] = 100.0 * float(np.delete(rel, m).mean())
        cell = cells[(w.split("/")[1], r["policy"])]
        cell["own"].append(own)
        cell["others"].append(others)
        cell["diverged"].append(diverged)
    table = []
    for (rule, dev_name), cell in cells.items():
        own_arr = np.stack(cell["own"], axis=1)  # [seeds, (workload, task) strata]; NaN: a diverged game
        oth_arr = np.stack(cell["others"], axis=1)
        row: dict[str, Any] = {"rule": rule, "deviator": dev_name, "diverged": int(sum(cell["diverged"]))}
        finite = np.isfinite(own_arr)
        row["cases"] = int(finite.sum())
        if not finite.any():
            row.update(own_gain=None, others_change=None, own_positive=None)
        else:
            reps = config.bootstrap_reps
            row["own_gain"] = list(stats.bootstrap_ci(own_arr, _naniqm, reps=reps, seed=1))
            row["others_change"] = list(stats.bootstrap_ci(oth_arr, _naniqm, reps=reps, seed=2))
            row["own_positive"] = float((own_arr[finite] > 0).mean())
        table.append(row)
    order = {r: i for i, r in enumerate(config.rules)}
    return sorted(table, key=lambda row: (order.get(row["rule"], 99), row["deviator"]))
