"""A trunk step that reads the consensus's moves (``MLPRuleConfig.trunk_reads_moves``) against one that reads the clock
alone: the regression specialist's options, meta-trained from several seeds each, picked on the tuning stream, scored on
the validation stream (never the test stream).

    python docs/sealed/regression/moves.py train VARIANT SEED   # VARIANTS: moves, clock, moves+heads, ...
                                                                 # -> runs/moves/<VARIANT>_s<SEED>/best.pt
    python docs/sealed/regression/moves.py score STREAM CONSENSUS MULTIPLE NAME=FILE [NAME=FILE ...]
                                                   [NAME=by_kind:LINEAR,MLP]   # entrants LINEAR and MLP by trunk kind
    python docs/sealed/regression/moves.py scalefree STREAM CONSENSUS MULTIPLE NAME=FILE ...   # the same games, scored
                                                   # by the per-game ratios' geometric mean (not the bar)
    python docs/sealed/regression/moves.py score STREAM CONSENSUS MULTIPLE NAME=FILE ... --family quadratic
                                                   # another family's cell, its games as one group

``train``: 240 TBPTT iterations (one thread, about 3.5 minutes here) on the regression family under ``sum``, ``mean``
and ``mgda`` in turn, horizons 20 -> 50 -> 100, the meta-loss from the true floor with late weight 1, the best rule by
the final gap on held-out draws of meta-training's own stream, then the trunk step search of the shipped recipe. Both
variants play what the regression specialist shipped before K16 played (its minibatch brake, the trunk's AMSGrad share
with its floor, the sum scaling, the balance under ``mgda``) and a cosine decay of every update (``anneal = 1``);
``moves`` adds the trunk's reading of the moves. ``+heads`` (eighteenth session) searches the heads' steps with the
trunk's, every pair of :data:`HEADS` and the trunk's factors (``MetaTrainConfig.head_search``); ``+final`` scores that
search by the final gap rather than the meta-loss; ``+wide`` searches the heads' steps up to 8x (:data:`WIDE`);
``+long`` (twenty-first session) trains ``moves+heads`` with eight times the compute, ``+t50`` with 50-step truncations
(:data:`OVERRIDES`); ``+linear`` (twenty-second session) on the family's linear-trunk games alone (:data:`FAMILY_OF`).

``score``: the stream's first 16 draws x 3 seeds of the family, as a sealed cell plays them, the four baselines at
the knobs K15's cell chose on the tuning stream (docs/sealed/general/k15/regression_<rule>_<multiple>.json); for each
entrant, on all games, the linear-trunk and the MLP-trunk ones: the mean-gap and the median-gap ratio to the best
tuned baseline with paired bootstrap 95 % CIs, and the geometric mean of the per-game ratios to the best baseline by
median, over the games where neither diverged (a tuned baseline can: ``div`` counts them). ``NAME=by_kind:A,B`` adds an
entrant that plays as entrant A on the linear-trunk games and as B on the MLP-trunk ones (a selector that knows the
kind, as the portfolio's size feature tells it apart). The picked files and the outputs are beside this script
(``moves/``)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agents.learned.checkpoint import load_rule
from agents.learned.family import _REGISTERED, Family, best_loss_floor, draw_games, get_family, register_family
from agents.learned.meta_config import MINIBATCH_BRAKE, MetaTrainConfig
from agents.learned.train import meta_train
from mtg_env.bench.sealed import _gaps, _mean, _median, paired_ratio_ci
from mtg_env.bench.sealed_search import _dtype, _game, play_candidates, play_rule

HERE = Path(__file__).parent
REPS = 2000  # the sealed cells' bootstrap replicates
#: What the regression specialist shipped before K16 played (its recipe's options and those added after its training),
#: and anneal. (The ``moves+heads`` seed-3 file trained so is the one shipped since K16.)
PLAYED = {**MINIBATCH_BRAKE, "brake_threshold": 0.25, "trunk_adam": True, "init_trunk_adam_lr": 0.03,
          "adam_floor": 0.01, "sum_scaled": True, "balance_min_bounded": True, "anneal": 1.0}  # fmt: skip
HEADS = (1.0, 1.41, 2.0, 2.83, 4.0)
WIDE = (*HEADS, 5.66, 8.0)  # the heads' grid widened: the +heads pick (seed 3) kept its edge, 4


#: The variants ``train`` takes: whether the trunk reads the moves, the heads' step factors searched with the trunk's
#: (eighteenth session: ``+heads``; ``()``: the trunk's alone, as the seventeenth session trained), and what the search
#: scores (``MetaTrainConfig.search_metric``; ``+final``: the final gap the cells score, else the meta-loss).
VARIANTS = {
    "moves": (True, (), "mean"), "clock": (False, (), "mean"),
    "moves+heads": (True, HEADS, "mean"), "clock+heads": (False, HEADS, "mean"),
    "moves+heads+final": (True, HEADS, "final"), "clock+heads+final": (False, HEADS, "final"),
    "moves+wide": (True, WIDE, "mean"), "moves+heads+long": (True, HEADS, "mean"),
    "moves+heads+t50": (True, HEADS, "mean"), "moves+heads+linear": (True, HEADS, "mean"),
}  # fmt: skip
#: Meta-training's settings where a variant's are not the recipe's (240 iterations of 8 games, 10-step truncations;
#: twenty-first session): ``+long``, the ``moves+heads`` recipe with four times the iterations and twice the games,
#: eight times the compute; ``+t50``, with 50-step truncations (a 20- or 50-step game is one truncation, a 100-step
#: one two).
OVERRIDES: dict[str, dict[str, int]] = {"moves+heads+long": {"iterations": 960, "games": 16},
                                        "moves+heads+t50": {"truncation": 50}}  # fmt: skip
#: The family a variant meta-trains on where it is not ``regression`` (twenty-second session): ``+linear``, the
#: regression family's linear-trunk games alone (a linear-trunk expert for the portfolio, whose trunk-size feature
#: tells the kinds apart: linear trunks hold 10-78 parameters, MLP trunks 114 or more).
FAMILY_OF = {"moves+heads+linear": "regression_linear"}


def _linear_trunk(rng: np.random.Generator, shifted: bool) -> dict:
    """A regression draw with a linear trunk: the family's draw (every random choice as it makes them), the kind set."""
    return {**get_family("regression").sample(rng, shifted), "trunk": "linear"}


