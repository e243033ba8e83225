"""``mtg-env meta-train``: a learned agent meta-trained on a suite's family of games."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agents.learned.family import FAMILIES
from mtg_env.cli._common import CLIError, _check_out_dir, _threads_option


def _meta_train_parser(sub: Any) -> None:
    meta = sub.add_parser(
        "meta-train",
        help="meta-train a learned agent on a suite's family of games",
        description="Meta-train a learned agent (TBPTT through the engine, or antithetic ES / PES) on games drawn "
        "from a suite's family; write DIR/last.pt (resumable), DIR/best.pt (the best rule on held-out games), "
        "DIR/log.csv and DIR/meta_loss.png. With --sweep FILE: a sweep of meta-hyper-parameters on Ray Tune "
        "(agents/learned/sweep.py), the run and its search space in FILE; writes DIR/best.pt (the best trial's "
        "weights), DIR/sweep.json and DIR/tune/.",
    )
    meta.add_argument(
        "--agent",
        default=None,
        choices=["learned_mlp", "learned_lstm", "learned_step"],
        help="required without --sweep",
    )
    meta.add_argument(
        "--suite",
        default="quadratic",
        help=f"game family ({', '.join(FAMILIES)}, or 'package.module:FAMILY', an agents.learned.family.Family), or "
        "a mixture a,b,c whose members the draws take in turn (default: quadratic)",
    )
    meta.add_argument(
        "--consensus",
        default="sum",
        help="the trunk's consensus rule, or a mixture a,b,c of rules (tbptt: differentiable ones; default: sum)",
    )
    meta.add_argument("--method", default="tbptt", choices=["tbptt", "es", "pes"], help="default: tbptt")
    meta.add_argument(
        "--init",
        default=None,
        metavar="FILE",
        help="start from this learned-rule file's trained parameters (fine-tuning; the rule plays its options), "
        "where the run would start untrained; best.pt stays the file unless an iteration beats it on held-out games",
    )
    meta.add_argument("--budget", default=None, help="wall-time budget such as 90s, 10m or 1h (default: none)")
    meta.add_argument("--iterations", type=int, default=100, help="meta-iterations at most (default 100)")
    meta.add_argument("--horizons", default="20,50,100", help="curriculum of episode lengths (default 20,50,100)")
    meta.add_argument("--games", type=int, default=8, help="seeds per drawn game (default 8)")
    meta.add_argument("--configs", type=int, default=2, help="games drawn per iteration (default 2)")
    meta.add_argument("--truncation", type=int, default=10, help="TBPTT / PES truncation length (default 10)")
    meta.add_argument("--meta-lr", type=float, default=3e-3, help="meta-optimizer step (default 3e-3)")
    meta.add_argument("--val-every", type=int, default=10, help="validate every N iterations (default 10)")
    meta.add_argument(
        "--trunk-search",
        default="",
        help="factors of the trunk step to score on whole episodes after training, the best kept, e.g. "
        "0.5,1,2,4 (learned_mlp, learned_step; default: none)",
    )
    meta.add_argument(
        "--head-search",
        default="",
        help="factors of the heads' steps to score on whole episodes after training, every pair with --trunk-search's, "
        "the best kept, e.g. 1,2,3,4 (learned_mlp, learned_step; default: none)",
    )
    meta.add_argument(
        "--val-metric",
        default="mean",
        help="what validation keeps the best rule by: mean (the meta-loss, default) or final (the whole training "
        "objective at the episode's end, as the result tables score)",
    )
    meta.add_argument(
        "--search-metric",
        default="mean",
        help="what --trunk-search and --head-search score, as --val-metric reads it: mean (default) or final",
    )
    meta.add_argument(
        "--floor",
        default="legacy",
        choices=["true", "best", "legacy"],
        help="what the meta-loss measures from: true (the whole training objective's exact L* where a solve gives "
        "it: quadratic, regression's linear trunk; else the suite's bound 0), best (the sealed protocol's L*: exact, "
        "else a best run, seconds per drawn game) or legacy (the batch loss from the "
        "quadratic's equilibrium loss, else 0; default, as the shipped weights were trained)",
    )
    meta.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    meta.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    meta.add_argument(
        "--out", type=Path, required=True, help="output directory: a new or empty one, or the run's own with --resume"
    )
    meta.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    meta.add_argument(
        "--sweep",
        type=Path,
        default=None,
        help="a sweep file (TOML: [meta_train], [search], [sweep]; see examples/sweep_meta_train.toml): run it on "
        "Ray Tune instead of one run (needs pip install 'mtg-env[tune]')",
    )
    meta.add_argument("--address", default=None, help="with --sweep: a Ray cluster address (default: a local Ray)")
    meta.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _threads_option(meta)


def parse_budget(text: str) -> float:
    """Seconds of a budget such as ``90s``, ``10m``, ``1.5h`` or ``600`` (seconds)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ValueError(f"--budget must look like 90s, 10m or 1h, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"--budget must be a positive duration, got {text!r}")
    return value


def _number_list(flag: str, text: str, kind: type, example: str) -> tuple[Any, ...]:
    """A comma-separated list of numbers from a flag, refused naming the flag (int('x') names nothing)."""
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        raise CLIError(f"{flag} must be comma-separated {kind.__name__}s ({example}), got {text!r}") from None


#: Flags that set the run itself: with --sweep, the file's [meta_train] does (a flag beside it is refused).
_RUN_FLAGS = ("agent", "suite", "consensus", "method", "budget", "iterations", "horizons", "games", "configs",
              "truncation", "meta_lr", "val_every", "trunk_search", "head_search", "search_metric", "val_metric",
              "floor", "seed", "device")  # fmt: skip


def _run_defaults() -> dict[str, Any]:
    """The meta-train flags' defaults, as the parser gives them."""
    parser = argparse.ArgumentParser()
    _meta_train_parser(parser.add_subparsers())
    return vars(parser.parse_args(["meta-train", "--out", "."]))


def _sweep(args: argparse.Namespace) -> int:
    from agents.learned.sweep import load_sweep, run_sweep

    defaults = _run_defaults()
    given = [f"--{name.replace('_', '-')}" for name in _RUN_FLAGS if getattr(args, name) != defaults[name]]
    if given:
        raise CLIError(f"with --sweep the run is the file's [meta_train]; drop {', '.join(given)} (or set it there)")
    try:
        config = load_sweep(args.sweep)
    except ValueError as err:
        raise CLIError(str(err)) from None
    _check_out_dir(args.out)
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        raise CLIError("--sweep needs Ray Tune: pip install 'mtg-env[tune]'") from None
    try:
        result = run_sweep(
            config, args.out, address=args.address, resume=args.resume, verbose=0 if args.no_progress else 1
        )
    except (FileExistsError, FileNotFoundError, RuntimeError) as err:
        raise CLIError(str(err)) from None
    best = result.best
    print(
        f"swept {len(result.trials)} trials of {config.base.agent} on {config.base.suite}; best held-out meta-loss "
        f"{best['best_val']:.4f} with {best['params']}"
    )
    print(f"wrote {result.weights} (use it with --weights), {args.out / 'sweep.json'}, {args.out / 'tune'}")
    return 0


def _meta_train(args: argparse.Namespace) -> int:
    from agents.learned.train import MetaTrainConfig, NonFiniteMetaUpdate, meta_train

    if args.sweep is not None:
        return _sweep(args)
    if args.address is not None:
        raise CLIError("--address goes with --sweep (a single run does not use Ray)")
    if args.agent is None:
        raise CLIError("meta-train needs --agent (learned_mlp, learned_lstm or learned_step), or --sweep FILE")
    try:
        horizons = _number_list("--horizons", args.horizons, int, "episode lengths such as 20,50,100")
        trunk_search, head_search = (
            _number_list(flag, text, float, "factors such as 0.5,1,2") if text else ()
            for flag, text in (("--trunk-search", args.trunk_search), ("--head-search", args.head_search))
        )
        suites = tuple(part.strip() for part in args.suite.split(","))
        config = MetaTrainConfig(
            agent=args.agent,
            suite=suites,
            consensus=tuple(part.strip() for part in args.consensus.split(",")),
            method=args.method,
            iterations=args.iterations,
            budget_s=None if args.budget is None else parse_budget(args.budget),
            games=args.games,
            configs=args.configs,
            horizons=horizons,
            truncation=args.truncation,
            meta_lr=args.meta_lr,
            val_every=args.val_every,
            val_metric=args.val_metric,
            search_metric=args.search_metric,
            floor=args.floor,
            trunk_search=trunk_search,
            head_search=head_search,
            # each family's own (float64 quadratics, float32 else); one family's written out, as runs before mixtures
            dtype=("float64" if suites == ("quadratic",) else "float32") if len(suites) == 1 else "auto",
            seed=args.seed,
            device=args.device,
            init=args.init,
        )
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    _check_out_dir(args.out)
    held = sorted(p.name for p in args.out.iterdir()) if args.out.is_dir() else []
    if held and not args.resume:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise CLIError(
            f"--out {args.out} is not empty (it holds {shown}); pass --resume to continue the run there, or a new "
            "--out directory"
        )
    try:
        result = meta_train(config, out=args.out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, NonFiniteMetaUpdate) as err:
        raise CLIError(str(err)) from None
    last = result.rows[-1] if result.rows else {}
    print(
        f"meta-trained {args.agent} on {args.suite} ({args.method}): {last.get('iteration', 0)} iterations in "
        f"{result.seconds:.1f}s; best held-out meta-loss {result.best_val:.4f} at iteration {result.best_iteration}"
    )
    if result.skipped_steps:
        print(
            f"{result.skipped_steps} meta-steps skipped: a game blew up within the truncation and left a non-finite "
            "meta-gradient (the rule was not moved by it)"
        )
    print(f"wrote {args.out / 'best.pt'}, {args.out / 'last.pt'}, {args.out / 'log.csv'}, {args.out / 'meta_loss.png'}")
    return 0
