"""From records to a leaderboard: scores, targets, aggregates with CIs, the manipulability table, figures.

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

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mtg_env._io import write_atomic
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


# ----------------------------------------------------------------------------------------- writing
def _ci(values: list[float], fmt: str = "{:.3f}") -> str:
    point, lo, hi = values
    return f"{fmt.format(point)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def leaderboard_markdown(summary: dict[str, Any]) -> str:
    """The leaderboard, the manipulability table and the protocol, as Markdown."""
    cfg = summary["config"]
    suites = [s["name"] for s in cfg["suites"]]
    lines = [
        f"# Benchmark `{cfg['name']}` ({summary['digest']})",
        "",
        f"Policies × {len(summary['workloads'])} workloads (suites {', '.join(suites)}; rules "
        f"{', '.join(cfg['rules'])}; horizons {', '.join(map(str, cfg['horizons']))}) × "
        f"{len(cfg['protocol']['eval_seeds'])} held-out seeds.",
        "",
        f"**Tuning protocol.** {summary['protocol']} *lr at edge*: workloads whose best step size is the "
        "smallest or largest searched (the optimum may lie outside the range).",
        "",
        "Normalised score: (L₀ − L)/(L₀ − L*), L* the best yardstick's median final training loss on the "
        f"workload (yardsticks: {', '.join(summary.get('yardsticks', ['the tuned baselines']))}; 1 = as good as "
        "it; a diverged game scores −1). IQM over seeds × workloads with a stratified "
        f"bootstrap 95 % CI; P(>{summary['reference']}): probability of improvement over the reference; "
        "profile: the integrated performance profile of steps-to-target (ratio to the fastest, capped at 4).",
        "",
        "| policy | IQM score [95 % CI] | median | P(> " + summary["reference"] + ") [95 % CI] | profile | "
        "diverged | lr at edge | " + " | ".join(suites) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(suites),
    ]
    for row in summary["leaderboard"]:
        per_suite = " | ".join(_ci(row["per_suite"][s], "{:.2f}") for s in suites)
        lines.append(
            f"| {row['policy']} | {_ci([row['iqm'], *row['iqm_ci']])} | {row['median']:.3f} | "
            f"{_ci(row['poi_vs_reference'], '{:.2f}')} | {row['profile_score']:.3f} | "
            f"{row['diverged']}/{row['games']} | {row['lr_at_edge']}/{len(summary['workloads'])} | {per_suite} |"
        )
    if summary["manipulability"]:
        mixed = cfg["mixed"]
        lines += [
            "",
            f"## Manipulability of the consensus rules (reference: {mixed['reference']}; selfish = the reference "
            f"with its trunk proposal × {mixed['selfish_scale']})",
            "",
            "One deviator plays task m, the reference plays the others (every m, every suite, the held-out seeds). "
            "*Own gain*: how much lower the deviator's final training loss is than in the all-reference game; "
            "*others*: how much the other tasks' losses rise (their mean); both in % of the reference "
            "population's mean progress per task in that game (mean_j |L₀ − L_ref|_j); IQM over seeds × (suite, "
            "task) with a stratified bootstrap 95 % CI. A game the deviator made diverge is counted apart.",
            "",
            "| rule | deviator | own gain % | others' change % | own gain > 0 | diverged |",
            "|---|---|---|---|---|---|",
        ]
        for row in summary["manipulability"]:
            if row["own_gain"] is None:
                lines.append(f"| {row['rule']} | {row['deviator']} | - | - | - | {row['diverged']} |")
                continue
            lines.append(
                f"| {row['rule']} | {row['deviator']} | {_ci(row['own_gain'], '{:+.1f}')} | "
                f"{_ci(row['others_change'], '{:+.1f}')} | {100 * row['own_positive']:.0f} % of {row['cases']} | "
                f"{row['diverged']} |"
            )
    lines += [
        "",
        "## Per workload",
        "",
        "| workload | policy | lr | median final train loss | median score | median steps to target "
        "(target) | diverged | median Nash gap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["per_workload"]:
        gap = "-" if row["median_nash_gap"] is None else f"{row['median_nash_gap']:.3g}"
        steps = row["median_steps_to_target"]
        edge = " (edge)" if row["lr_at_edge"] else ""
        lines.append(
            f"| {row['workload']} | {row['policy']} | {row['lr']:.3g}{edge} | {row['median_final_train_loss']:.4g} | "
            f"{row['median_normalized_score']:.3f} | {'miss' if math.isinf(steps) else f'{steps:.0f}'} "
            f"({row['target']:.4g}) | {row['diverged']}/{row['games']} | {gap} |"
        )
    return "\n".join(lines) + "\n"


#: The figures a report may write; those a report does not write are removed from its folder.
FIGURES = ("performance_profile.png", "suite_scores.png", "loss_curves.png", "manipulability.png")


def write_report(config: BenchConfig, summary: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` and the figures into ``out``.

    Every file is rendered first, then written atomically (a temporary file renamed over it). ``leaderboard.json``
    marks a complete report: the old one is removed first and the new one written last, so an interrupted report
    never leaves a leaderboard beside half-written or mixed files.
    """
    out = Path(out)
    files = {"leaderboard.md": leaderboard_markdown(summary).encode(), "leaderboard.csv": _csv(config, summary)}
    files.update(_figures(summary))
    (out / "leaderboard.json").unlink(missing_ok=True)
    for name in FIGURES:
        if name not in files:  # e.g. manipulability.png of an earlier report with a [mixed] section
            (out / name).unlink(missing_ok=True)
    for name, data in files.items():
        write_atomic(out / name, data)
    write_atomic(out / "leaderboard.json", json.dumps(_jsonable(summary), indent=1, allow_nan=False))
    return [out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard.json"] + [
        out / name for name in files if name in FIGURES
    ]


