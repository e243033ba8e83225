"""The figures of a coalition analysis (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtg_env.coalitions.masks import members
from mtg_env.coalitions.play import curve_steps

if TYPE_CHECKING:
    from mtg_env.coalitions.report import CoalitionAnalysis


# ------------------------------------------------------------------------------------------------ figures
def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def write_figures(result: CoalitionAnalysis, out: Path, title: str) -> list[Path]:
    """``values.png`` (v(S) against |S|), ``shapley.png`` (exhaustive), ``tag_affinity.png`` and
    ``convergence.png`` (the training loss of four coalition structures against the step)."""
    paths = [_plot_values(result, out / "values.png", title)]
    if result.shapley is not None and result.core is not None:
        paths.append(_plot_shapley(result, out / "shapley.png", title))
    paths.append(_plot_affinity(result, out / "tag_affinity.png", title))
    paths.append(_plot_convergence(result, out / "convergence.png", title))
    return paths


def _plot_values(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    sizes = np.array([bin(s).count("1") for s in result.masks])
    inside = np.array([any(s & ~b == 0 for b in result.best.blocks) for s in result.masks])
    rng = np.random.default_rng(0)  # horizontal jitter only, so that coalitions of one size do not overlap
    x = sizes + rng.uniform(-0.15, 0.15, sizes.size)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.scatter(
        x[~inside],
        result.values[~inside],
        s=14,
        color="tab:gray",
        alpha=0.7,
        label="coalition across blocks of the best partition",
    )
    ax.scatter(
        x[inside],
        result.values[inside],
        s=22,
        color="tab:green",
        label="coalition within a block of the best partition",
    )
    ax.set_xticks(range(1, result.num_players + 1))
    ax.set_xlabel("coalition size |S| (tasks sharing one trunk)")
    ax.set_ylabel("v(S): loss saved vs. training alone (loss units)")
    ax.set_title(f"v(S) of every coalition\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_shapley(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    assert result.shapley is not None and result.core is not None
    fig = _figure()
    ax = fig.add_subplot()
    k = np.arange(result.num_players)
    ax.bar(k - 0.2, result.shapley, width=0.4, color="tab:blue", label="Shapley value φ_m")
    core_label = "least-core point x_m (in the core)" if result.core.nonempty else "least-core point x_m (core empty)"
    ax.bar(k + 0.2, result.core.point, width=0.4, color="tab:orange", label=core_label)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xticks(k, [f"{i}\n{n[:14]}" for i, n in enumerate(result.tasks)], fontsize="small")
    ax.set_xlabel("task (player)")
    ax.set_ylabel("share of v(all tasks) (loss units)")
    ax.set_title(f"Shapley values and the core\n{title}", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_affinity(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    from matplotlib.patches import Patch, Rectangle

    fig = _figure(6.8, 5.4)
    ax = fig.add_subplot()
    z = result.tag_affinity
    bound = max(1e-12, float(np.nanmax(np.abs(z))))
    image = ax.imshow(z, cmap="RdBu", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=ax, label="affinity Z_{i→j} (dimensionless)")
    p = result.num_players
    ax.set_xticks(range(p), [str(i) for i in range(p)])
    ax.set_yticks(range(p), [str(i) for i in range(p)])
    ax.set_xlabel("task j (loss measured)")
    ax.set_ylabel("task i (trunk stepped on its gradient)")
    for b in result.best.blocks:  # contiguous runs only: outline each block's rows x columns cell by cell
        mem = members(b)
        for i in mem:
            for j in mem:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.2))
    ax.legend(
        handles=[Patch(fill=False, edgecolor="black", label="pairs within a block of the best partition by v")],
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
    )
    ax.set_title(f"TAG affinity Z_{{i→j}} = 1 − ℓ_j(step on task i) / ℓ_j (Fifty et al. 2021)\n{title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_convergence(result: CoalitionAnalysis, path: Path, title: str) -> Path:
    fig = _figure()
    ax = fig.add_subplot()
    p = result.num_players
    structures: dict[str, tuple[int, ...]] = {"every task alone": tuple(1 << k for k in range(p))}
    full = (1 << p) - 1
    if full in result.masks:
        structures["all tasks share one trunk"] = (full,)
    same = result.tag_partition.blocks == result.best.blocks
    best_label = f"best partition by v{' (= TAG grouping)' if same else ''}: {' '.join(result.best.labels())}"
    structures[best_label] = result.best.blocks
    if not same and all(b in result.masks for b in result.tag_partition.blocks):
        structures[f"TAG's grouping: {' '.join(result.tag_partition.labels())}"] = result.tag_partition.blocks
    styles = ["-", "--", ":", "-."]
    positive = True
    curves = {}
    for label, blocks in structures.items():
        curves[label] = result.structure_curve(blocks)
        positive &= bool((curves[label] > 0).all())
    t = np.array(curve_steps(result.config.horizon))
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(t, curve, styles[i % 4], label=label[:70], lw=1.6)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("training step t")
    floor = "" if not np.any(result.floors) else " − Σ min ℓ_m"
    ax.set_ylabel(f"Σ_m ℓ_m{floor}, {result.config.split} split (loss units)")
    ax.set_title(f"Convergence under four coalition structures\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path
