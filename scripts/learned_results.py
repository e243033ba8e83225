"""The learned agents against the tuned baselines, on held-out games of each family (docs/results/learned.md).

    python scripts/learned_results.py --agent learned_mlp --suite quadratic
    python scripts/learned_results.py --agent learned_mlp --suite quadratic --shifted

For ``--configs`` games drawn from the suite's family (or its shifted family; :mod:`agents.learned.family`),
never seen in meta-training, and each of 1×, 2×, 5× the meta-training horizon:

* every baseline (gradient, momentum, adam, rmsprop) is tuned per horizon with :mod:`mtg_env.tuning` (one
  protocol for all: the grid and budget are printed), two ways: per family (one step size chosen on ``--configs``
  other draws of the family, the issue's protocol) and per draw (an oracle: on tuning seeds of each held-out draw
  itself); then played on ``--seeds`` held-out seeds. The tuned baselines are cached in ``--cache``;
* the learned agent (its shipped weights, or ``--weights``) plays the same held-out seeds, untuned.

A game's score is its final training loss relative to its start, (L_T − L*) / (L_0 − L*), with L = Σ_m ℓ_m on
the whole training objective and L* the floor (the quadratic game's minimum, else 0); a diverged game scores
+inf. The table gives the mean and the median over the configs × seeds games, and the learned agent's ratio
to the best tuned baseline for each statistic with a paired bootstrap 95 % CI (2000 resamples, seeded).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.learned import EngineDriver, learned_agent, load_rule
from agents.learned.family import loss_floor, sample_config
from mtg_env import engine
from mtg_env._io import dump_json, load_json
from mtg_env.engine import Game
from mtg_env.tuning import Baseline, TuningProtocol, Workload, evaluate, relative_score, tune, tune_family

BASELINES = ("gradient", "momentum", "adam", "rmsprop")
#: Draws of the evaluation games: a stream meta-training never uses (it draws from [seed, 1, iteration]).
EVAL_STREAM = (20261126, 7)
#: Draws the baselines are tuned on for the family (the issue's protocol): a third stream, disjoint from both.
TUNE_STREAM = (20261126, 11)
PROTOCOL = TuningProtocol(low=1e-4, high=1.0, points_per_decade=3, tuning_seeds=(100_000, 100_001),
                          eval_seeds=tuple(range(5)))  # fmt: skip


def _score(final: list[float] | None, initial: list[float], floor: float) -> float:
    if final is None or not all(math.isfinite(v) for v in final):
        return math.inf
    return (sum(final) - floor) / max(sum(initial) - floor, 1e-300)


def play_learned(rule: Any, workload: Workload, seeds: list[int]) -> list[dict[str, Any]]:
    """The learned rule (batched form) on ``seeds`` of ``workload``: per game its initial and final training
    losses and held-out metrics (``None`` when it diverged)."""
    env = workload.make_env()
    suite = env.suite
    mode = "step_size" if type(rule).__name__ == "StepRule" else "update"
    game = env.game if mode == "update" else Game(suite, env.consensus, action_mode="step_size", horizon=env.max_cycles)
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
    out_rows = []
    with torch.no_grad():
        state, out = engine.reset(game, seeds)
        initial = [
            suite.losses(state.heads[b], state.trunk[b], suite.train_batch()).tolist() for b in range(len(seeds))
        ]
        memory = driver.start(out)
        alive = torch.ones(len(seeds), dtype=torch.bool, device=game.device)
        for _ in range(game.horizon):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
            alive &= ~out.diverged
        for b in range(len(seeds)):
            final = suite.losses(state.heads[b], state.trunk[b], suite.train_batch()).tolist() if alive[b] else None
            held = suite.evaluate(state.heads[b], state.trunk[b]) if final is not None else None
            out_rows.append({"initial": initial[b], "final": final, "held_out": held})
    return out_rows


def _accuracy(held_out: dict[str, dict[str, float]] | None) -> float:
    if not held_out:
        return math.nan
    accs = [v["test_accuracy"] for v in held_out.values() if "test_accuracy" in v]
    return float(np.mean(accs)) if accs else math.nan


def baseline_scores(
    suite: str,
    shifted: bool,
    configs: list[dict[str, Any]],
    seeds: list[int],
    horizon: int,
    dtype: str,
    protocol: TuningProtocol,
    cache: Path | None,
    tuning_configs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every baseline tuned at ``horizon`` and played on the held-out ``seeds`` of the held-out draws ``configs``:
    per baseline the scores and accuracies of the configs × seeds games (config-major) and the tuned step sizes.

    With ``tuning_configs`` (the issue's protocol) each baseline gets one step size for the family, chosen on those
    tuning draws (:func:`mtg_env.tuning.tune_family`), as the learned agent was meta-trained on the family; without,
    it is tuned on each held-out draw itself (other seeds of the very game it is scored on: an oracle). With
    ``cache``, read from / written to ``cache/<suite>[_shifted]_<family|draw>_T<horizon>.json`` when the draws,
    seeds and protocol match (the baselines do not depend on the learned rule; tuning them is most of the time)."""
    mode = "draw" if tuning_configs is None else "family"
    key = {"suite": suite, "shifted": shifted, "configs": configs, "seeds": seeds, "horizon": horizon,
           "dtype": dtype, "protocol": protocol.to_dict(), "tuning_configs": tuning_configs}  # fmt: skip
    path = None if cache is None else cache / f"{suite}{'_shifted' if shifted else ''}_{mode}_T{horizon}.json"
    if path is not None and path.exists():
        stored = load_json(path)
        if stored.get("key") == json.loads(json.dumps(key, default=str)):
            return stored
    scores: dict[str, list[float]] = {name: [] for name in BASELINES}
    accs: dict[str, list[float]] = {name: [] for name in BASELINES}
    lrs: dict[str, list[float]] = {name: [] for name in BASELINES}
    family: dict[str, float] = {}
    if tuning_configs is not None:
        tuning = [Workload(suite, "sum", horizon, tuple(sorted(c.items())), dtype=dtype) for c in tuning_configs]
        floors = [loss_floor(w.make_env().suite) for w in tuning]
        family = {name: tune_family(Baseline(name), tuning, protocol, floors).best_lr for name in BASELINES}
    for options in configs:
        workload = Workload(suite, "sum", horizon, tuple(sorted(options.items())), dtype=dtype)
        floor = loss_floor(workload.make_env().suite)
        for name in BASELINES:
            best_lr = family[name] if family else tune(Baseline(name), workload, protocol).best_lr
            lrs[name].append(best_lr)
            for r in evaluate(Baseline(name), workload, best_lr, seeds, nash_gap=False):
                scores[name].append(relative_score(r, floor))
                accs[name].append(_accuracy(r.held_out))
    result = {"key": json.loads(json.dumps(key, default=str)), "scores": scores, "accuracy": accs, "tuned_lrs": lrs}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        dump_json(path, result)
    return result


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _ratio_ci(a: np.ndarray, b: np.ndarray, stat: Any, rng: np.random.Generator) -> tuple[float, float, float]:
    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        sx, sy = stat(x), stat(y)
        return math.inf if not math.isfinite(sx) else (sx / sy if sy > 0 else math.inf)

    point = ratio(a, b)
    boots = []
    for _ in range(2000):
        idx = rng.integers(0, len(a), len(a))
        boots.append(ratio(a[idx], b[idx]))
    values = np.asarray(boots)
    # With diverged games some resampled ratios are inf: take order statistics (no inf − inf interpolation).
    lo, hi = np.percentile(values, [2.5, 97.5], method="linear" if np.isfinite(values).all() else "nearest")
    return point, float(lo), float(hi)