def _csv(config: BenchConfig, summary: dict[str, Any]) -> bytes:
    suites = [s.name for s in config.suites]
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["policy", "iqm", "iqm_low", "iqm_high", "median", "mean", "poi_vs_reference",
                         "poi_low", "poi_high", "profile_score", "diverged", "games"]
                        + [f"iqm_{s}" for s in suites])  # fmt: skip
        for row in summary["leaderboard"]:
            writer.writerow(
                [row["policy"], row["iqm"], *row["iqm_ci"], row["median"], row["mean"], *row["poi_vs_reference"],
                 row["profile_score"], row["diverged"], row["games"]] + [row["per_suite"][s][0] for s in suites]
            )  # fmt: skip
        return f.getvalue().encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _figures(summary: dict[str, Any]) -> dict[str, bytes]:
    """The figures as PNG bytes by file name."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    policies = summary["policies"]
    colors = {p: f"C{i}" for i, p in enumerate(policies)}
    figures: dict[str, bytes] = {}
    seeds = len(summary["config"].get("protocol", {}).get("eval_seeds", []))
    run = f"{len(policies)} policies, {len(summary['curves'])} workloads, {seeds} held-out seeds"

    fig = Figure(figsize=(6.5, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    taus = summary["profile"]["taus"]
    scores = {row["policy"]: row["profile_score"] for row in summary["leaderboard"]}
    for p, rho in zip(policies, summary["profile"]["rho"], strict=True):
        ax.step(taus, rho, where="post", label=f"{p} ({scores[p]:.2f})", color=colors[p])
    ax.set_xlabel("τ (steps-to-target / fastest)")
    ax.set_ylabel("fraction of workloads within τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Performance profiles (integrated score in brackets)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    figures["performance_profile.png"] = _png(fig)

    suites = [s["name"] for s in summary["config"]["suites"]]
    fig = Figure(figsize=(1.6 + 1.6 * len(suites), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(policies)
    board = {row["policy"]: row for row in summary["leaderboard"]}
    for i, p in enumerate(policies):
        vals = np.array([board[p]["per_suite"][s] for s in suites])
        x = np.arange(len(suites)) + (i - (len(policies) - 1) / 2) * width
        err = np.abs(vals[:, 1:].T - vals[:, 0])
        ax.bar(x, vals[:, 0], width, yerr=err, capsize=2, label=p, color=colors[p])
    ax.set_xticks(np.arange(len(suites)), suites)
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set_ylabel("IQM normalised score (95 % CI)")
    ax.set_title("Per suite (1 = best tuned baseline)", fontsize="medium")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    figures["suite_scores.png"] = _png(fig)

    workloads = list(summary["curves"])
    cols = max(1, len(summary["config"]["rules"]) * len(summary["config"]["horizons"]))
    rows = math.ceil(len(workloads) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, w in enumerate(workloads):
        ax = fig.add_subplot(rows, cols, k + 1)
        for p, c in summary["curves"][w].items():
            t = np.arange(len(c["mean"]))
            ax.plot(t, c["mean"], color=colors[p], lw=1, label=p)
            ax.fill_between(t, c["low"], c["high"], color=colors[p], alpha=0.2, lw=0)
        ax.set_title(w, fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.set_xlabel("step t", fontsize="x-small")
        ax.set_ylabel("batch loss, mean over tasks", fontsize="x-small")
        if min(min(c["low"]) for c in summary["curves"][w].values()) > 0:
            ax.set_yscale("log")
    handles = [Line2D([], [], color=colors[p], lw=1.5, label=p) for p in policies]
    fig.suptitle(f"Mean batch loss over held-out seeds (95 % bootstrap band)\n{run}", fontsize="medium")
    fig.legend(handles=handles, loc="lower center", fontsize="small", ncol=min(len(policies), 6), title="policy")
    fig.tight_layout(rect=(0, 0.1 if rows > 1 else 0.16, 1, 1))
    figures["loss_curves.png"] = _png(fig)

    if summary["manipulability"]:
        every = summary["manipulability"]  # rows whose games all diverged are marked, not dropped
        devs = sorted({row["deviator"] for row in every})
        rules = list(dict.fromkeys(row["rule"] for row in every))
        fig = Figure(figsize=(3 + 1.5 * len(rules), 4.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        width = 0.8 / (2 * len(devs))
        for i, d in enumerate(devs):
            for j, part in enumerate(("own_gain", "others_change")):
                found = [next((r for r in every if r["rule"] == rule and r["deviator"] == d), None) for rule in rules]
                vals = np.array([r[part] if r is not None and r[part] is not None else [np.nan] * 3 for r in found])
                x = np.arange(len(rules)) + (2 * i + j - (2 * len(devs) - 1) / 2) * width
                err = np.abs(vals[:, 1:].T - vals[:, 0])
                label = f"{d}: {'own gain' if j == 0 else 'others’ change'}"
                ax.bar(x, np.nan_to_num(vals[:, 0]), width, yerr=np.nan_to_num(err), capsize=2, label=label,
                       hatch="" if j == 0 else "//", color=f"C{i}", alpha=1.0 if j == 0 else 0.5)  # fmt: skip
                if j == 0:  # diverged games: counted on the bar, or an x where every game diverged
                    for xi, r in zip(x, found, strict=True):
                        if r is not None and r["diverged"]:
                            ax.annotate(f"{r['diverged']} diverged", (xi, 0), xytext=(0, 3), textcoords="offset points",
                                        ha="center", va="bottom", fontsize="x-small", color="tab:red",
                                        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0})  # fmt: skip
                        if r is not None and r["own_gain"] is None:
                            ax.scatter([xi], [0], marker="x", color="tab:red", zorder=3,
                                       label="every game diverged" if i == 0 else None)  # fmt: skip
        ax.set_xticks(np.arange(len(rules)), rules)
        ax.set_xlabel("consensus rule")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_ylabel("% of the reference's progress")
        ax.set_title(
            f"Manipulability: one deviator among reference players ({run}; red: games the deviator made diverge, "
            "left out of the bars)",
            fontsize="small",
            wrap=True,
        )
        ax.legend(fontsize="x-small")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        figures["manipulability.png"] = _png(fig)
    return figures
