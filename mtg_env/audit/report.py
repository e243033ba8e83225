"""What every audit experiment returns and draws: a :class:`Section` (title, finding, table, figures), the progress
tick, the table formatting and the figure helpers (matplotlib's Agg backend, imported only when a figure is drawn).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Tick = Callable[[], None]
"""Called once per episode an experiment plays (drives the progress bar)."""


def _no_tick() -> None:
    return None


@dataclass
class Section:
    """One experiment: a title, a finding in a sentence, a table, and figures."""

    title: str
    finding: str
    columns: list[str]
    rows: list[list[Any]]
    figures: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.finding, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        lines.append("")
        lines += [f"![{self.title}]({name})" for name in self.figures]
        return "\n".join(lines) + "\n"


def _span(values: Sequence[float], spec: str) -> str:
    """'a to b', or 'a' when there is one value."""
    lo, hi = format(min(values), spec), format(max(values), spec)
    return lo if lo == hi else f"{lo} to {hi}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4) else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


# ---------------------------------------------------------------------------------- figures
def _figure(ncols: int) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * ncols, 3.8), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _plot_curves(
    path: Path, panels: dict[str, dict[str, np.ndarray]], ylabel: str, loglog: bool = True, logy: bool = True
) -> Path:
    fig = _figure(len(panels))
    for i, (title, curves) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, values in curves.items():
            t = np.arange(1, len(values) + 1)
            ax.plot(t, np.maximum(values, 1e-300), label=label)
        if loglog:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step t")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_bars(path: Path, labels: Sequence[str], values: Sequence[float], ylabel: str) -> Path:
    fig = _figure(1)
    ax = fig.add_subplot()
    ax.bar(range(len(values)), values, color=["tab:green"] + ["tab:gray"] * (len(values) - 1))
    ax.set_xticks(range(len(values)), [str(label)[:12] for label in labels], rotation=20, fontsize="small")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_strips(path: Path, groups: dict[str, np.ndarray], ylabel: str) -> Path:
    fig = _figure(1)
    ax = fig.add_subplot()
    for i, values in enumerate(groups.values()):
        ax.scatter(np.full(len(values), i), values, alpha=0.7)
    labels = [name.replace("regression (MLP trunk)", "regression\n(MLP trunk)") for name in groups]
    ax.set_xticks(range(len(groups)), labels, fontsize="small")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
