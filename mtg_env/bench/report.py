"""From records to a leaderboard: the numbers (:mod:`mtg_env.bench.scores`: scores, targets, aggregates with CIs,
the manipulability table), written as ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` and the figures
(:mod:`mtg_env.bench.figures`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mtg_env._io import write_atomic
from mtg_env.bench.config import BenchConfig

# The scores and the figures live in their own modules; their public names are re-exported here.
from mtg_env.bench.figures import FIGURES, _figures
from mtg_env.bench.scores import CLIP, TAU_MAX, summarize

__all__ = ["CLIP", "FIGURES", "TAU_MAX", "leaderboard_markdown", "summarize", "write_report"]


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
            "task) with a stratified bootstrap 95 % CI. A game the deviator made diverge is counted apart."
            + _at_reference_lr(mixed),
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


def _at_reference_lr(mixed: dict[str, Any]) -> str:
    """The report's note on the deviators played at the reference's tuned step size (``[mixed] reference_lr``)."""
    names = mixed.get("reference_lr") or []
    if not names:
        return ""
    return f" Played at the reference's tuned step size (as selfish), not their own: {', '.join(names)}."
