"""The sealed protocol for learned update rules: one bench config, two tracks, a sealed test stream, true L*.

    mtg-env bench examples/bench_learned.toml              # the learned tables
    mtg-env bench examples/bench_learned.toml --quick      # quadratic at 1× (under two minutes)
    mtg-env bench examples/bench_learned.toml --test-key new   # a fresh sealed test set

Per game family (``quadratic``, ``regression``, ``digits``; :mod:`agents.learned.family`) and horizon (multiples of
the meta-training horizon):

* **External tuning** (AlgoPerf): every baseline is tuned for the family over the declared :class:`SearchSpace`,
  which holds every control a learned rule has: the step size (a log grid, ≥ 3 per decade), heavy-ball μ, Adam's β1
  and β2 (RMSprop's α), the trunk/head step ratio and a schedule (constant, cosine, linear warm-up). The search is
  successive halving on the *tuning* stream's draws: rung 0 plays every candidate on each tuning draw with one seed;
  the best 1/η of each baseline's candidates play every tuning draw × every tuning seed in rung 1, and the lowest mean
  normalised gap wins. Its cost in game-steps is counted and held to one declared budget, the same for every baseline.
* **Self-tuning**: the learned rule as shipped, one set of weights per family, no knob; or an entrant with its own
  weights (``weights = "TAG"`` or a rule file's path in its ``[[entrants]]`` table; labelled by ``name``), one file
  played on every family it lists (:class:`Entrant`).

A cell is one family at one horizon under one consensus rule (``consensus = ["sum", "mean", ...]``; default sum): its
baselines are tuned, and every player scored, with the trunk moving by that rule; L* is the same for every rule.

Both are scored on the sealed *test* stream (hashed from a 128-bit key: no training, validation, trunk-search or
tuning run can draw those games; :func:`agents.learned.family.draw_games`). A game's score is its normalised gap
(L_T − L*) / (L_0 − L*) on the whole training objective, L* the suite's true minimum (:mod:`mtg_env.suites.floors`),
+inf for a diverged game. Each cell reports the mean and median gap, the entrant's ratio to the best externally tuned
baseline (by mean, and by median) with a paired bootstrap 95 % CI (resampling the drawn games, each with its seeds:
``bootstrap_unit``), the winning baseline with its knobs, and every divergence. Every tensor of a cell lives on the
config's ``device`` (``device = "cuda"`` in the file on a GPU).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

# The search space and its players, the config and the report live in their own modules; re-exported here.
from mtg_env._io import dump_json, load_json
from mtg_env._platform import cpu_model
from mtg_env.bench.sealed_config import Entrant, SealedConfig, is_sealed, sealed_config_from_dict
from mtg_env.bench.sealed_report import AT_FLOOR, HEADER, cell_rows, report_markdown, show_consensus
from mtg_env.bench.sealed_search import (
    BASELINE_CONTROLS,
    SCHEDULES,
    WARMUP_FRACTION,
    SearchPlayers,
    SearchSpace,
    _dtype,
    _game,
    play_candidates,
    play_rule,
)
from mtg_env.suites.floors import BEST_RUN_POLISH, Floor, true_floor

__all__ = [
    "AT_FLOOR",
    "BASELINE_CONTROLS",
    "HEADER",
    "RESOLUTION",
    "SCHEDULES",
    "WARMUP_FRACTION",
    "Entrant",
    "SealedConfig",
    "SearchPlayers",
    "SearchSpace",
    "cell_rows",
    "draw_groups",
    "is_sealed",
    "paired_ratio_ci",
    "play_candidates",
    "play_rule",
    "report_markdown",
    "run_cell",
    "run_sealed",
    "sealed_config_from_dict",
    "tune_baselines",
]


# ------------------------------------------------------------------------------------------ the run
class _Floors:
    """L* per drawn game, computed once (its suite on ``device``) and kept in ``DIR/floors.json``. ``polish``: the
    best runs' L-BFGS iterations (:func:`~mtg_env.suites.floors.true_floor`; 0: the unpolished floors every key
    before the twenty-eighth session was scored from). A file of the other recipe is refused, so no cell mixes them.

    Raises:
        ValueError: if ``DIR/floors.json`` holds best-run floors of the other recipe; it says how to go on.
    """

    def __init__(self, path: Path | None, device: str = "cpu", polish: int = BEST_RUN_POLISH):
        self.path = path
        self.device = device
        self.polish = polish
        self.table: dict[str, Any] = {}
        if path is not None and path.exists():
            self.table = json.loads(path.read_text())
            other = "best run" if polish else "best run, polished"
            if any(v.get("kind") == other for v in self.table.values()):
                raise ValueError(
                    f"floors: {path} holds {'unpolished' if polish else 'polished'} best-run floors (kind {other!r}), "
                    f"and this run computes {'polished' if polish else 'unpolished'} ones (polish={polish}): a cell "
                    "would mix the two. Give another directory, or play with the recipe the file was made by "
                    "(polish=0 for the keys before the twenty-eighth session)"
                )

    def get(self, suite: str, options: dict[str, Any]) -> Floor:
        key = json.dumps([suite, options], sort_keys=True, default=str)
        if key not in self.table:
            game = _game(suite, options, 1, device=self.device)
            self.table[key] = asdict(true_floor(game.suite, polish=self.polish))
            if self.path is not None:
                self.path.write_text(json.dumps(self.table, indent=0, sort_keys=True))
        return Floor(**self.table[key])


#: A gap below this fraction of max(1, |L*|, |L_T|) is round-off: it counts as reached, so two rules at the floor tie
#: (an exact floor lets gaps fall to 1e-16, where ratios of round-off would decide a cell).
RESOLUTION = {"float64": 1e-12, "float32": 1e-6}


def _gaps(start: Tensor, final: Tensor, floor: float, dtype: str = "float64") -> np.ndarray:
    """``[B]`` normalised gaps (L_T − L*) / (L_0 − L*), at least the dtype's resolution; +inf where diverged."""
    s, f = start.cpu().numpy(), final.cpu().numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        resolution = RESOLUTION[dtype] * np.maximum(np.maximum(1.0, abs(floor)), np.abs(f))
        gap = np.maximum(f - floor, resolution) / np.maximum(s - floor, 1e-300)
        return np.where(np.isfinite(f), gap, np.inf)


