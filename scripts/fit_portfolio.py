"""Fit the selector of the learned portfolio (``learned_portfolio``) on the tuning stream, and write its rule file.

Two steps, each resumable:

``collect``: every expert plays the same tuning-stream games of every family, consensus rule and horizon multiple
(``draw_games(..., "tuning")``: the stream the baselines are tuned on; never the validation or sealed test games),
and each game's normalised gap (L_T − L*) / (L_0 − L*) per expert is written with what the selector reads of the game
(its trunk size, whether its gradients are estimates, whether its rule is linear, min-bounded) to
``OUT/gaps.json`` (one entry per cell, kept across runs: a cell already there is not played again).

``fit``: the selector (:class:`agents.learned.portfolio.PortfolioRule`, a softmax over the experts, linear in the
features) minimises the expected log regret Σ_k p_k · r_k, r_k = log(gap_k / min_j gap_j) (a game where the experts
tie costs nothing whichever is picked), from the fit of a convex surrogate (cost-sensitive logistic regression to soft
targets e^(−r_k/τ)), plus a small L2 penalty (:func:`fit_selector`); it prints each cell's picks and their mean log
regret beside each expert's alone, and which expert plays where. The rule file (the experts' weights and the
selector) goes to ``--out``. The shipped file: ``collect`` with the defaults (16 draws x 2 seeds), then ``fit``.

``sync``: after an option is added to a shipped specialist (``scripts/train_weights.py``'s ``ADDED_OPTIONS``), the
portfolio file ``--out`` takes each of its experts' configs from the shipped specialist of its label, the selector and
every weight kept (refused where a specialist's weights differ from its expert's: that is a new expert, collect and
fit again); its ``meta["experts_updated"]`` records what changed, label by label, and the specialist file it came
from with that file's sha256.

Usage::

    python scripts/fit_portfolio.py collect OUT [--draws 16] [--seeds 2]
    python scripts/fit_portfolio.py fit OUT --out agents/learned/weights/learned_portfolio_general.pt
    python scripts/fit_portfolio.py collect VAL --stream validation   # then, never fitted on:
    python scripts/fit_portfolio.py evaluate VAL --out agents/learned/weights/learned_portfolio_general.pt
    python scripts/fit_portfolio.py sync --out agents/learned/weights/learned_portfolio_general.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.learned.checkpoint import load_rule, pretrained_path, read_rule, save_rule  # noqa: E402
from agents.learned.family import FAMILIES, draw_games  # noqa: E402
from agents.learned.portfolio import PortfolioConfig, PortfolioRule, game_features  # noqa: E402
from mtg_env._io import write_atomic  # noqa: E402
from mtg_env.bench.sealed import _Floors, _gaps  # noqa: E402
from mtg_env.bench.sealed_config import sealed_config_from_dict  # noqa: E402
from mtg_env.bench.sealed_search import _dtype, _game, play_rule  # noqa: E402

#: The experts, in the selector's order: shipped ``learned_mlp`` files by tag (``collect --experts``; ``fit`` and
#: ``evaluate`` read them from the collected games): by default each family's specialist.
EXPERTS: tuple[str, ...] = FAMILIES


#: Each expert's rule file, by label.
FILES: dict[str, Path] = {}


def _use(entries: object) -> None:
    """Make ``entries`` the experts: each a shipped ``learned_mlp`` tag (``"digits"``: learned_mlp_digits.pt) or
    ``"LABEL=PATH"``, a rule file of one's own (a path relative to the repository, or absolute)."""
    global EXPERTS
    files = {}
    for entry in map(str, entries):  # type: ignore[call-overload]
        label, _, path = entry.partition("=")
        files[label] = Path(path) if path else pretrained_path("learned_mlp", label)
    EXPERTS = tuple(files)
    FILES.clear()
    FILES.update(files)


CONSENSUS = ("sum", "mean", "mgda", "upgrad")
#: Horizon multiples per family (digits at 5x costs over an hour of one core per cell here).
MULTIPLES = {"quadratic": (1, 2, 5), "regression": (1, 2, 5), "digits": (1, 2)}
#: The cost of a diverged game (log regret), and the largest counted regret.
MAX_REGRET = 10.0


def _horizons() -> object:
    import tomllib

    data = tomllib.loads((ROOT / "docs/sealed/general/k5_sum.toml").read_text())
    return sealed_config_from_dict(data)


def _experts() -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The experts in :data:`EXPERTS` order, and the sha256 of each one's file."""
    if not FILES:
        _use(EXPERTS)
    read = {name: read_rule(ROOT / FILES[name] if not FILES[name].is_absolute() else FILES[name]) for name in EXPERTS}
    return {name: r[1] for name, r in read.items()}, {name: r[3] for name, r in read.items()}


