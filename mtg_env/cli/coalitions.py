"""``mtg-env coalitions``: the tasks' cooperative game (v(S) of every coalition, Shapley values, the core)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mtg_env.cli._common import CLIError, _check_out_dir, _threads_option
from mtg_env.suites import SUITES


def _coalitions_parser(sub: Any) -> None:
    from mtg_env.coalitions import COALITION_RULES

    co = sub.add_parser(
        "coalitions",
        help="the tasks as a cooperative game: v(S) of every coalition, Shapley values, the core, the best partition",
        description="Train every coalition of tasks (its own shared trunk) in one engine batch and write DIR/"
        "coalitions.md, DIR/coalitions.json and PNG figures: v(S) = the loss the members of S save by sharing a trunk "
        "instead of training alone, the Shapley values, the core, the best partition, and the groupings of TAG "
        "(Fifty et al. 2021) and Standley et al. 2020 on the same game.",
    )
    co.add_argument("--suite", default="quadratic", choices=sorted(SUITES), help="task suite (default: quadratic)")
    co.add_argument("--blocks", default=None, help="quadratic only: the game of known structure with blocks of these "
                    "sizes, e.g. 4,4 (tasks alike within a block, trunk optima in conflict across)")  # fmt: skip
    co.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a suite option, VALUE in "
                    "JSON, e.g. num_tasks=6 or 'task_sizes=[20,20,20]' (repeatable; not with --blocks)")  # fmt: skip
    co.add_argument("--tasks", default=None, help="the suite's tasks that play, e.g. 0,2,3 (default: all)")
    co.add_argument("--steps", type=int, default=100, help="training steps T of every coalition (default 100)")
    co.add_argument("--lr", type=float, default=None, help="head step size (default: 1/λ_max on quadratic, else 0.1)")
    co.add_argument("--trunk-lr", type=float, default=None, help="trunk step size (default: --lr)")
    co.add_argument("--consensus", default="sum", choices=COALITION_RULES, help="the members' rule (default: sum)")
    co.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; v is their mean (default 1)")
    co.add_argument("--split", default="eval", choices=["eval", "train"], help="objective v reads (default eval)")
    co.add_argument("--method", default="exhaustive", choices=["exhaustive", "greedy"],
                    help="every coalition (M <= 12) or greedy merging (any M)")  # fmt: skip
    co.add_argument("--dtype", default="float64", choices=["float32", "float64"], help="default float64")
    co.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    co.add_argument("--out", type=Path, default=None, help="output directory (default runs/coalitions_<suite>)")
    _threads_option(co)


def _coalitions(args: argparse.Namespace) -> int:
    from mtg_env.coalitions import analyse, block_quadratic

    def ints(option: str, text: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",")]
        except ValueError:
            raise CLIError(f"{option} must be comma-separated integers such as 4,4, got {text!r}") from None

    if args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    kwargs: dict[str, Any] = {}
    if args.blocks is not None and args.suite != "quadratic":
        raise CLIError(f"--blocks builds a quadratic game; it does not apply to --suite {args.suite}")
    if args.blocks is not None and args.option:
        raise CLIError("--option does not apply to the --blocks game (its options are fixed)")
    for option in args.option:
        key, eq, text = option.partition("=")
        if not eq or not key:
            raise CLIError(f"--option must look like KEY=VALUE, got {option!r}")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text  # a bare word, e.g. trunk=mlp
    out = args.out or Path("runs") / f"coalitions_{args.suite}{'_blocks' if args.blocks else ''}"
    _check_out_dir(out)
    try:
        suite: Any = args.suite
        if args.blocks is not None:
            suite = block_quadratic(ints("--blocks", args.blocks), device=args.device, dtype=args.dtype)
        else:
            kwargs.update(device=args.device, dtype=args.dtype)
        result = analyse(
            suite,
            tasks=None if args.tasks is None else ints("--tasks", args.tasks),
            horizon=args.steps,
            lr=args.lr,
            trunk_lr=args.trunk_lr,
            rule=args.consensus,
            seeds=list(range(args.seeds)),
            split=args.split,
            method=args.method,
            **kwargs,
        )
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    title = result.title(None if args.blocks is None else f"quadratic blocks {args.blocks}")
    paths = result.write(out, title=title)
    summary = result.summary()
    print(f"{title}: {result.games} games in one batch, {result.seconds:.2f} s")
    print(f"best partition ({result.best.method}): {' | '.join(result.best.labels())}, Σ v = {result.best.value:.6g}")
    if result.shapley is not None and result.core is not None:
        print("Shapley values: " + ", ".join(f"{x:.4g}" for x in result.shapley))
        for what, c in (("core", result.core), ("core of the best partition", result.structure_core)):
            if c is not None:
                print(f"{what}: {'non-empty' if c.nonempty else 'empty'} (least-core ε = {c.epsilon:.4g})")
    agree = "agrees" if summary["tag"]["agrees_with_best_partition"] else "differs"
    print(f"TAG grouping: {' | '.join(result.tag_partition.labels())} ({agree})")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