class _TuningProgress:
    """The gaps of a tuning's finished batches, per ``(draw, rung)``, mirrored to a JSON file when one is given, each
    with the CPU model and torch version it was played on (round-off depends on them)."""

    def __init__(
        self,
        path: str | Path | None,
        config: SealedConfig,
        suite: str,
        horizon: int,
        consensus: str,
        polish: int = BEST_RUN_POLISH,
    ):
        from agents.learned.family import draw_games

        self.path = None if path is None else Path(path)
        draws = draw_games(suite, "tuning", config.tuning_draws, config.tuning_seeds + 1)
        drawn = json.dumps([[options, list(seeds)] for options, seeds in draws], sort_keys=True, default=str)
        self.tuning = {"family": suite, "horizon": horizon, "consensus": consensus,
                       "baselines": list(config.baselines), "search": _plain(asdict(config.search)),
                       "tuning_draws": config.tuning_draws, "tuning_seeds": config.tuning_seeds, "eta": config.eta,
                       "device": config.device, "draws": hashlib.sha256(drawn.encode()).hexdigest(),
                       "floor_polish": polish}  # fmt: skip
        self.gaps: dict[str, list[float]] = {}
        self.where: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            kept = load_json(self.path)
            differ = sorted(k for k in self.tuning if kept.get("tuning", {}).get(k) != self.tuning[k])
            if differ:
                raise ValueError(
                    f"progress: {self.path} holds another tuning's draws (it differs in {', '.join(differ)}: "
                    f"{ {k: kept.get('tuning', {}).get(k) for k in differ} } against "
                    f"{ {k: self.tuning[k] for k in differ} }); give another progress file (mtg-env bench: another "
                    f"--out), or delete {self.path} to tune afresh"
                    + (
                        " (floor_polish: its gaps were measured from other floors; scripts/rescore_tuning.py "
                        "re-scores a tuning from the unpolished floors to the polished ones)"
                        if "floor_polish" in differ
                        else ""
                    )
                )
            self.gaps, self.where = kept["gaps"], kept.get("where", {})

    def __contains__(self, item: tuple[int, str]) -> bool:
        return f"{item[1]} {item[0]}" in self.gaps

    def __getitem__(self, item: tuple[int, str]) -> np.ndarray:
        return np.asarray(self.gaps[f"{item[1]} {item[0]}"], dtype=np.float64)

    def add(self, draw: int, rung: str, gaps: np.ndarray) -> None:
        self.gaps[f"{rung} {draw}"] = [float(g) for g in gaps]
        self.where[f"{rung} {draw}"] = f"{cpu_model()}; torch {torch.__version__}"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            dump_json(self.path, {"tuning": self.tuning, "gaps": self.gaps, "where": self.where}, indent=None)