def run(args: argparse.Namespace, rule: Any = None) -> dict[str, Any]:
    """The table for ``args`` (see :func:`main`); ``rule``: a rule module to score instead of ``args``' weights."""
    torch.set_num_threads(1)
    if rule is None:
        rule = learned_agent(args.agent, suite=args.suite).given if args.weights is None else load_rule(args.weights)[1]
    suite_index = ["quadratic", "regression", "digits"].index(args.suite)
    rng = np.random.default_rng([*EVAL_STREAM, suite_index])
    configs = [sample_config(args.suite, rng, shifted=args.shifted) for _ in range(args.configs)]
    tune_rng = np.random.default_rng([*TUNE_STREAM, suite_index])
    tuning_configs = [sample_config(args.suite, tune_rng, shifted=args.shifted) for _ in range(args.configs)]
    dtype = "float64" if args.suite == "quadratic" else "float32"
    seeds = list(range(args.seeds))
    protocol = TuningProtocol(
        low=PROTOCOL.low, high=PROTOCOL.high, points_per_decade=PROTOCOL.points_per_decade,
        tuning_seeds=PROTOCOL.tuning_seeds, eval_seeds=tuple(seeds),
    )  # fmt: skip
    report: dict[str, Any] = {"agent": args.agent, "suite": args.suite, "shifted": args.shifted,
                              "protocol": protocol.describe(), "cells": []}  # fmt: skip
    boot_rng = np.random.default_rng(0)
    print(f"{args.agent} on {'shifted ' if args.shifted else ''}{args.suite}: {protocol.describe()} Family tuning: "
          f"one step size per baseline and horizon for {len(tuning_configs)} tuning draws of the family; "
          "per-draw tuning (oracle): on each held-out draw itself.")  # fmt: skip
    print("| horizon | tuning | mean: learned vs best tuned | ratio [95% CI] | median: learned vs best tuned | "
          "ratio [95% CI] | learned diverged |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for multiple in args.multiples:
        horizon = args.train_horizon * multiple
        start = time.perf_counter()
        learned: list[float] = []
        learned_acc: list[float] = []
        for options in configs:
            workload = Workload(args.suite, "sum", horizon, tuple(sorted(options.items())), dtype=dtype)
            floor = loss_floor(workload.make_env().suite)
            for row in play_learned(rule, workload, seeds):
                learned.append(_score(row["final"], row["initial"], floor))
                learned_acc.append(_accuracy(row["held_out"]))
        for tuning in getattr(args, "tunings", ("family", "draw")):
            base = baseline_scores(args.suite, args.shifted, configs, seeds, horizon, dtype, protocol, args.cache,
                                   tuning_configs if tuning == "family" else None)  # fmt: skip
            arrays = {name: np.asarray(base["scores"][name], dtype=float) for name in BASELINES}
            arrays["learned"] = np.asarray(learned)
            acc_arrays = {name: np.asarray(base["accuracy"][name], dtype=float) for name in BASELINES}
            acc_arrays["learned"] = np.asarray(learned_acc)
            best_mean = min(BASELINES, key=lambda k: float(np.mean(arrays[k])))
            best_median = min(BASELINES, key=lambda k: float(np.median(arrays[k])))
            cell = {
                "multiple": multiple,
                "horizon": horizon,
                "tuning": tuning,
                "games": len(learned),
                "mean": {k: float(np.mean(v)) for k, v in arrays.items()},
                "median": {k: float(np.median(v)) for k, v in arrays.items()},
                "diverged": {k: int(np.sum(~np.isfinite(v))) for k, v in arrays.items()},
                "accuracy": {k: _nanmean(a) for k, a in acc_arrays.items()},
                "tuned_lrs": base["tuned_lrs"],
                "best_mean": best_mean,
                "best_median": best_median,
                "ratio_mean": _ratio_ci(arrays["learned"], arrays[best_mean], np.mean, boot_rng),
                "ratio_median": _ratio_ci(arrays["learned"], arrays[best_median], np.median, boot_rng),
                "seconds": time.perf_counter() - start,
            }
            report["cells"].append(cell)
            print(_row(cell, args.suite), flush=True)
    return report


def _row(cell: dict[str, Any], suite: str) -> str:
    rm, rd = cell["ratio_mean"], cell["ratio_median"]
    acc = ""
    if suite == "digits":
        acc = f" | acc {cell['accuracy']['learned']:.3f} vs {cell['accuracy'][cell['best_mean']]:.3f}"
    return (
        f"| {cell['multiple']}× ({cell['horizon']}) | {cell['tuning']} | "
        f"{cell['mean']['learned']:.3g} vs {cell['best_mean']} {cell['mean'][cell['best_mean']]:.3g} | "
        f"**{rm[0]:.2f}** [{rm[1]:.2f}, {rm[2]:.2f}] | "
        f"{cell['median']['learned']:.3g} vs {cell['best_median']} {cell['median'][cell['best_median']]:.3g} | "
        f"**{rd[0]:.2f}** [{rd[1]:.2f}, {rd[2]:.2f}] | {cell['diverged']['learned']}{acc} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="learned_mlp", choices=["learned_mlp", "learned_lstm", "learned_step"])
    parser.add_argument("--suite", default="quadratic", choices=["quadratic", "regression", "digits"])
    parser.add_argument("--weights", type=Path, default=None, help="a rule file instead of the shipped weights")
    parser.add_argument("--shifted", action="store_true", help="the shifted family")
    parser.add_argument("--configs", type=int, default=4, help="held-out game draws (default 4)")
    parser.add_argument("--seeds", type=int, default=5, help="held-out seeds per draw (default 5)")
    parser.add_argument("--train-horizon", type=int, default=100, help="the meta-training horizon (default 100)")
    parser.add_argument("--multiples", default="1,2,5", help="horizons as multiples of it (default 1,2,5)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/baselines"),
        help="where the tuned baselines' scores are kept between runs (default runs/baselines)",
    )
    parser.add_argument("--tuning", default="family,draw", help="which tunings to run (default family,draw)")
    args = parser.parse_args()
    args.multiples = [int(m) for m in args.multiples.split(",")]
    args.tunings = tuple(args.tuning.split(","))
    report = run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