def _files() -> dict[str, str]:
    """Each expert's rule file as given (a shipped tag's: none), for the collection's setup."""
    shipped = {name: pretrained_path("learned_mlp", name) for name in EXPERTS}
    return {name: str(path) for name, path in FILES.items() if path != shipped[name]}


def collect(out: Path, draws: int, seeds: int, stream: str = "tuning") -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gaps.json"
    experts, sha256 = _experts()
    setup = {"stream": stream, "draws": draws, "seeds": seeds, "experts": sha256, "files": _files()}
    table = json.loads(path.read_text()) if path.exists() else {}
    if table and table.get("setup") != setup:
        raise SystemExit(
            f"{path} was collected with {table.get('setup')}, not {setup}: resume with the same stream, draws, seeds "
            "and experts, or collect into another directory"
        )
    table["setup"] = setup
    config = _horizons()
    floors = _Floors(out / "floors.json")
    for family in FAMILIES:
        for consensus in CONSENSUS:
            for multiple in MULTIPLES[family]:
                cell = f"{family}:{consensus}:{multiple}"
                if cell in table:
                    continue
                began = time.perf_counter()
                horizon = config.horizon(family, multiple)
                rows = []
                for options, game_seeds in draw_games(family, stream, draws, seeds):
                    game = _game(family, options, horizon, device="cpu", consensus=consensus)
                    bounded = game.min_bounded_consensus and not game.linear_consensus
                    properties = [game.trunk_size, game.stochastic_gradients, game.linear_consensus, bounded]
                    played = {
                        name: play_rule(rule, family, options, horizon, list(game_seeds), "cpu", consensus)
                        for name, rule in experts.items()
                    }
                    floor = floors.get(family, options)
                    for _, final in played.values():
                        finite = final[torch.isfinite(final)]
                        if finite.numel():
                            floor = floor.lowered(float(finite.min()))
                    gaps = {
                        name: _gaps(s0, s1, floor.value, _dtype(family)).tolist() for name, (s0, s1) in played.items()
                    }
                    for i in range(len(game_seeds)):
                        rows.append({"game": properties, "gaps": [gaps[name][i] for name in EXPERTS]})
                table[cell] = rows
                write_atomic(path, json.dumps(table, default=str).encode())  # an interrupted write loses nothing
                print(f"{cell}: {len(rows)} games in {time.perf_counter() - began:.0f} s", flush=True)


