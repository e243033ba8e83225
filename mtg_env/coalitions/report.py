"""What :func:`~mtg_env.coalitions.analyse` measured (:class:`CoalitionAnalysis`), as JSON, a Markdown table
and figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtg_env._io import dump_json, write_atomic
from mtg_env.coalitions.figures import write_figures
from mtg_env.coalitions.groupings import NetworkSelection
from mtg_env.coalitions.masks import _label, members
from mtg_env.coalitions.play import CoalitionConfig
from mtg_env.coalitions.theory import CoreResult, Partition, in_core, rand_index


# ------------------------------------------------------------------------------------------ the analysis
@dataclass
class CoalitionAnalysis:
    """Everything :func:`analyse` measured; ``write(out)`` writes the table and the figures."""

    suite: dict[str, Any]
    """The suite's description."""
    tasks: tuple[str, ...]
    """The players' task names (player k is ``tasks[k]``)."""
    config: CoalitionConfig
    method: str
    """``exhaustive`` (every coalition played) or ``greedy`` (only those greedy merging visits)."""
    masks: tuple[int, ...]
    """Coalitions played (bitmasks over the players)."""
    values: np.ndarray
    """``[C]`` v(S) of each played coalition, the mean over seeds."""
    values_std: np.ndarray
    """``[C]`` the standard deviation of v(S) over the seeds (0 for one seed)."""
    task_losses: np.ndarray
    """``[C, P]`` ℓ_m^S, the mean over seeds (NaN where m ∉ S)."""
    alone: np.ndarray
    """``[P]`` ℓ_m^{{m}}: each task trained alone."""
    floors: np.ndarray
    """``[P]`` :func:`loss_floors` of the players."""
    curves: np.ndarray
    """``[C, K]`` Σ_{m∈S} ℓ_m on the split at the steps :func:`curve_steps`, the mean over seeds."""
    best: Partition
    """The partition of the players maximising Σ_blocks v(block)."""
    tag_affinity: np.ndarray
    """``[P, P]`` Z_{i→j} (:func:`tag_affinities`)."""
    tag_partition: Partition
    """The partition maximising TAG's group affinity (:func:`tag_group_values`)."""
    tag_partition_same_size: Partition | None
    """The same, with as many blocks as ``best`` (exhaustive only)."""
    shapley: np.ndarray | None = None
    """``[P]`` exact Shapley values (exhaustive only)."""
    core: CoreResult | None = None
    """The classical core: v(all tasks) shared out (exhaustive only)."""
    structure_core: CoreResult | None = None
    """The core of the best partition (Aumann-Drèze: each block's worth shared out within it; exhaustive only)."""
    standley: NetworkSelection | None = None
    """Standley et al.'s selection with a budget of ``len(best.blocks)`` networks (exhaustive only)."""
    games: int = 0
    """Games played in the largest batch."""
    seconds: float = 0.0
    """Wall time of the coalitions' batched play (all rounds for greedy)."""
    figures: list[str] = field(default_factory=list)

    @property
    def num_players(self) -> int:
        return len(self.tasks)

    def value(self, mask: int) -> float:
        """v(S) of a played coalition (0 for the empty one)."""
        if mask == 0:
            return 0.0
        return float(self.values[self.masks.index(mask)])

    def characteristic(self) -> np.ndarray:
        """v as an array over every bitmask (exhaustive only)."""
        if self.method != "exhaustive":
            raise ValueError("the full characteristic function is known only for method='exhaustive'")
        out = np.zeros(1 << self.num_players)
        out[list(self.masks)] = self.values
        return out

    def structure_curve(self, blocks: Sequence[int]) -> np.ndarray:
        """``[K]`` Σ over the players of ℓ_m − floor_m on the split at :func:`curve_steps` under a coalition
        structure."""
        rows = [self.curves[self.masks.index(b)] - self.floors[list(members(b))].sum() for b in blocks]
        return np.sum(rows, axis=0)

    def summary(self) -> dict[str, Any]:
        """The measurements as JSON-friendly values."""
        names = self.tasks
        agree = self.best.blocks == self.tag_partition.blocks
        out: dict[str, Any] = {
            "definition": "v(S) = sum over m in S of (loss of m trained alone - loss of m trained in S), after "
            f"{self.config.horizon} steps, on the {self.config.split} objective, mean over seeds; v(empty) = 0",
            "suite": self.suite,
            "tasks": list(names),
            "config": asdict(self.config),
            "method": self.method,
            "games_in_batch": self.games,
            "seconds": round(self.seconds, 3),
            "alone_loss": self.alone.tolist(),
            "coalitions": [
                {
                    "mask": s,
                    "members": list(members(s)),
                    "label": _label(s, names),
                    "size": bin(s).count("1"),
                    "v": float(v),
                    "v_std": float(sd),
                    "task_losses": [float(x) for x in row[list(members(s))]],
                }
                for s, v, sd, row in zip(self.masks, self.values, self.values_std, self.task_losses, strict=True)
            ],
            "best_partition": {**asdict(self.best), "labels": self.best.labels(names)},
            "tag": {
                "affinity": self.tag_affinity.tolist(),
                "partition": {**asdict(self.tag_partition), "labels": self.tag_partition.labels(names)},
                "agrees_with_best_partition": agree,
                "rand_index": rand_index(self.best.blocks, self.tag_partition.blocks, self.num_players),
            },
        }
        if self.tag_partition_same_size is not None:
            same = self.tag_partition_same_size
            out["tag"]["partition_same_size"] = {
                **asdict(same),
                "labels": same.labels(names),
                "agrees_with_best_partition": same.blocks == self.best.blocks,
            }
        if self.shapley is not None:
            out["shapley"] = self.shapley.tolist()
            out["shapley_sum"] = float(self.shapley.sum())
            out["v_grand"] = self.value((1 << self.num_players) - 1)
        if self.core is not None:
            out["core"] = asdict(self.core)
            if self.shapley is not None:
                out["core"]["shapley_in_core"] = in_core(self.characteristic(), self.shapley, tol=self.core.tolerance)
        if self.structure_core is not None:
            out["structure_core"] = asdict(self.structure_core)
        if self.standley is not None:
            out["standley"] = {
                **asdict(self.standley),
                "labels": [_label(s, names) for s in self.standley.networks],
                "same_as_best_partition": self.standley.networks == self.best.blocks,
            }
        return out

    def markdown(self) -> str:
        """The tables of ``coalitions.md``."""
        names, cfg = self.tasks, self.config
        lines = [
            f"# Coalitions: {self.suite.get('suite', '?')}, {self.num_players} tasks",
            "",
            f"v(S) = Σ_{{m∈S}} (ℓ_m alone − ℓ_m in S): the loss the members of S save by sharing one trunk, after "
            f"T = {cfg.horizon} steps (head step α = {cfg.lr:g}, trunk step β = {cfg.beta:g}, `{cfg.rule}` consensus "
            f"of the members' proposals), on the `{cfg.split}` objective, mean over seeds {list(cfg.seeds)}; "
            f"v(∅) = 0 and v({{m}}) = 0. Loss units of the suite. Method: {self.method}; {self.games} games in one "
            f"batch, {self.seconds:.2f} s.",
            "",
            "Players: " + ", ".join(f"{k} = `{n}`" for k, n in enumerate(names)),
            "",
            "## Best partition",
            "",
            f"{' | '.join(self.best.labels(names))}: Σ v = {self.best.value:.6g} ({self.best.method}"
            + (f"; {self.best.ties} tied within round-off" if self.best.ties > 1 else "")
            + ")",
        ]
        if self.shapley is not None and self.core is not None:
            lines += [
                "",
                "## Shapley values and the core",
                "",
                f"v(all tasks) = {self.value((1 << self.num_players) - 1):.6g}; Σ φ = {self.shapley.sum():.6g}.",
                "",
                f"- Core (v(all tasks) shared out): {_core_note(self.core)}.",
            ]
            sc = self.structure_core
            if sc is not None:
                lines.append(f"- Core of the best partition (each block's worth shared within it): {_core_note(sc)}.")
            lines += [
                "",
                "| task | ℓ alone | Shapley φ | core point x (all tasks) |"
                + (" core point x (best partition) |" if sc is not None else ""),
                "|---|---:|---:|---:|" + ("---:|" if sc is not None else ""),
            ]
            for k, name in enumerate(names):
                row = f"| {k} `{name}` | {self.alone[k]:.6g} | {self.shapley[k]:.6g} | {self.core.point[k]:.6g} |"
                lines.append(row + (f" {sc.point[k]:.6g} |" if sc is not None else ""))
        lines += [
            "",
            "## Inter-task affinity (TAG, Fifty et al. 2021)",
            "",
            "Z_{i→j} (row i stepped on, column j measured), mean over the grand coalition's training:",
            "",
            "| i \\ j | " + " | ".join(str(k) for k in range(self.num_players)) + " |",
            "|---|" + "---:|" * self.num_players,
        ]
        for i in range(self.num_players):
            lines.append(f"| {i} | " + " | ".join(f"{z:.4f}" for z in self.tag_affinity[i]) + " |")
        agree = self.best.blocks == self.tag_partition.blocks
        rand = rand_index(self.best.blocks, self.tag_partition.blocks, self.num_players)
        lines += [
            "",
            f"TAG's grouping: {' | '.join(self.tag_partition.labels(names))} — "
            + (
                "the same as the best partition by v."
                if agree
                else f"differs from the best partition by v (pairs in agreement: {rand:.2f})."
            ),
        ]
        if (
            self.tag_partition_same_size is not None
            and self.tag_partition_same_size.blocks != self.tag_partition.blocks
        ):
            same = self.tag_partition_same_size
            lines.append(
                f"With {len(self.best.blocks)} groups: {' | '.join(same.labels(names))} — "
                + ("the same as the best partition." if same.blocks == self.best.blocks else "differs.")
            )
        if self.standley is not None:
            sel = self.standley
            lines += [
                "",
                "## Network selection (Standley et al. 2020)",
                "",
                f"Budget {sel.budget} networks: {' , '.join(_label(s, names) for s in sel.networks)}; loss saved "
                f"{sel.value:.6g} — "
                + (
                    "the same as the best partition."
                    if sel.networks == self.best.blocks
                    else "differs from the best partition (networks may overlap)."
                ),
            ]
        lines += [
            "",
            "## v(S) of every coalition",
            "",
            "| coalition | size | v(S) | std over seeds | Σ_{m∈S} ℓ_m |",
            "|---|---:|---:|---:|---:|",
        ]
        order = sorted(range(len(self.masks)), key=lambda i: (bin(self.masks[i]).count("1"), self.masks[i]))
        for i in order:
            s = self.masks[i]
            total = float(np.nansum(self.task_losses[i]))
            lines.append(
                f"| {_label(s)} | {bin(s).count('1')} | {self.values[i]:.6g} | {self.values_std[i]:.3g} | {total:.6g} |"
            )
        if self.figures:
            lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in self.figures]
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path, title: str | None = None) -> list[Path]:
        """Write ``coalitions.json``, ``coalitions.md`` and the PNG figures to ``out``; returns the paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        title = title or self.title()
        figures = write_figures(self, out, title)
        self.figures = [p.name for p in figures]
        dump_json(out / "coalitions.json", self.summary(), indent=1)
        write_atomic(out / "coalitions.md", self.markdown())
        return [out / "coalitions.json", out / "coalitions.md", *figures]

    def title(self, name: str | None = None) -> str:
        """What the run was, for figure titles: ``name`` (default the suite's) and the settings."""
        cfg = self.config
        return (
            f"{name or self.suite.get('suite', '?')}, {self.num_players} tasks, {cfg.rule} consensus, T={cfg.horizon}, "
            f"α={cfg.lr:g}, β={cfg.beta:g}, {len(cfg.seeds)} seed(s)"
        )


def _core_note(result: CoreResult) -> str:
    if result.nonempty:
        return f"non-empty (least-core ε = {result.epsilon:.4g} ≥ 0)"
    return (
        f"EMPTY (least-core ε = {result.epsilon:.4g} < 0: every allocation leaves some coalition short of its "
        f"worth by at least {-result.epsilon:.4g})"
    )