def _family(name: str) -> str:
    """``name``, registered in this process first where it is one of :data:`FAMILY_OF`'s."""
    if name == "regression_linear" and name not in _REGISTERED:
        register_family(Family(name, _linear_trunk, "regression"))
    return name


def train(variant: str, seed: int) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    moves, heads, search_metric = VARIANTS[variant]
    config = MetaTrainConfig(
        agent="learned_mlp", suite=_family(FAMILY_OF.get(variant, "regression")), consensus=("sum", "mean", "mgda"),
        iterations=240, games=8, configs=2,
        horizons=(20, 50, 100), meta_lr=3e-3, floor="true", val_every=20, val_metric="final",
        late_weight=1.0, rule={**PLAYED, "trunk_reads_moves": moves}, seed=seed,
        trunk_search=(0.5, 0.71, 1.0, 1.41, 2.0, 2.83, 4.0, 5.66, 8.0), head_search=heads, search_metric=search_metric,
    )  # fmt: skip
    config = replace(config, **OVERRIDES.get(variant, {}))
    out = Path("runs") / "moves" / f"{variant}_s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    result = meta_train(config, out=out, progress=False)
    print(f"{out}: {time.perf_counter() - began:.0f} s, best {result.best_val:.4f} at {result.best_iteration}, "
          f"trunk x{result.trunk_factor}, heads x{result.head_factor}")  # fmt: skip


