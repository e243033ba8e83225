"""Which half of a learned rule loses, and to what: its heads' updates and its trunk proposals played apart, each beside
the tuned baselines' (nineteenth session).

    python docs/sealed/regression/parts.py parts STREAM CONSENSUS MULTIPLE FILE [FAMILY]  # -> moves/parts_....txt
    python docs/sealed/regression/parts.py scale STREAM CONSENSUS MULTIPLE FILE [FAMILY]  # -> moves/scale_....txt

FAMILY (default ``regression``) names the family and its K15 cell (docs/sealed/general/k15/<family>_<rule>_<multiple>
.json: the four baselines' knobs, chosen on the tuning stream). ``parts``: the stream's first 16 draws x 3 seeds of the
family, as a sealed cell plays them (never the test stream). In every game each of the 25 pairs (H, T) of {the learned
rule FILE, gradient, momentum, adam, rmsprop} plays: every player's head update is H's, its trunk proposal T's (each
of the five is stepped on the game's own gradients every step, its state kept whether or not its half is played: a
learned rule's heads' Barzilai–Borwein secant reads its own head updates, which are the ones played where H is the
learned rule). (X, X) is baseline X as the cell plays it, and (learned, learned) the learned rule. A pair's halves
were tuned or trained with other partners: its score mixes the halves' worth with their fit to each other. Also: the
learned rule with its heads set, at the end, to the average of its last p of head iterates (p = 10, 25, 50 % of the
horizon; Polyak–Ruppert tail averaging, which no rule state needs: a player knows its own head's path). ``scale``: the
learned rule with its trunk step times a and its heads' steps times b (``scale_trunk_step``, ``scale_head_step``), a
and b in {1/4, 1/2, 1, 2, 4}. Regression's games are scored by trunk kind, another family's (``quadratic``: outputs
``moves/parts_quadratic_...``) as one group, each entrant as ``moves.py score`` scores one (its ``ratio_rows``: the
mean-gap and the median-gap ratio to the best tuned baseline of those games, paired bootstrap 95 % CIs, the geometric
mean of the per-game ratios to the best by median over the games neither diverged in, the diverged games), with L*
lowered to any loss an entrant reached. The outputs are beside this script (``moves/``).

    python docs/sealed/regression/parts.py transfer TUNING_SCALE_OUTPUT VALIDATION_SCALE_OUTPUT

``transfer``: whether the order of the 25 scalings on the tuning stream holds on the validation stream (per group and
statistic, the Spearman rank correlation and the tuning stream's pick scored on validation).

    python docs/sealed/regression/parts.py scaled FILE TRUNK HEADS OUT   # FILE with its steps scaled, written to OUT

(``moves/moves_heads_s3_linear.pt``: ``scaled moves/moves_heads_s3.pt 0.5 0.25``, the linear-trunk games' scaling by
the median on the tuning stream.)"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.learned import EngineDriver
from agents.learned.checkpoint import load_rule, save_rule
from agents.learned.family import best_loss_floor, draw_games
from agents.learned.rules import MLPRule
from mtg_env import engine
from mtg_env.bench.sealed import _gaps
from mtg_env.bench.sealed_search import SearchPlayers, _dtype, _game, _train_totals, play_candidates, play_rule

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("regression_moves", HERE / "moves.py")
assert _spec is not None and _spec.loader is not None
MOVES = importlib.util.module_from_spec(_spec)  # moves.py's table (ratio_rows), so both scripts score alike
_spec.loader.exec_module(MOVES)
TAILS = (0.1, 0.25, 0.5)
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
LEARNED = "learned"


def _cell(consensus: str, multiple: int, family: str = "regression") -> tuple[int, dict[str, Any]]:
    cell = json.loads((HERE.parent / f"general/k15/{family}_{consensus}_{multiple}.json").read_text())
    return int(cell["horizon"]), {b: v["knobs"] for b, v in cell["tuned"].items()}


def _play_parts(
    rule: Any, options: dict[str, Any], horizon: int, seeds: list[int], consensus: str, knobs: dict[str, Any],
    family: str = "regression",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(L_0, L_T) of every (heads, trunk) pair and of the learned rule with tail-averaged heads, on games ``seeds``."""
    sources = [LEARNED, *knobs]
    game = _game(family, options, horizon, consensus=consensus)
    out_all: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for heads_from in sources:
        for trunk_from in sources:
            # only the pair's sources play: each one's state follows the game's gradients alone
            driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))  # as play_rule plays a learned rule
            players = {b: SearchPlayers(game, [knobs[b]] * len(seeds)) for b in {heads_from, trunk_from} & set(knobs)}
            learned = LEARNED in (heads_from, trunk_from)
            # the sum and count of the last p of the horizon's head iterates, for the learned rule's own play
            tails: dict[float, list[Any]] = (
                {p: [torch.zeros(()), 0] for p in TAILS} if heads_from == trunk_from == LEARNED else {}
            )
            with torch.no_grad():
                state, out = engine.reset(game, seeds)
                start = _train_totals(game, state.heads, state.trunk)
                memory = driver.start(out)
                alive = torch.ones(len(seeds), dtype=torch.bool)
                for t in range(horizon):
                    acts = {b: p.act(state.head_grads, state.jacobian) for b, p in players.items()}
                    if learned:
                        acts[LEARNED], memory = driver.act(state, out, memory)  # type: ignore[assignment]
                    heads = torch.where(alive[:, None], acts[heads_from][0], 0.0)
                    props = torch.where(alive[:, None, None], acts[trunk_from][1], 0.0)
                    state, out = engine.step(game, state, (heads, props))
                    alive &= ~out.diverged
                    for p, tail in tails.items():
                        if t + 1 > (1.0 - p) * horizon:
                            tail[0], tail[1] = tail[0] + state.heads, tail[1] + 1
                final = torch.where(alive, _train_totals(game, state.heads, state.trunk), torch.inf)
                out_all[f"{heads_from}/{trunk_from}"] = (start.numpy(), final.numpy())
                for p, (total, count) in tails.items():
                    averaged = _train_totals(game, total / count, state.trunk)
                    out_all[f"{LEARNED}, heads averaged over the last {p:.0%}"] = (
                        start.numpy(), torch.where(alive, averaged, torch.inf).numpy()
                    )  # fmt: skip
    return out_all


