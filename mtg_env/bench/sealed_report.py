"""The sealed protocol's report (:mod:`mtg_env.bench.sealed`): the main table's rows per cell and ``report.md``."""

from __future__ import annotations

from typing import Any

from mtg_env.bench.sealed_config import SealedConfig


def _knobs(knobs: dict[str, Any]) -> str:
    parts = [f"lr {knobs['lr']:.3g}"]
    for k, label in (("momentum", "μ"), ("beta1", "β1"), ("beta2", "β2"), ("trunk_ratio", "ratio")):
        if k in knobs:
            parts.append(f"{label} {knobs[k]:g}")
    parts.append(knobs["schedule"])
    return ", ".join(parts)


#: Games whose gap is at most this are counted "at the floor" in the report: there, ratios of gaps compare round-off
#: and near-zero residues (1e-15 against 1e-11 of the start), so the count says more than the median ratio; where
#: both medians are at the floor, the median ratio is marked a tie.
AT_FLOOR = 1e-9

HEADER = (
    "| family | horizon | entrant | mean gap vs best tuned (mean) | ratio [95% CI] | median gap vs best tuned "
    "(median) | ratio [95% CI] | diverged (entrant / baselines) | at the floor (entrant / best by median) | L* |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


def show_consensus(config: SealedConfig) -> bool:
    """Whether the report's tables carry a consensus column: only when a rule other than the default sum is played
    (a config without ``consensus`` keeps its tables as they were)."""
    return tuple(config.consensus) != ("sum",)


def _with_consensus(header: str) -> str:
    """``header`` (a table's two header lines) with a consensus column after the horizon."""
    names, rule = header.split("\n")
    return names.replace("| horizon |", "| horizon | consensus |", 1) + "\n" + rule + "---|"


def _num(x: float) -> str:
    """A ratio in the table: two decimals, or two significant digits far from 1."""
    return f"{x:.2f}" if x == 0 or 0.01 <= abs(x) < 1000 else f"{x:.1e}"


def _ratio(r: list[float], tie: bool = False) -> str:
    """A ratio with its CI, ``r`` = [ratio, low, high]: **bold** where the CI's upper end is below 1 (the entrant wins
    that statistic, as the bar asks), plain otherwise (a loss, or a win the CI does not settle) and for a tie."""
    value = _num(r[0])
    return f"{f'**{value}**' if r[2] < 1 and not tie else value} [{_num(r[1])}, {_num(r[2])}]"


def medians_at_floor(cell: dict[str, Any], agent: str) -> bool:
    """Whether ``agent``'s median gap and the cell's best baseline's by median are both at the floor (at most
    :data:`AT_FLOOR`): the median ratio then compares round-off, a tie whatever its value."""
    return max(float(cell["median"][agent]), float(cell["median"][cell["best_median"]])) <= AT_FLOOR


def cell_rows(cell: dict[str, Any], header: bool = False, consensus: bool = False) -> str:
    """The cell's rows of the report's main table (one per entrant; ``consensus``: with the cell's consensus rule in
    a column after the horizon)."""
    lines = [_with_consensus(HEADER) if consensus else HEADER] if header else []
    rule = f" {cell['consensus']} |" if consensus else ""
    bm, bd = cell["best_mean"], cell["best_median"]
    base_div = sum(v for k, v in cell["diverged"].items() if k in cell["tuned"])
    for agent, e in cell["entrants"].items():
        rm, rd = e["ratio_mean"], e["ratio_median"]
        at_floor = medians_at_floor(cell, agent)
        tie = " (a tie: both medians at the floor)" if at_floor else ""
        lines.append(
            f"| {cell['family']} | {cell['multiple']}× ({cell['horizon']}) |{rule} {agent} | "
            f"{cell['mean'][agent]:.3g} vs {bm} {cell['mean'][bm]:.3g} | {_ratio(rm)} | "
            f"{cell['median'][agent]:.3g} vs {bd} {cell['median'][bd]:.3g} | {_ratio(rd, at_floor)}{tie} | "
            f"{cell['diverged'][agent]} / {base_div} | {cell['at_floor'][agent]} / "
            f"{cell['at_floor'][bd]} | {', '.join(cell['floor_kinds'])} |"
        )
    return "\n".join(lines)


def _sha(report: dict[str, Any], label: str) -> str:
    """`` (sha256 …)`` of the bytes ``label`` played (the report's ``weights``), or nothing for an older report."""
    digests = {v["sha256"] for k, v in report.get("weights", {}).items() if k.startswith(label + " (")}
    return f" (sha256 {', '.join(sorted(d[:16] for d in digests))}…)" if digests else ""


def report_markdown(config: SealedConfig, report: dict[str, Any]) -> str:
    """The report: the protocol (search space, budget, streams), the main table, the tuned baselines."""
    column = show_consensus(config)
    tuned = (
        "| family | horizon | baseline | knobs | mean gap | median gap | diverged | tuning gap | at grid edge |"
        "\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [
        f"# {config.name}: learned rules under the sealed protocol",
        "",
        f"Sealed test key `{report['test_key']}`: {config.test_draws} draws × {config.test_seeds} seeds per cell "
        "from the hashed test stream (agents.learned.family.draw_games), disjoint from every training, validation, "
        "trunk-search and tuning stream."
        if report["stream"] == "test"
        else f"DEVELOPMENT RUN on the validation stream ({config.test_draws} draws × {config.test_seeds} seeds per "
        "cell): not a sealed result.",
        "",
        f"External tuning (per family and horizon, successive halving on {config.tuning_draws} tuning-stream draws: "
        f"rung 0 every candidate × 1 seed, rung 1 the best 1/{config.eta} × {config.tuning_seeds} seeds): "
        f"{report['search']}. Budget: {config.budget_game_steps:,} game-steps per baseline at 1× (× the multiple); "
        "spent: " + ", ".join(f"{b} {config.tuning_cost(b, 1):,}" for b in config.baselines) + " at 1×.",
        "",
        "Self-tuning: the learned rules as shipped. Score: the normalised gap (L_T − L*) / (L_0 − L*) on the whole "
        "training objective, +inf when diverged; ratios < 1 favour the entrant; paired bootstrap 95 % CI "
        + (
            "over the drawn games, each resampled with all its seeds"
            if config.bootstrap_unit == "draw"
            else "over games, each resampled on its own"
        )
        + f" ({config.bootstrap_reps} resamples). A ratio is **bold** where its CI's upper end is below 1 (the "
        "entrant wins that statistic); a row with both ratios bold wins the cell by its mean and its median.",
        "",
    ]
    if column:
        lines += [
            f"Consensus rules: {', '.join(config.consensus)}. Each is a cell per family and horizon: its baselines are "
            "tuned, and every player scored, with the trunk moving by that rule; L* (the training objective's "
            "minimum) is the same for every rule.",
            "",
        ]
    weighted = [e for e in config.weighted_entrants if e.families]
    if weighted:
        lines += [
            "Entrants with their own weights (one rule file for every family listed): "
            + "; ".join(f"{e.name} = {e.agent} from {e.weights}{_sha(report, e.name)}" for e in weighted)
            + ".",
            "",
        ]
    lines += [_with_consensus(HEADER) if column else HEADER]
    lines += [cell_rows(c, consensus=column) for c in report["cells"]]
    lines += ["", "## The tuned baselines", "", _with_consensus(tuned) if column else tuned]
    for c in report["cells"]:
        rule = f" {c['consensus']} |" if column else ""
        for b, t in c["tuned"].items():
            lines.append(
                f"| {c['family']} | {c['multiple']}× |{rule} {b} | {_knobs(t['knobs'])} | {c['mean'][b]:.3g} | "
                f"{c['median'][b]:.3g} | {c['diverged'][b]} | {t['tuning_gap']:.3g} | {t['at_edge']} |"
            )
    return "\n".join(lines) + "\n"