def _cell_gaps(
    stream: str, consensus: str, multiple: int, files: dict[str, str], family: str = "regression"
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], list[str], int]:
    """Every entrant's and tuned baseline's gaps on the cell's games: (gaps, each game's trunk kind (``"all"`` for a
    family without one), the baselines' names, the entrants' names, the horizon)."""
    cell = json.loads((HERE.parent / f"general/k15/{family}_{consensus}_{multiple}.json").read_text())
    horizon, tuned = int(cell["horizon"]), cell["tuned"]
    names = list(tuned)
    by_kind = {k: v.removeprefix("by_kind:").split(",") for k, v in files.items() if v.startswith("by_kind:")}
    rules = {k: load_rule(v)[1] for k, v in files.items() if k not in by_kind}
    if by_kind and family != "regression":
        raise SystemExit(f"by_kind plays by the regression family's trunk kind; {family}'s games have none")
    if any(len(pair) != 2 or not set(pair) <= set(rules) for pair in by_kind.values()):
        raise SystemExit(f"by_kind:LINEAR,MLP names two file entrants of {sorted(rules)}, got {by_kind}")
    gaps: dict[str, list[np.ndarray]] = {k: [] for k in [*names, *rules, *by_kind]}
    kinds: list[str] = []
    for options, seeds in draw_games(family, stream, 16, 3):
        seeds = list(seeds)
        game = _game(family, options, horizon, consensus=consensus)
        start, final = play_candidates(game, [tuned[b]["knobs"] for b in names for _ in seeds], seeds * len(names))
        per = {b: (start[3 * i : 3 * i + 3].numpy(), final[3 * i : 3 * i + 3].numpy()) for i, b in enumerate(names)}
        for k, rule in rules.items():
            first, last = play_rule(rule, family, options, horizon, seeds, consensus=consensus)
            per[k] = (first.numpy(), last.numpy())
        for k, (linear, mlp) in by_kind.items():
            per[k] = per[linear if options["trunk"] == "linear" else mlp]
        drawn = {k: v for k, v in options.items() if k != "batch_size"}  # L* is the drawn game's, whatever the batch
        floor = best_loss_floor(family, drawn, _game(family, drawn, horizon).suite)
        floor = floor.lowered(float(min(np.min(v[1]) for v in per.values())))
        for k, (s0, s1) in per.items():
            gaps[k].append(_gaps(torch.as_tensor(s0), torch.as_tensor(s1), floor.value, _dtype(family)))
        kinds += [options.get("trunk", "all")] * len(seeds)
    return {k: np.concatenate(v) for k, v in gaps.items()}, np.array(kinds), names, [*rules, *by_kind], horizon


#: The table ``score`` writes (``ratio_rows``' rows follow it).
HEADER = ("| games | entrant | mean ratio [95 % CI] | median ratio [95 % CI] | geometric mean | div (entrant / "
          "baseline) | meets the bar |\n|---|---|---|---|---|---|---|")  # fmt: skip


def ratio_rows(
    arrays: dict[str, np.ndarray], groups: list[tuple[str, np.ndarray]], baselines: list[str], entrants: list[str],
    name_best: bool = False,
) -> list[str]:  # fmt: skip
    """The rows of ``HEADER`` for each group of games (a label and a mask) and entrant: the mean-gap ratio to the
    baseline with the least mean gap on those games and the median-gap ratio to the one with the least median, each
    with its paired bootstrap 95 % CI; the geometric mean of the per-game ratios to the best by median over the games
    where neither diverged; the diverged games of each; whether both CIs end below 1 (the bar). ``name_best``: a row
    before each group's naming its best baselines."""
    lines = []
    for games, mask in groups:
        a = {k: v[mask] for k, v in arrays.items()}
        best_mean = min(baselines, key=lambda k: float(_mean(a[k])))
        best_median = min(baselines, key=lambda k: float(_median(a[k])))
        if name_best:
            lines.append(f"| {games} ({int(mask.sum())}) | best tuned: {best_mean} by mean, {best_median} by median "
                         "| | | | | |")  # fmt: skip
        for k in entrants:
            m = paired_ratio_ci(a[k], a[best_mean], _mean, REPS)
            md = paired_ratio_ci(a[k], a[best_median], _median, REPS)
            both = np.isfinite(a[k]) & np.isfinite(a[best_median])  # over the games where neither diverged
            geo = float(
                np.exp(np.mean(np.log(np.maximum(a[k][both], 1e-12) / np.maximum(a[best_median][both], 1e-12))))
            )
            met = "yes" if m[2] < 1 and md[2] < 1 else "no"
            div = f"{int(np.sum(~np.isfinite(a[k])))} / {int(np.sum(~np.isfinite(a[best_median])))}"
            lines.append(f"| {games} | {k} | {m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}] | {md[0]:.3f} [{md[1]:.3f}, "
                         f"{md[2]:.3f}] | {geo:.3f} | {div} | {met} |")  # fmt: skip
    return lines


