"""Would a committed tuning choose other knobs under today's L*? Re-scores a tuning's progress file (the gaps of
every candidate on every tuning draw, :func:`mtg_env.bench.sealed.tune_baselines`) from the floors it was played
with (``true_floor(suite, polish=0)``: the Adam best runs alone, every floor before the twenty-eighth session) to
the polished ones (``true_floor(suite)``), without playing a game again:

    python scripts/rescore_tuning.py docs/sealed/general/k21/tuned/progress_tuned_digits_mgda_5.json

A gap g measured from the old floor f gives the final loss L_T = f + g (L_0 − f) (L_0 from the draw's seed), and so
the gap from the new floor. Where a candidate reached the old floor its gap was clamped at the resolution and its
L_T is only known to lie between the new floor and the old one: the script chooses with those entries at each end
and asks whether the choice holds for every value between (the chosen candidate's with its own at the upper end
against every rival's with theirs at the lower). Rung 1 was played on the kept set of rung 0; if that set may change
under the new floors the choice is not settled. ``--replay N`` settles both: it plays the clamped entries again (their
candidate, draw and seed; N unclamped entries beside them as controls of the round-off a new batch shape brings) and
plays rung 1 of any candidate rung 0 now keeps that it did not, so its choice is the polished floors' tuning's.

Exit status 0 when every baseline's choice is the committed one, robustly; 1 otherwise. The old floors are
recomputed here: bit for bit those of the tuning on the CPU model and torch its ``where`` names (elsewhere to
round-off, far below any gap).
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mtg_env.bench.sealed as sealed
from mtg_env import engine
from mtg_env.bench.sealed_search import _game, _train_totals
from mtg_env.suites.floors import true_floor

ROOT = Path(__file__).resolve().parents[1]


def _kept_settled(rung0: list[Any], kept: list[int], config: Any, pools: dict[str, list[Any]]) -> bool:
    """Whether rung 0 keeps ``kept`` for every value of its bounded entries: per baseline, the kept candidates' means
    with their entries at the upper end all below the dropped ones' with theirs at the lower end."""
    high, low = (np.mean([r[k] for r in rung0], 0) for k in (1, 2))
    offset, survivors = 0, set(kept)
    for b in config.baselines:
        count = len(pools[b])
        inside = [i for i in range(offset, offset + count) if i in survivors]
        outside = [i for i in range(offset, offset + count) if i not in survivors]
        if inside and outside and not max(high[inside]) < min(low[outside]):
            return False
        offset += count
    return True