def rung0_survivors(mean0: np.ndarray, config: SealedConfig, pools: dict[str, list[dict[str, Any]]]) -> list[int]:
    """Successive halving's rung 0: per baseline in turn, its best 1/eta candidates by mean gap ``mean0`` (one entry
    per candidate of every pool, in pool order; ties kept in pool order), as indices into the pools laid end to end."""
    kept: list[int] = []
    offset = 0
    for b in config.baselines:
        count = len(pools[b])
        order = np.argsort(mean0[offset : offset + count], kind="stable")
        kept += [offset + int(i) for i in order[: math.ceil(count / config.eta)]]
        offset += count
    return kept


def tune_baselines(
    config: SealedConfig,
    suite: str,
    horizon: int,
    floors: _Floors,
    consensus: str = "sum",
    progress: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Successive halving for every baseline on the tuning stream, every game under the consensus rule
    ``consensus``: per baseline its chosen candidate, its rung-1 mean gap, the game-steps spent and whether the
    choice lies on an edge of the step-size grid.

    ``progress`` (a JSON file, optional) keeps each tuning draw's gaps as soon as its batch is played, so a tuning
    that is stopped (a digits cell at 5× plays 12 M game-steps) resumes where it stopped: a batch already in the file
    is not played again. Its gaps are read back exactly, so a tuning resumed on the same CPU model and torch chooses
    what an unbroken one does; each batch records where it was played (``where``), as a tuning resumed elsewhere
    mixes two machines' round-off (a cell's ``tuning_seconds`` then counts only the batches this run played).

    Raises:
        ValueError: if ``progress`` holds another tuning's draws (another family, horizon, rule, search space, tuning
            stream or drawn games); it names what differs.
    """
    from agents.learned.family import draw_games

    draws = draw_games(suite, "tuning", config.tuning_draws, config.tuning_seeds + 1)
    pools = {b: config.search.candidates(b) for b in config.baselines}
    everyone = [c for b in config.baselines for c in pools[b]]
    done = _TuningProgress(progress, config, suite, horizon, consensus, floors.polish)

    def played(
        rung: str, d: int, options: dict[str, Any], candidates: list[dict[str, Any]], seeds: list[int]
    ) -> np.ndarray:
        if (d, rung) not in done:
            game = _game(suite, options, horizon, device=config.device, consensus=consensus)
            start, final = play_candidates(game, candidates, seeds)
            done.add(d, rung, _gaps(start, final, floors.get(suite, options).value, _dtype(suite)))
        return done[d, rung]

    # Rung 0: every candidate of every baseline on each tuning draw, its first seed (one batch per draw).
    rung0 = np.zeros((len(draws), len(everyone)))
    for d, (options, seeds) in enumerate(draws):
        rung0[d] = played("rung0", d, options, everyone, [seeds[0]] * len(everyone))
    kept = [everyone[i] for i in rung0_survivors(rung0.mean(0), config, pools)]
    # Rung 1: the survivors on every tuning draw × the other tuning seeds.
    rung1 = np.zeros((len(draws), config.tuning_seeds, len(kept)))
    for d, (options, seeds) in enumerate(draws):
        batch = [c for _ in seeds[1:] for c in kept]
        gaps = played("rung1", d, options, batch, [s for s in seeds[1:] for _ in kept])
        rung1[d] = gaps.reshape(config.tuning_seeds, len(kept))
    mean1 = rung1.reshape(-1, len(kept)).mean(0)
    lrs = config.search.step_sizes()
    chosen: dict[str, dict[str, Any]] = {}
    for b in config.baselines:
        idx = [i for i, c in enumerate(kept) if c["baseline"] == b]
        best = min(idx, key=lambda i: (mean1[i], i))
        cand = kept[best]
        chosen[b] = {"knobs": cand, "tuning_gap": float(mean1[best]),
                     "game_steps": config.tuning_cost(b, 1, suite) * horizon // config.horizon(suite, 1),
                     "at_edge": cand["lr"] in (lrs[0], lrs[-1])}  # fmt: skip
    return chosen


def paired_ratio_ci(
    a: np.ndarray, b: np.ndarray, statistic: Any, reps: int, seed: int = 0, groups: ArrayLike | None = None
) -> tuple[float, float, float]:
    """``(point, low, high)``: statistic(a) / statistic(b) and its paired bootstrap 95 % CI (the two entrants' games
    resampled together); +inf where a's statistic is not finite, order statistics when some replicates are infinite.

    ``groups``: ``None`` resamples the games one by one, as if each were drawn on its own. Else a label per game of
    the unit it was sampled in (a cell's drawn game: its seeds share the draw, so their gaps are not independent), and
    each replicate resamples whole units with replacement, every game of a chosen unit with it (a cluster bootstrap:
    the CI is for the population of units, here of drawn games, not of the seeds of these few draws).

    Raises:
        ValueError: if ``a`` and ``b`` are not 1-D of the same length, or ``groups`` does not give one label per game.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or not len(a):
        raise ValueError(f"a and b must be 1-D arrays of one gap per game, the same games; got {a.shape} and {b.shape}")

    def ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sx, sy = statistic(x), statistic(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(np.isfinite(sx), sx / np.where(sy > 0, sy, np.nan), np.inf)
        return np.where(np.isnan(r), np.inf, r)

    rng = np.random.default_rng(seed)
    if groups is None:
        index = rng.integers(0, len(a), size=(reps, len(a)))
        boots = ratio(a[index], b[index])
    else:
        units = _units(groups, len(a))
        picks = rng.integers(0, len(units), size=(reps, len(units)))
        if len({len(u) for u in units}) == 1:  # every unit as large: one [reps, games] index
            index = np.stack(units)[picks].reshape(reps, -1)
            boots = ratio(a[index], b[index])
        else:  # replicates of different sizes: one at a time
            boots = np.array([ratio(a[i], b[i]) for i in (np.concatenate([units[u] for u in row]) for row in picks)])
    finite = np.isfinite(boots).all()
    lo, hi = np.percentile(boots, [2.5, 97.5], method="linear" if finite else "nearest")
    return float(ratio(a[None], b[None])[0]), float(lo), float(hi)


def _units(groups: ArrayLike, n: int) -> list[np.ndarray]:
    """The games' indices of each unit of ``groups`` (one label per game), in the order the units first appear."""
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must give one label per game ({n}), got an array of shape {labels.shape}")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == u) for u in np.argsort(first, kind="stable")]


def draw_groups(draws: list[tuple[Any, Any]]) -> np.ndarray:
    """A cell's games' units for :func:`paired_ratio_ci`: the index of the draw each game was played on (a cell plays
    every draw's seeds in turn, so its games are in draw order)."""
    return np.repeat(np.arange(len(draws)), [len(seeds) for _, seeds in draws])


def _mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=-1)


def _median(x: np.ndarray) -> np.ndarray:
    return np.median(np.asarray(x, dtype=np.float64), axis=-1)


def run_cell(
    config: SealedConfig,
    suite: str,
    multiple: int,
    floors: _Floors,
    rules: dict[str, Any],
    key: str,
    stream: str = "test",
    consensus: str = "sum",
    progress: str | Path | None = None,
) -> dict[str, Any]:
    """One family at one horizon under one consensus rule: tune the baselines, play everyone on the sealed draws
    (``stream="validation"``: the development stream's instead; ``key`` is then unused), compare. ``rules``: the
    entrants' learned rules by label. L* does not depend on the consensus rule (it is the training objective's
    minimum), so ``floors`` serves every rule. ``progress``: the tuning's file of finished draws
    (:func:`tune_baselines`)."""
    from agents.learned.family import draw_games

    horizon = config.horizon(suite, multiple)
    began = time.perf_counter()
    chosen = tune_baselines(config, suite, horizon, floors, consensus, progress=progress)
    tuned_s = time.perf_counter() - began
    draws = draw_games(suite, stream, config.test_draws, config.test_seeds, key=key if stream == "test" else None)
    floor_kinds = []
    gaps: dict[str, list[float]] = {}
    for options, seeds in draws:
        game = _game(suite, options, horizon, device=config.device, consensus=consensus)
        batch = [chosen[b]["knobs"] for b in config.baselines for _ in seeds]
        start, final = play_candidates(game, batch, list(seeds) * len(config.baselines))
        per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, b in enumerate(config.baselines):
            sl = slice(i * len(seeds), (i + 1) * len(seeds))
            per[b] = (start[sl].cpu().numpy(), final[sl].cpu().numpy())
        for agent, rule in rules.items():
            rule_start, rule_final = play_rule(rule, suite, options, horizon, list(seeds), config.device, consensus)
            per[agent] = (rule_start.cpu().numpy(), rule_final.cpu().numpy())
        floor = floors.get(suite, options)
        for _, reached in per.values():  # a non-convex suite's best run is lowered to any loss a game reached
            floor = floor.lowered(float(np.min(reached)))
        floor_kinds.append(floor.kind)
        for name, (s0, s1) in per.items():
            gaps.setdefault(name, []).extend(
                _gaps(torch.as_tensor(s0), torch.as_tensor(s1), floor.value, _dtype(suite)).tolist()
            )
    arrays = {k: np.asarray(v) for k, v in gaps.items()}
    base = list(config.baselines)
    best_mean = min(base, key=lambda k: float(_mean(arrays[k])))
    best_median = min(base, key=lambda k: float(_median(arrays[k])))
    groups = draw_groups(draws) if config.bootstrap_unit == "draw" else None
    entrants = {}
    for agent in rules:
        entrants[agent] = {
            "ratio_mean": paired_ratio_ci(
                arrays[agent], arrays[best_mean], _mean, config.bootstrap_reps, groups=groups
            ),
            "ratio_median": paired_ratio_ci(
                arrays[agent], arrays[best_median], _median, config.bootstrap_reps, groups=groups
            ),
        }
    return {
        "family": suite, "multiple": multiple, "horizon": horizon, "consensus": consensus,
        "games": len(arrays[base[0]]),
        "mean": {k: float(_mean(v)) for k, v in arrays.items()},
        "median": {k: float(_median(v)) for k, v in arrays.items()},
        "diverged": {k: int(np.sum(~np.isfinite(v))) for k, v in arrays.items()},
        "at_floor": {k: int(np.sum(v <= AT_FLOOR)) for k, v in arrays.items()},
        "best_mean": best_mean, "best_median": best_median, "tuned": chosen, "entrants": entrants,
        "bootstrap_unit": config.bootstrap_unit,
        "floor_kinds": sorted(set(floor_kinds)), "gaps": {k: v.tolist() for k, v in arrays.items()},
        "draws": [{"options": _plain(options), "seeds": [int(s) for s in seeds]} for options, seeds in draws],
        "seconds": time.perf_counter() - began, "tuning_seconds": tuned_s,
    }  # fmt: skip


def _check_rules(config: SealedConfig, key: str, stream: str) -> None:
    """Build every tuning and scored game of every cell under its consensus rule before any is played, so a rule a
    family cannot play (too few tasks, losses a log-based rule cannot take) is refused before hours are spent."""
    from agents.learned.family import draw_games

    for suite in config.families:
        draws = draw_games(suite, "tuning", config.tuning_draws, 1)
        draws += draw_games(suite, stream, config.test_draws, 1, key=key if stream == "test" else None)
        for consensus in config.consensus:
            for options, _ in draws:
                try:
                    _game(suite, options, 1, device=config.device, consensus=consensus)
                except ValueError as err:
                    raise ValueError(
                        f"consensus: rule {consensus!r} cannot play family {suite!r} (draw {options}): {err}; drop "
                        "it from consensus = [...] or the family from families"
                    ) from None


def run_sealed(
    config: SealedConfig,
    out: str | Path,
    test_key: str | None = None,
    progress: bool = True,
    stream: str = "test",
) -> dict[str, Any]:
    """Run every cell of ``config`` into ``out`` (``report.md``, ``report.json``, ``floors.json``); returns the
    report. ``test_key`` overrides the config's sealed key (``"new"``: a fresh random one, printed);
    ``stream="validation"`` scores on the development stream instead of the sealed one. Each cell's tuning keeps its
    finished draws in ``out/tuning/FAMILY_RULE_MULTIPLE.json``: run again into the same ``out`` after a stop, and
    tuning resumes from them."""
    from agents.learned import learned_agent
    from agents.learned.family import DEFAULT_TEST_KEY, check_key, new_test_key

    config.check()
    key = test_key if test_key is not None else (config.test_key or DEFAULT_TEST_KEY)
    key = new_test_key() if key == "new" else check_key(key)
    if config.consensus != ("sum",):  # the sum rule plays every family
        _check_rules(config, key, stream)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    floors = _Floors(out / "floors.json", config.device)
    torch.set_num_threads(1)
    cells = []
    column = show_consensus(config)
    # Every entrant's file is read once, before any cell: a file replaced while the run goes on changes nothing, and
    # the report names the bytes each label played (sha256).
    players = {suite: {label: learned_agent(agent, suite=suite, weights=weights, allow_other_suite=weights is not None)
                       for label, agent, weights in config.players(suite)} for suite in config.families}  # fmt: skip
    played = {f"{label} ({suite})": {"weights": str(p.weights), "sha256": p.sha256}
              for suite, by_label in players.items() for label, p in by_label.items()}  # fmt: skip

    def tuning(suite: str, multiple: int, consensus: str) -> Path:
        return out / "tuning" / f"{suite}_{consensus}_{multiple}.json"

    cell_keys = [(s, k, c) for s in config.families for k in config.multiples for c in config.consensus]
    for suite, multiple, consensus in cell_keys:  # a stale progress file is refused before any cell plays
        _TuningProgress(
            tuning(suite, multiple, consensus), config, suite, config.horizon(suite, multiple), consensus, floors.polish
        )
    for suite in config.families:
        rules = {label: p.given.to(config.device) for label, p in players[suite].items()}  # a portfolio picks per game
        for multiple in config.multiples:
            for consensus in config.consensus:
                progress_file = tuning(suite, multiple, consensus)
                cell = run_cell(config, suite, multiple, floors, rules, key, stream, consensus, progress=progress_file)
                cells.append(cell)
                if progress:
                    print(cell_rows(cell, header=not cells[:-1], consensus=column), flush=True)
    report = {"name": config.name, "test_key": key, "stream": stream, "search": config.search.describe(),
              "config": _plain(asdict(config)), "weights": played, "cells": cells}  # fmt: skip
    (out / "report.json").write_text(json.dumps(_plain(report), indent=1))
    (out / "report.md").write_text(report_markdown(config, report))
    return report


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