def regrets(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, F], log regret [N, K])`` of the collected games."""
    x = torch.stack([game_features(*r["game"]) for r in rows])
    gaps = torch.tensor([[float(g) for g in r["gaps"]] for r in rows], dtype=torch.float64)
    logs = gaps.log()
    best = torch.where(torch.isfinite(logs), logs, torch.full_like(logs, math.inf)).min(1, keepdim=True).values
    regret = (logs - best).nan_to_num(nan=MAX_REGRET, posinf=MAX_REGRET).clamp(0.0, MAX_REGRET)
    return x, regret


def fit_selector(x: torch.Tensor, regret: torch.Tensor, l2: float, tau: float) -> torch.Tensor:
    """``[K, F]`` the selector's weights for games of features ``x [N, F]`` and log regrets ``regret [N, K]``.

    First the cross-entropy to soft targets, each game's experts weighted by e^(−regret/τ): convex in the weights
    (cost-sensitive logistic regression). Then the expected regret itself, Σ_k softmax(x·W)_k · regret_k, from there:
    it is not convex, and from zero it stalls at one expert for every game (on the collected games of the fourteenth
    session: a mean log regret of 1.03 against 0.24 fitted so, tests/test_portfolio.py), while the surrogate alone
    stops short of what the features can tell apart (0.30)."""
    weight = torch.zeros(regret.shape[1], x.shape[1], dtype=torch.float64, requires_grad=True)
    target = torch.softmax(-regret / tau, dim=1)

    def step(objective: Callable[[], torch.Tensor], iterations: int) -> None:
        optimizer = torch.optim.LBFGS([weight], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective() + l2 * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)

    step(lambda: -(target * torch.log_softmax(x @ weight.T, dim=1)).sum(1).mean(), 1000)
    step(lambda: (torch.softmax(x @ weight.T, dim=1) * regret).sum(1).mean(), 2000)
    return weight.detach()


def fit(out: Path, target_file: Path, l2: float, tau: float) -> None:
    table = _cells(out)
    rows = [row for cell in table.values() for row in cell]
    x, regret = regrets(rows)
    experts, _ = _experts()
    config = PortfolioConfig(
        experts=tuple(("learned_mlp", _config(rule)) for rule in experts.values()), labels=tuple(EXPERTS)
    )
    portfolio = PortfolioRule(config).double()
    for slot, rule in zip(portfolio.experts, experts.values(), strict=True):
        slot.load_state_dict(rule.state_dict())
    with torch.no_grad():
        portfolio.selector.copy_(fit_selector(x, regret, l2, tau))
    weight = portfolio.selector.detach()
    with torch.no_grad():
        picks = (x @ weight.T).argmax(1)
        chosen = regret.gather(1, picks[:, None]).squeeze(1)
        always = {name: float(regret[:, k].mean()) for k, name in enumerate(EXPERTS)}
        print(f"{len(rows)} games: mean log regret of the picks {float(chosen.mean()):.4f}")
        for k, name in enumerate(EXPERTS):
            print(f"  always {name:<10} {always[name]:.4f}  picked in {int((picks == k).sum())} games")
        for cell, cell_rows in table.items():
            cx, cr = regrets(cell_rows)
            cp = (cx @ weight.T).argmax(1)
            counts = torch.bincount(cp, minlength=len(EXPERTS)).tolist()
            mean = float(cr.gather(1, cp[:, None]).mean())
            print(f"  {cell:<22} picks {counts}  regret {mean:.3f}  (each alone {_rounded(cr.mean(0))})")
        regions = _regions(portfolio)
        for line in regions:
            print(f"  {line}")
    meta = {
        "config": {"suite": list(FAMILIES)},  # a mixture: plays any suite (trained_suite: None)
        "selector": {
            "fitted_on": "tuning stream",
            "games": len(rows),
            "cells": sorted(table),
            "l2": l2,
            "tau": tau,
            "mean_log_regret": float(chosen.mean()),
            "mean_log_regret_alone": always,
            "regions": regions,
        },
    }
    save_rule(target_file, "learned_portfolio", portfolio.float(), meta)
    print(f"wrote {target_file}")


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), 2) for v in values]


def _regions(rule: PortfolioRule) -> list[str]:
    """Which expert plays games of each kind, by trunk size n (10^0.5 to 10^6)."""
    lines = []
    for noisy in (False, True):
        for linear, bounded, rule_kind in (
            (True, False, "linear"),
            (False, True, "min-bounded"),
            (False, False, "other"),
        ):
            picks: list[tuple[int, str]] = []
            for tenth in range(5, 61):
                n = round(10 ** (tenth / 10))
                label = rule.config.labels[rule.choose(n, noisy, linear, bounded)]
                if not picks or picks[-1][1] != label:
                    picks.append((n, label))
            gradients = "noisy" if noisy else "exact"
            lines.append(
                f"{gradients} gradients, {rule_kind} rule: " + ", ".join(f"n >= {n}: {lab}" for n, lab in picks)
            )
    return lines


def _cells(out: Path, stream: str = "tuning") -> dict[str, list[dict]]:
    """The collected cells of ``out/gaps.json``, which must hold the ``stream``'s games played by the specialists
    shipped now."""
    table = json.loads((out / "gaps.json").read_text())
    setup = table.pop("setup", {})
    files = setup.get("files", {})
    _use([f"{name}={files[name]}" if name in files else name for name in setup.get("experts", {})])
    if setup.get("stream") != stream:
        raise SystemExit(
            f"{out / 'gaps.json'} holds the {setup.get('stream')} stream's games, not the {stream} stream's"
        )
    if setup.get("experts") != _experts()[1]:
        raise SystemExit(
            f"{out / 'gaps.json'}: the shipped specialists changed since its games were played; collect again"
        )
    return table


def evaluate(out: Path, rule_file: Path) -> None:
    """Each cell's picks of the portfolio in ``rule_file`` and their mean log regret, on games collected from the
    validation stream (never fitted on)."""
    table = _cells(out, "validation")  # its experts, in order
    rule = read_rule(rule_file)[1]
    if not isinstance(rule, PortfolioRule) or rule.config.labels != tuple(EXPERTS):
        raise SystemExit(f"{rule_file} is not a portfolio of the experts {list(EXPERTS)}, in that order")
    weight = rule.selector.detach().double()
    total, alone, games = 0.0, torch.zeros(len(EXPERTS), dtype=torch.float64), 0
    for cell, cell_rows in table.items():
        cx, cr = regrets(cell_rows)
        cp = (cx @ weight.T).argmax(1)
        counts = torch.bincount(cp, minlength=len(EXPERTS)).tolist()
        picked = cr.gather(1, cp[:, None]).squeeze(1)
        total, alone, games = total + float(picked.sum()), alone + cr.sum(0), games + len(cell_rows)
        each = [round(float(v), 2) for v in cr.mean(0)]
        print(f"  {cell:<22} picks {counts}  regret {float(picked.mean()):.3f}  (each alone {each})")
    each = ", ".join(f"{name} {float(v) / games:.4f}" for name, v in zip(EXPERTS, alone, strict=True))
    print(f"{games} validation games: mean log regret of the picks {total / games:.4f}; each alone: {each}")


def sync(rule_file: Path, note: str) -> None:
    """Give the portfolio in ``rule_file`` its experts' configs from the shipped specialists of their labels (see the
    module docstring), recording ``note`` beside each changed expert in ``meta["experts_updated"]``."""
    _, rule, meta = load_rule(rule_file)
    if not isinstance(rule, PortfolioRule):
        raise SystemExit(f"{rule_file} is not a learned_portfolio file")
    experts, changed = [], {}
    for label, (name, _), expert in zip(rule.config.labels, rule.config.experts, rule.experts, strict=True):
        path = pretrained_path(name, label)
        if not path.exists():
            raise SystemExit(
                f"{rule_file}: expert {label!r} has no shipped {name} file ({path}) to take its config from"
            )
        _, shipped, _, sha256 = read_rule(path)
        ours, theirs = expert.state_dict(), shipped.state_dict()
        if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours):
            raise SystemExit(
                f"{rule_file}: the shipped {name} {label!r} file's weights are not its {label!r} expert's; a new "
                "expert needs its games collected and the selector fitted again (collect, fit)"
            )
        new, config = _config(shipped), _config(expert)  # every field (a file's may lack one added since: its default)
        diff = {k: v for k, v in new.items() if config.get(k) != v}
        if diff:  # the source named with its sha256: which specialist file the config came from stays checkable
            source = f"{diff} from {path.name} (sha256 {sha256})"
            changed[label] = f"{source} ({note})" if note else source
        experts.append((name, new))
    if not changed:
        print(f"{rule_file}: every expert's config is its shipped specialist's already")
        return
    portfolio = PortfolioRule(PortfolioConfig(experts=tuple(experts), labels=rule.config.labels))
    portfolio.load_state_dict(rule.state_dict())
    updated = {**meta.get("experts_updated", {})}
    for label, what in changed.items():
        updated[label] = f"{updated[label]}; then {what}" if label in updated else what
    save_rule(rule_file, "learned_portfolio", portfolio, {**meta, "experts_updated": updated})
    for label, what in changed.items():
        print(f"{rule_file}: expert {label!r} now plays {what}")


def _config(rule: torch.nn.Module) -> dict:
    from dataclasses import asdict

    return asdict(rule.config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["collect", "fit", "evaluate", "sync"])
    parser.add_argument("dir", type=Path, nargs="?", help="where gaps.json (and floors.json) live (not for sync)")
    parser.add_argument("--draws", type=int, default=16, help="collect: draws per cell")
    parser.add_argument("--seeds", type=int, default=2, help="collect: seeds per draw")
    parser.add_argument(
        "--experts",
        default=",".join(FAMILIES),
        help="collect: comma-separated shipped learned_mlp tags (digits: learned_mlp_digits.pt) or LABEL=PATH files",
    )
    parser.add_argument(
        "--out", type=Path, help="fit: the rule file to write; evaluate: the rule file to read; sync: the one to update"
    )
    parser.add_argument("--note", default="", help="sync: why, recorded beside each changed expert")
    parser.add_argument(
        "--stream", default="tuning", choices=["tuning", "validation"], help="collect: the games' stream"
    )
    parser.add_argument("--l2", type=float, default=1e-4, help="fit: L2 penalty on the selector's weights")
    parser.add_argument("--tau", type=float, default=0.25, help="fit: the soft targets' temperature (log regret)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.step == "sync":
        if args.out is None:
            parser.error("sync needs --out")
        sync(args.out, args.note)
        return
    if args.dir is None:
        parser.error(f"{args.step} needs DIR")
    if args.step == "collect":
        _use(args.experts.split(","))
        collect(args.dir, args.draws, args.seeds, args.stream)
        return
    if args.out is None:
        parser.error(f"{args.step} needs --out")
    if args.step == "fit":
        fit(args.dir, args.out, args.l2, args.tau)
    else:
        evaluate(args.dir, args.out)


if __name__ == "__main__":
    main()