def rescore(progress: dict[str, Any], config: Any, replay: int = 0) -> dict[str, Any]:
    """The re-scored choice of ``progress`` (a progress file's JSON) under ``config`` (the tuning's sealed config):
    per baseline the committed (old-floor) choice, the new floors' choice with the clamped entries at their upper
    and at their lower end, and whether the choice holds for every value between; the count of clamped entries.

    ``replay`` > 0 plays the clamped entries again (each its candidate, draw and seed, in one batch per draw and rung
    with up to ``replay`` entries that were not clamped, as controls) and puts their final losses in place of the
    bounds, so ``upper`` and ``lower`` agree. A batch of another shape may round differently (MKL picks kernels by
    batch shape): ``replay_deviation`` is the largest relative difference between a control's replayed final loss
    and the one its gap gives."""
    from agents.learned.family import draw_games

    tuning = progress["tuning"]
    family, horizon, consensus = tuning["family"], tuning["horizon"], tuning["consensus"]
    if tuning.get("floor_polish", 0):
        raise ValueError(f"the tuning was played from polished floors (floor_polish {tuning['floor_polish']}): "
                         "nothing to re-score")  # fmt: skip
    expected = sealed._TuningProgress(None, config, family, horizon, consensus).tuning
    differ = sorted(  # a key the file lacks is not held against it (K21's sum tuning predates the draws' digest)
        k for k in expected if k not in ("device", "floor_polish") and k in tuning and tuning[k] != expected[k]
    )
    if differ:
        raise ValueError(f"the progress file's tuning differs from config's in {', '.join(differ)}: give the config "
                         "it was tuned with (--config)")  # fmt: skip
    draws = draw_games(family, "tuning", config.tuning_draws, config.tuning_seeds + 1)
    pools = {b: config.search.candidates(b) for b in config.baselines}
    everyone = [c for b in config.baselines for c in pools[b]]
    dtype = sealed._dtype(family)
    resolution = sealed.RESOLUTION[dtype]
    per_draw = []
    for options, seeds in draws:
        game = _game(family, options, horizon, consensus=consensus)
        old, new = true_floor(game.suite, polish=0).value, true_floor(game.suite).value
        start = {}
        for s in seeds:
            state, _ = engine.reset(game, [s])
            start[s] = float(_train_totals(game, state.heads, state.trunk)[0])
        per_draw.append((old, new, start, seeds))

    def gaps(rung: str, d: int, starts: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(old gaps, new gaps with clamped entries at their upper end, at their lower end, clamped)"""
        old, new, _, _ = per_draw[d]
        g = np.asarray([float(x) for x in progress["gaps"][f"{rung} {d}"]])
        l0 = np.asarray(starts)
        with np.errstate(invalid="ignore"):
            final = old + g * (l0 - old)
            floor_res = resolution * np.maximum(np.maximum(1.0, abs(old)), np.abs(final))
            clamped = np.isfinite(g) & (final - old <= floor_res * (1 + 1e-4))  # slack for L_0's round-off
            high = sealed._gaps(torch.as_tensor(l0), torch.as_tensor(final), new, dtype)
            low = np.where(clamped, resolution * max(1.0, abs(new)) / (l0 - new), high)  # L_T at the new floor
        if replay and clamped.any():
            high, low = _replayed(rung, d, g, final, clamped, l0, new)
        return g, high, low, clamped

    deviation = [0.0]

    def _replayed(
        rung: str, d: int, g: np.ndarray, final: np.ndarray, clamped: np.ndarray, l0: np.ndarray, new: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The new gaps with the clamped entries' final losses played again (and the controls' deviation kept)."""
        options, seeds = draws[d]
        which = np.flatnonzero(clamped)
        controls = np.flatnonzero(np.isfinite(g) & ~clamped)[:replay]
        rows = np.concatenate([which, controls])
        if rung == "rung0":
            cands, row_seeds = [everyone[i] for i in rows], [seeds[0]] * len(rows)
        else:
            cands = [kept[i % len(kept)] for i in rows]
            row_seeds = [seeds[1:][i // len(kept)] for i in rows]
        game = _game(family, options, horizon, consensus=consensus)
        _, replayed = sealed.play_candidates(game, cands, row_seeds)
        lt = final.copy()
        lt[which] = replayed[: len(which)].cpu().numpy()
        if len(controls):
            back = replayed[len(which) :].cpu().numpy()
            deviation[0] = max(deviation[0], float(np.max(np.abs(back / final[controls] - 1.0))))
        out = sealed._gaps(torch.as_tensor(l0), torch.as_tensor(lt), new, dtype)
        return out, out

    n_draws = len(draws)
    rung0 = [gaps("rung0", d, [per_draw[d][2][per_draw[d][3][0]]] * len(everyone)) for d in range(n_draws)]
    kept_old = sealed.rung0_survivors(np.mean([r[0] for r in rung0], 0), config, pools)
    kept_high = sealed.rung0_survivors(np.mean([r[1] for r in rung0], 0), config, pools)
    kept_low = sealed.rung0_survivors(np.mean([r[2] for r in rung0], 0), config, pools)
    same_kept = set(kept_old) == set(kept_high) == set(kept_low)
    if not replay:  # bounded entries: the kept set must hold for every value between the ends, not only at them
        same_kept = same_kept and _kept_settled(rung0, kept_old, config, pools)
    kept = [everyone[i] for i in kept_old]
    rung1 = []
    for d in range(n_draws):
        _, _, start, seeds = per_draw[d]
        rung1.append(gaps("rung1", d, [start[s] for s in seeds[1:] for _ in kept]))
    means = [np.stack([r[k] for r in rung1]).reshape(-1, len(kept)).mean(0) for k in range(3)]
    added = [i for i in kept_high if i not in set(kept_old)]
    out: dict[str, Any] = {
        "family": family, "horizon": horizon, "consensus": consensus, "same_kept": same_kept,
        "replayed": bool(replay), "replay_deviation": deviation[0], "added": len(added) if replay else 0,
        "clamped": {"rung0": int(sum(r[3].sum() for r in rung0)), "rung1": int(sum(r[3].sum() for r in rung1))},
        "baselines": {},
    }  # fmt: skip
    final_kept, new_means = kept_old, means[1]
    if replay and added:  # rung 0 keeps other candidates now (its entries known exactly): play their rung 1
        column = {i: means[1][j] for j, i in enumerate(kept_old)}
        extra = [everyone[i] for i in added]
        totals = np.zeros(len(added))
        for d, (options, seeds) in enumerate(draws):
            _, new, start, _ = per_draw[d]
            game = _game(family, options, horizon, consensus=consensus)
            batch_seeds = [s for s in seeds[1:] for _ in extra]
            s0, s1 = sealed.play_candidates(game, [c for _ in seeds[1:] for c in extra], batch_seeds)
            g = sealed._gaps(s0, s1, new, sealed._dtype(family)).reshape(config.tuning_seeds, len(added))
            totals += g.sum(0)
        column |= {i: totals[j] / (n_draws * config.tuning_seeds) for j, i in enumerate(added)}
        final_kept, new_means = kept_high, np.asarray([column[i] for i in kept_high])
    for b in config.baselines:
        idx = [i for i, c in enumerate(kept) if c["baseline"] == b]
        old = min(idx, key=lambda i: (means[0][i], i))
        if final_kept is kept_old:
            high, low = (min(idx, key=lambda i, m=m: (m[i], i)) for m in means[1:])
            rivals = [means[2][i] for i in idx if i != high]
            upper, lower, gap_new = kept[high], kept[low], float(means[1][high])
            robust = same_kept and old == high == low and (not rivals or means[1][high] < min(rivals))
        else:
            new_idx = [j for j, i in enumerate(final_kept) if everyone[i]["baseline"] == b]
            best = min(new_idx, key=lambda j: (new_means[j], j))
            rivals = [new_means[j] for j in new_idx if j != best]
            upper = lower = everyone[final_kept[best]]
            gap_new, robust = float(new_means[best]), upper == kept[old]
        out["baselines"][b] = {
            "committed": kept[old], "upper": upper, "lower": lower, "robust": bool(robust),
            "gap_committed": float(means[0][old]), "gap_new": gap_new,
            "best_rival_at_best": float(min(rivals)) if rivals else None,
        }  # fmt: skip
    return out


def config_for(progress: dict[str, Any], path: Path) -> Any:
    """The sealed config ``path`` (a TOML file) names, for the progress file's family and consensus rule."""
    toml = importlib.import_module("tomllib")  # Python 3.11+ (as docs/sealed/general/k7/play.py)
    data = toml.loads(path.read_text())
    data["families"], data["consensus"] = [progress["tuning"]["family"]], [progress["tuning"]["consensus"]]
    return sealed.sealed_config_from_dict(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("progress", type=Path, help="a tuning's progress file (progress_tuned_*.json)")
    parser.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="play the entries that reached the old floor again (with N unclamped entries per batch as controls)",
    )
    parser.add_argument(
        "--config", type=Path, default=ROOT / "docs/sealed/general/k5_sum.toml", help="the tuning's sealed config"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    progress = json.loads(args.progress.read_text())
    result = rescore(progress, config_for(progress, args.config), args.replay)
    print(
        f"{result['family']} {result['consensus']}, horizon {result['horizon']}: clamped entries (reached the old "
        f"floor) rung 0 {result['clamped']['rung0']}, rung 1 {result['clamped']['rung1']}"
        + (
            f", played again (controls' largest relative deviation {result['replay_deviation']:.2g}; rung 1 of "
            f"{result['added']} candidates rung 0 now keeps played)"
            if result["replayed"]
            else ""
        )
        + f"; rung 0 keeps the same candidates: {result['same_kept']}"
    )
    for b, r in result["baselines"].items():
        print(
            f"  {b}: committed {r['committed']} (mean gap {r['gap_committed']:.4g}); polished floors: "
            f"{'the same' if r['upper'] == r['lower'] == r['committed'] else (r['upper'], r['lower'])} "
            f"(mean gap {r['gap_new']:.4g}, best rival at its best "
            f"{'none' if r['best_rival_at_best'] is None else format(r['best_rival_at_best'], '.4g')}); robust: "
            f"{r['robust']}"
        )
    raise SystemExit(0 if all(r["robust"] for r in result["baselines"].values()) else 1)


if __name__ == "__main__":
    main()