def _title_and_groups(
    stream: str, consensus: str, multiple: int, horizon: int, kind: np.ndarray, family: str = "regression"
) -> tuple[str, list]:
    """A cell's output title, and its groups of games: all, and for regression the linear-trunk and the MLP-trunk
    ones (label, mask)."""
    title = f"{family}, `{consensus}`, {multiple}x ({horizon} steps), {stream} stream, 16 draws x 3 seeds"
    kinds = [("linear", kind == "linear"), ("MLP", kind == "mlp")] if family == "regression" else []
    return title, [("all", kind == kind), *kinds]


def score(stream: str, consensus: str, multiple: int, files: dict[str, str], family: str = "regression") -> str:
    arrays, kind, names, entrants, horizon = _cell_gaps(stream, consensus, multiple, files, family)
    title, groups = _title_and_groups(stream, consensus, multiple, horizon, kind, family)
    return "\n".join([title, "", HEADER, *ratio_rows(arrays, groups, names, entrants)]) + "\n"


def _geometric_mean(x: np.ndarray) -> np.ndarray:
    """The geometric mean over the last axis, each gap at least 1e-12 (+inf where a game diverged)."""
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(np.maximum(np.asarray(x, dtype=np.float64), 1e-12)), axis=-1))


def scalefree(stream: str, consensus: str, multiple: int, files: dict[str, str], family: str = "regression") -> str:
    """The cell's games scored by a statistic that does not depend on the games' scales: the geometric mean of the
    per-game gap ratios to the baseline whose gaps' geometric mean is least, with its paired bootstrap 95 % CI, beside
    the bar's two (mean and median: ``score``). Not the bar; what a scale-free bar would say."""
    arrays, kind, names, entrants, horizon = _cell_gaps(stream, consensus, multiple, files, family)
    title, groups = _title_and_groups(stream, consensus, multiple, horizon, kind, family)
    lines = [title, "", "| games | entrant | geometric mean of the per-game ratios [95 % CI] | against | below 1 |",
             "|---|---|---|---|---|"]  # fmt: skip
    for games, mask in groups:
        a = {k: v[mask] for k, v in arrays.items()}
        best = min(names, key=lambda k: float(_geometric_mean(a[k])))
        for k in entrants:
            g = paired_ratio_ci(a[k], a[best], _geometric_mean, REPS)
            lines.append(f"| {games} | {k} | {g[0]:.3f} [{g[1]:.3f}, {g[2]:.3f}] | {best} | "
                         f"{'yes' if g[2] < 1 else 'no'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    family = "regression"
    flags = [i for i, a in enumerate(args) if a.startswith("--")]
    if flags:  # score's and scalefree's --family F (anywhere after the command): another family's cell, its K15 knobs
        i = flags[0]
        if len(flags) > 1 or args[i] != "--family" or i + 1 >= len(args) or args[0] not in ("score", "scalefree"):
            raise SystemExit(f"score and scalefree take one option, --family FAMILY; got {args[i:]}\n\n{__doc__}")
        family, args = args[i + 1], args[:i] + args[i + 2 :]
        if not list((HERE.parent / "general/k15").glob(f"{family}_*.json")):
            raise SystemExit(f"--family {family}: K15 scored no such family's cells (docs/sealed/general/k15/)")
    if len(args) == 3 and args[0] == "train" and family == "regression":
        train(args[1], int(args[2]))
    elif len(args) >= 5 and args[0] in ("score", "scalefree"):
        scorer = score if args[0] == "score" else scalefree
        print(scorer(args[1], args[2], int(args[3]), dict(a.split("=", 1) for a in args[4:]), family))
    else:
        raise SystemExit(__doc__)