def _play_scaled(
    rule: Any, options: dict[str, Any], horizon: int, seeds: list[int], consensus: str, knobs: dict[str, Any],
    family: str = "regression",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(L_0, L_T) of the four tuned baselines (as pairs X/X) and of the learned rule at every step scaling."""
    game = _game(family, options, horizon, consensus=consensus)
    out_all = {}
    for b in knobs:
        start, final = play_candidates(game, [knobs[b]] * len(seeds), seeds)  # as the cell plays baseline b
        out_all[f"{b}/{b}"] = (start.numpy(), final.numpy())
    for a in FACTORS:
        for h in FACTORS:
            scaled = copy.deepcopy(rule)
            scaled.scale_trunk_step(a)
            scaled.scale_head_step(h)
            s0, s1 = play_rule(scaled, family, options, horizon, seeds, consensus=consensus)
            out_all[f"trunk x{a:g}, heads x{h:g}"] = (s0.numpy(), s1.numpy())
    return out_all


def _groups(kinds: list[str]) -> list[tuple[str, np.ndarray]]:
    """Each group of games (regression's trunk kinds, linear then mlp; another family's one group, ``all``) and its
    mask over the games."""
    kind = np.array(kinds)
    return [(games, kind == games) for games in sorted(set(kinds))]


def run(command: str, stream: str, consensus: str, multiple: int, path: str, family: str = "regression") -> str:
    horizon, knobs = _cell(consensus, multiple, family)
    rule = load_rule(path)[1]
    play = _play_parts if command == "parts" else _play_scaled
    gaps: dict[str, list[np.ndarray]] = {}
    kinds: list[str] = []
    for options, seeds in draw_games(family, stream, 16, 3):
        seeds = list(seeds)
        per = play(rule, options, horizon, seeds, consensus, knobs, family)
        drawn = {k: v for k, v in options.items() if k != "batch_size"}  # L* is the drawn game's, whatever the batch
        floor = best_loss_floor(family, drawn, _game(family, drawn, horizon).suite)
        floor = floor.lowered(float(min(np.min(v[1]) for v in per.values())))
        for k, (s0, s1) in per.items():
            gaps.setdefault(k, []).append(_gaps(torch.as_tensor(s0), torch.as_tensor(s1), floor.value, _dtype(family)))
        kinds += [options.get("trunk", "all")] * len(seeds)  # regression's trunk kind; other families: one group
    arrays = {k: np.concatenate(v) for k, v in gaps.items()}
    groups = _groups(kinds)
    title = f"{family}, `{consensus}`, {multiple}x ({horizon} steps), {stream} stream, 16 draws x 3 seeds; {path}"
    rows = MOVES.ratio_rows(arrays, groups, [f"{b}/{b}" for b in knobs], list(arrays), name_best=True)
    return "\n".join([title, "", MOVES.HEADER, *rows]) + "\n"


def _scale_rows(path: str) -> dict[tuple[str, str], tuple[float, float, float]]:
    """An output of ``scale``: (group, entrant) -> (mean ratio, median ratio, geometric mean) of its scaled rules."""
    rows = {}
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 7 and cells[1].startswith("trunk x"):
            rows[(cells[0], cells[1])] = (float(cells[2].split()[0]), float(cells[3].split()[0]), float(cells[4]))
    return rows


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank; +inf (a scaling with a diverged game) ranks last."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1, dtype=float)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def transfer(tuning: str, validation: str) -> str:
    """Whether the scalings' order on the tuning stream holds on the validation stream: per group and statistic, the
    Spearman rank correlation over the scalings on both (ties at their average rank, a statistic made infinite by a
    diverged game ranked last), and the tuning stream's best scaling on validation."""
    t, v = _scale_rows(tuning), _scale_rows(validation)
    header = "| games | statistic | Spearman ρ (scalings) | picked on tuning | on validation | best there | x1, x1 |"
    lines = [f"{tuning} -> {validation}", "", header, "|---|---|---|---|---|---|---|"]
    for group in dict.fromkeys(g for g, _ in t):
        keys = [k for k in t if k[0] == group and k in v]
        for i, statistic in enumerate(("mean ratio", "median ratio", "geometric mean")):
            a, b = np.array([t[k][i] for k in keys]), np.array([v[k][i] for k in keys])
            rho = float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])
            picked = keys[int(np.argmin(np.where(np.isfinite(a), a, np.inf)))]
            best = keys[int(np.argmin(np.where(np.isfinite(b), b, np.inf)))]
            file = v[(group, "trunk x1, heads x1")][i]
            lines.append(f"| {group} | {statistic} | {rho:.2f} ({len(keys)}) | {picked[1]} | "
                         f"{v[picked][i]:.3f} | {best[1]}: {v[best][i]:.3f} | {file:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "transfer":
        print(transfer(args[1], args[2]))
        raise SystemExit(0)
    if len(args) == 5 and args[0] == "scaled":
        name, scaled, meta = load_rule(args[1])
        if not isinstance(scaled, MLPRule):
            raise SystemExit(f"scaled takes a learned_mlp file, got {name!r} in {args[1]}")
        scaled.scale_trunk_step(float(args[2]))
        scaled.scale_head_step(float(args[3]))
        meta = {**meta, "scaled": {"from": args[1], "trunk": float(args[2]), "heads": float(args[3])}}
        print(save_rule(args[4], name, scaled, meta))
        raise SystemExit(0)
    if len(args) not in (5, 6) or args[0] not in ("parts", "scale"):
        raise SystemExit(__doc__)
    family = args[5] if len(args) == 6 else "regression"
    text = run(args[0], args[1], args[2], int(args[3]), args[4], family)
    prefix = "" if family == "regression" else f"{family}_"
    (HERE / "moves" / f"{args[0]}_{prefix}{args[1]}_{args[2]}_{args[3]}.txt").write_text(text)
    print(text)
