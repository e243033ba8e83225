"""The audit: reproducible checks of the paper's results on games where the answer is known.

``mtg-env audit [--out DIR] [--quick]`` runs every experiment below and writes ``DIR/report.md`` (tables
and PNG figures, each figure's numbers in the table beside it) and ``DIR/audit.json``. Every experiment
plays the env itself, with the paper's gradient agents.

- Theorem 3: on random convex quadratic games (float64) gradient agents with `sum` consensus approach the
  closed-form equilibrium; V_t (Eq. 28) and the stationarity terms against t for each schedule, the
  empirical rate (log-log slope of V_t) and whether V_t / t → 0 (Assumption 5, Proposition 3).
- Assumption 2 as printed (Σ α_t < ∞): from a far start the iterates travel at most K·Σ α_t (K the
  largest gradient norm met), so they stop short of the equilibrium; Robbins–Monro does not.
- Definition 1 and Proposition 2: for any trunk, best-responding heads have zero head Nash gap, while
  L_MT differs: the Definition-1 equilibria form a set (one per trunk), and the `sum` dynamics select the
  minimiser of L_MT.
- Remarks 10 and 13: on non-convex suites (digits; regression with an MLP trunk) different seeds and
  consensus rules end at different points: the spread of final losses and head Nash gaps.
- Theorem 1 / Proposition 1: the single-task case converges to the unique minimiser.

Package: :mod:`~mtg_env.audit.theorems` (the paper's results), :mod:`~mtg_env.audit.stability` and
:mod:`~mtg_env.audit.regularisation` (its open directions, ``--stability``), :mod:`~mtg_env.audit.report`
(sections and figures).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mtg_env.audit import stability as stab
from mtg_env.audit.regularisation import regularisation
from mtg_env.audit.report import Section, Tick, _json_default, _no_tick
from mtg_env.audit.theorems import EXPERIMENTS, AuditConfig, contraction_product

#: The open directions' experiments (``--stability``), in the report's order.
STABILITY_EXPERIMENTS = (stab.noise_floor, stab.noise_models, stab.label_noise, regularisation)


def run_audit(out: str | Path, quick: bool = False, progress: bool = False, stability: bool = False) -> list[Section]:
    """Run every experiment; write ``out/report.md``, ``out/audit.json`` and the figures.

    Args:
        out: Output directory (created).
        quick: The small configuration (``AuditConfig.quick()``) the tests run.
        progress: Show a progress bar over the episodes played (tqdm, on stderr).
        stability: Run the open directions' experiments instead (:mod:`mtg_env.audit.stability`: noise models and
            regularisation toward equilibrium, Assumptions 7 and 6).
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg: Any
    if stability:
        cfg = stab.StabilityConfig.quick() if quick else stab.StabilityConfig()
        experiments: Sequence[Callable[[Any, Path, Tick], Section]] = STABILITY_EXPERIMENTS
        total = stab.episodes(cfg)
    else:
        cfg = AuditConfig.quick() if quick else AuditConfig()
        experiments = EXPERIMENTS
        total = cfg.episodes()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="audit", unit="episode")
    start = time.perf_counter()
    sections = []
    try:
        for experiment in experiments:
            if bar is not None:
                bar.set_postfix_str(experiment.__name__)
            clock = time.perf_counter()
            section = experiment(cfg, out_dir, bar.update if bar is not None else _no_tick)
            section.data["seconds"] = round(time.perf_counter() - clock, 2)
            sections.append(section)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    header = (
        f"# mtg_env audit{' (stability)' if stability else ''}{' (quick)' if quick else ''}\n\n"
        f"Reproduce: `mtg-env audit --out {out_dir}{' --stability' if stability else ''}{' --quick' if quick else ''}`"
        f" ({seconds:.0f} s here). "
        + (
            "Every experiment plays the engine batched over seeds with the paper's gradient rule (constant steps); "
            "float64.\n\n"
            if stability
            else "Every experiment plays the env with the paper's gradient agents; float64 on the quadratic games.\n\n"
        )
    )
    (out_dir / "report.md").write_text(header + "\n".join(s.markdown() for s in sections))
    payload = {"quick": quick, "config": asdict(cfg), "seconds": seconds, "sections": [asdict(s) for s in sections]}
    (out_dir / "audit.json").write_text(json.dumps(payload, indent=1, default=_json_default))
    return sections


__all__ = ["EXPERIMENTS", "STABILITY_EXPERIMENTS", "AuditConfig", "Section", "Tick", "contraction_product", "run_audit"]
