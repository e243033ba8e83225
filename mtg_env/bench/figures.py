"""The leaderboard's figures (performance profiles, per-suite scores, loss curves, manipulability) as PNG bytes,
drawn from a :func:`~mtg_env.bench.scores.summarize` summary with matplotlib's Agg backend."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

#: The figures a report may write; those a report does not write are removed from its folder.
FIGURES = ("performance_profile.png", "suite_scores.png", "loss_curves.png", "manipulability.png")


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
