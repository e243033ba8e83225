"""The ``mtg-env`` command: ``run`` plays the paper's agents on a suite, ``audit`` checks the paper's theorems,
``bench`` benchmarks update policies, ``coalitions`` measures the tasks' cooperative game."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agents.learned.family import FAMILIES
from agents.runner import AGENTS
from mtg_env._io import dump_json
from mtg_env.consensus import CONSENSUS_RULES
from mtg_env.engine.optim import OPTIMIZERS
from mtg_env.rng import check_seed
from mtg_env.suites import SUITES

#: The agent ``mtg-env run`` plays when ``--agent`` is not given, per suite (``gradient`` for the others). On
#: digits one gradient step size cannot serve every task: the ink task's least-squares head has curvature up to
#: about 14 on the trunk's unnormalised ReLU features and a wide spread of it, so lr 0.1 sits at the edge of
#: stability and a stable lr leaves it far from its best response (ink test MSE 0.44-0.79 after 500 steps at lr
#: 0.02-0.1) while Adam's per-coordinate scaling trains all four tasks (ink 0.07-0.09, accuracies >= 0.97).
DEFAULT_AGENT = {"digits": "adam"}


class CLIError(SystemExit):
    """A refused command. :func:`main` prints ``mtg-env <command>: <message>`` as one line on stderr (no traceback)
    and exits with status 2, argparse's status for bad usage; ``str(error)`` is that line."""

    def __init__(self, message: str, prog: str | None = None, usage: bool = False):
        super().__init__(message)
        self.code = 2
        self.prog = prog
        self.usage = usage
        """Whether it is a usage error (argparse's): the line then points to ``--help``."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its errors in the commands' one-line style (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(message, prog=self.prog, usage=True)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtg-env", description="Multi-task learning games (PettingZoo).")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="play one episode with baseline agents and write a summary",
        description="Play one episode of a suite with one baseline agent per task; print a per-task table and "
        "write DIR/summary.json, DIR/history.json and loss-curve PNGs.",
    )
    run.add_argument("--suite", default="digits", choices=sorted(SUITES), help="task suite (default: digits)")
    run.add_argument(
        "--consensus", default="sum", choices=sorted(CONSENSUS_RULES), help="trunk consensus rule (default: sum)"
    )
    run.add_argument(
        "--agent",
        default=None,
        choices=sorted(AGENTS),
        help="agent (default: adam on digits, whose heads' curvatures differ too much for one gradient step size to "
        "train them all; gradient, the paper's rule, on the other suites); learned_* play their shipped weights for "
        "the suite (learned_step: --action-mode step_size)",
    )
    run.add_argument("--weights", type=Path, default=None, help="learned agents: a rule file (e.g. DIR/best.pt)")
    run.add_argument(
        "--allow-other-suite",
        action="store_true",
        help="play --weights meta-trained on another suite than --suite (refused otherwise)",
    )
    run.add_argument("--steps", type=int, default=500, help="episode length (max_cycles; default 500)")
    run.add_argument("--seed", type=int, default=0, help="env seed (default 0)")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default runs/<suite>_<consensus>_<agent>_s<seed>, plus a hash of every other option "
        "that changes the result, the weights' sha256 included)",
    )
    run.add_argument("--action-mode", default="update", choices=["update", "step_size"], help="action mode")
    run.add_argument("--lr", type=float, default=None, help="head step size (default: the agent's)")
    run.add_argument("--trunk-lr", type=float, default=None, help="trunk step size (default: --lr)")
    run.add_argument(
        "--schedule",
        default="constant",
        choices=["constant", "robbins_monro", "summable"],
        help="step-size schedule of the gradient agent",
    )
    run.add_argument(
        "--trunk-optimizer",
        default=None,
        choices=list(OPTIMIZERS),
        help="optimizer after the consensus rule, on the gradient -C(P) (default: none, the trunk moves by C(P))",
    )
    run.add_argument("--trunk-optimizer-lr", type=float, default=None, help="its learning rate (default: torch's)")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    run.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _threads_option(run)
    audit = sub.add_parser(
        "audit",
        help="check the paper's theorems on games where the answer is known; write a Markdown report",
        description="Run the audit experiments (Theorem 3, Assumption 2, Definition 1 / Proposition 2, "
        "Remarks 10 and 13, Theorem 1) and write DIR/report.md, DIR/audit.json and PNG figures.",
    )
    audit.add_argument("--out", type=Path, default=Path("runs/audit"), help="output directory (default runs/audit)")
    audit.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    audit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    audit.add_argument(
        "--stability",
        action="store_true",
        help="the open directions instead: noise models (Assumption 7) and regularisation (Assumption 6)",
    )
    _threads_option(audit)
    meta = sub.add_parser(
        "meta-train",
        help="meta-train a learned agent on a suite's family of games",
        description="Meta-train a learned agent (TBPTT through the engine, or antithetic ES / PES) on games drawn "
        "from a suite's family; write DIR/last.pt (resumable), DIR/best.pt (the best rule on held-out games), "
        "DIR/log.csv and DIR/meta_loss.png.",
    )
    meta.add_argument("--agent", required=True, choices=["learned_mlp", "learned_lstm", "learned_step"])
    meta.add_argument("--suite", default="quadratic", choices=list(FAMILIES), help="game family (default: quadratic)")
    meta.add_argument("--method", default="tbptt", choices=["tbptt", "es", "pes"], help="default: tbptt")
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
        "--val-metric",
        default="mean",
        help="what validation keeps the best rule by: mean (the meta-loss, default) or final (the whole training "
        "objective at the episode's end, as the result tables score)",
    )
    meta.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    meta.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    meta.add_argument(
        "--out", type=Path, required=True, help="output directory: a new or empty one, or the run's own with --resume"
    )
    meta.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    meta.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _threads_option(meta)
    bench = sub.add_parser(
        "bench",
        help="benchmark update policies: tuned baselines, leaderboard with CIs, manipulability of the rules",
        description="Tune every policy of a benchmark (AlgoPerf-style budget on tuning seeds), score it on held-out "
        "seeds and in mixed populations; write DIR/results.jsonl (one record per match, resumable), "
        "DIR/leaderboard.md/.csv/.json and figures, and print the leaderboard.",
    )
    bench.add_argument("config", nargs="?", type=Path, default=None, help="benchmark file (.toml/.yaml); default: "
                       "the built-in default benchmark")  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="the small built-in benchmark (under two minutes); with "
                       "a file, that benchmark shrunk the same way (two suites and rules, half the horizon, one "
                       "tuning seed, five held-out seeds)")  # fmt: skip
    bench.add_argument("--backend", default="local", choices=["local", "process", "ray"], help="where matches run")
    bench.add_argument("--workers", type=int, default=None, help="processes / Ray CPUs (default: one per CPU)")
    bench.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    bench.add_argument("--out", type=Path, default=None, help="output directory (default runs/bench_<name>)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument("--validation", action="store_true", help="sealed-protocol configs: score on the development "
                       "validation stream, not the sealed test stream")  # fmt: skip
    bench.add_argument("--test-key", default=None, help="sealed-protocol configs (protocol = 'sealed'): the 128-bit "
                       "key of the sealed test draws, 32 hex digits, or 'new' for a fresh random one")  # fmt: skip
    _threads_option(bench)
    _coalitions_parser(sub)
    return parser


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


def _meta_train(args: argparse.Namespace) -> int:
    from agents.learned.train import MetaTrainConfig, NonFiniteMetaUpdate, meta_train

    try:
        horizons = _number_list("--horizons", args.horizons, int, "episode lengths such as 20,50,100")
        trunk_search = (
            _number_list("--trunk-search", args.trunk_search, float, "factors such as 0.5,1,2")
            if (args.trunk_search)
            else ()
        )
        config = MetaTrainConfig(
            agent=args.agent,
            suite=args.suite,
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
            trunk_search=trunk_search,
            dtype="float64" if args.suite == "quadratic" else "float32",
            seed=args.seed,
            device=args.device,
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


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the suites' tensors are small, so more threads buy little and, "
        "on a busy machine, cost many times the run time; results are bit-identical at a fixed thread count)",
    )


def _set_threads(threads: int) -> None:
    if threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from agents import make_agents, run_episode
    from agents.learned import LearnedAgent
    from mtg_env.envs.parallel import MultiTaskGameEnv

    if args.steps < 1:
        raise CLIError("--steps must be >= 1")
    if args.agent is None:
        args.agent = DEFAULT_AGENT.get(args.suite, "gradient")
    if args.trunk_optimizer_lr is not None and args.trunk_optimizer is None:
        raise CLIError("--trunk-optimizer-lr needs --trunk-optimizer (sgd, momentum, adam, adamw)")
    agent_kwargs: dict[str, Any] = {}
    learned = args.agent.startswith("learned_")
    if learned and (args.lr is not None or args.trunk_lr is not None):
        raise CLIError(f"{args.agent} sets its own steps; --lr and --trunk-lr are for baselines")
    if learned:
        wanted = "step_size" if args.agent == "learned_step" else "update"
        if args.action_mode != wanted:
            raise CLIError(f"{args.agent} plays --action-mode {wanted}, got {args.action_mode}")
    if args.weights is not None:
        if not learned:
            raise CLIError(f"--weights is for learned agents, not {args.agent!r}")
        agent_kwargs["weights"] = args.weights
    if args.allow_other_suite:
        if args.weights is None:
            raise CLIError("--allow-other-suite applies to --weights (a learned agent's rule file)")
        agent_kwargs["allow_other_suite"] = True
    if args.lr is not None:
        agent_kwargs["lr"] = args.lr
    if args.trunk_lr is not None:
        agent_kwargs["trunk_lr"] = args.trunk_lr
    if args.agent == "gradient":
        agent_kwargs["schedule"] = args.schedule
    elif args.schedule != "constant":
        raise CLIError(f"--schedule applies to the gradient agent, not {args.agent!r}")
    if args.out is not None:
        _check_out_dir(args.out)  # before the episode: a bad --out must not cost a whole run

    try:  # a bad value (--lr -1, --device bogus, --seed -1, ...) gets the library's message, not a traceback
        env = MultiTaskGameEnv(
            suite=args.suite,
            consensus=args.consensus,
            action_mode=args.action_mode,
            max_cycles=args.steps,
            dtype=args.dtype,
            device=args.device,
            # The paper's agents play their rule as written: no bound on an update (RL learners want one).
            max_update=None,
            update_units="raw",  # the updates themselves (relative units play the same, with a conversion's cost)
            log_step_range=(-30.0, 5.0),  # step_size mode: any step size a baseline agent would take
            trunk_optimizer=args.trunk_optimizer,
            trunk_optimizer_kwargs=None if args.trunk_optimizer_lr is None else {"lr": args.trunk_optimizer_lr},
        )
        policies = make_agents(args.agent, env, **agent_kwargs)
        check_seed(args.seed, "--seed")
    except (ValueError, TypeError, FileNotFoundError) as err:  # also a learned agent without (sound) weights here
        raise CLIError(str(err)) from None
    first = policies[env.possible_agents[0]]
    weights = None
    if isinstance(first, LearnedAgent) and first.weights is not None:  # named and hashed as the rule was read
        weights = {"path": str(Path(first.weights).resolve()), "sha256": first.sha256}
    out = args.out or _default_out(args, None if weights is None else weights["sha256"])
    _check_out_dir(out)
    start = time.perf_counter()
    history = run_episode(env, policies, seed=args.seed, progress=not args.no_progress)
    seconds = time.perf_counter() - start

    config = {
        "suite": env.suite.describe(),
        "consensus": args.consensus,
        "agent": repr(first),
        "weights": weights,
        "action_mode": args.action_mode,
        "steps": args.steps,
        "seed": args.seed,
        "dtype": args.dtype,
        "device": str(env.device),
        "env": env.metadata["name"],
        "trunk_optimizer": None if env.trunk_optimizer is None else repr(env.trunk_optimizer),
    }
    tasks: dict[str, dict[str, Any]] = {}
    for _agent, final in history.final.items():
        row = {k: v for k, v in final.items() if k != "task"}
        tasks[final["task"]] = row
    summary = {
        "tasks": tasks,
        "config": config,
        "consensus_failures": env.consensus_failures,
        "consensus_refinements": env.consensus_refinements,
        "clipped_steps": history.clipped_steps,
        "steps_played": history.steps,
        "terminated": history.terminated,
        "seconds": round(seconds, 3),
    }
    out.mkdir(parents=True, exist_ok=True)
    # summary.json marks a complete run: drop an old one first and write the new one last, each file atomically,
    # so an interrupted run never leaves a summary beside files of another run (or half-written ones).
    (out / "summary.json").unlink(missing_ok=True)
    history.save(out / "history.json")
    title = f"{env.metadata['name']}: {args.agent} agents, {args.consensus} consensus, seed {args.seed}"
    pngs = history.plot(out, title=title)
    for stale in _FIGURES - {p.name for p in pngs}:  # e.g. nash_gap.png of an earlier run on another suite
        (out / stale).unlink(missing_ok=True)
    dump_json(out / "summary.json", summary, indent=2)

    print(
        f"\n{env.metadata['name']}: {args.agent} agents, {args.consensus} consensus, seed {args.seed}, "
        f"{history.steps} steps in {seconds:.1f}s"
    )
    if history.terminated:
        print("the episode DIVERGED (a loss or parameter became non-finite); try a smaller --lr")
    else:
        print(_table(tasks))
    print(f"wrote {out / 'summary.json'}, {out / 'history.json'}, " + ", ".join(str(p) for p in pngs))
    return 1 if history.terminated else 0


#: The figures a run may write (History.plot); those this run did not write are removed from --out.
_FIGURES = frozenset({"losses.png", "nash_gap.png"})


def _check_out_dir(out: Path) -> None:
    """Refuse an output directory that cannot be written, with the reason (not a traceback after the run)."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == out else f"lies under the file {parent}"
                raise SystemExit(f"mtg-env: --out {out} {what}; give a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise SystemExit(f"mtg-env: --out {out}: {parent} is not writable")
            return


def _default_out(args: argparse.Namespace, weights_sha256: str | None = None) -> Path:
    """runs/<suite>_<consensus>_<agent>_s<seed>, plus a short hash of every other option that changes the result
    (the sha256 of a learned agent's --weights file among them), so that runs with different settings never
    overwrite each other."""
    name = f"{args.suite}_{args.consensus}_{args.agent}_s{args.seed}"
    defaults = {"steps": 500, "action_mode": "update", "lr": None, "trunk_lr": None, "schedule": "constant",
                "dtype": "float32", "device": "cpu", "trunk_optimizer": None, "trunk_optimizer_lr": None,
                "threads": 1}  # fmt: skip
    changed = {k: getattr(args, k) for k, v in defaults.items() if getattr(args, k) != v}
    if args.weights is not None:  # the file's bytes, not its name: a retrained DIR/best.pt is another run
        changed["weights"] = weights_sha256 or str(args.weights)
    if changed:
        import hashlib

        name += "_" + hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
    return Path("runs") / name


def _table(tasks: dict[str, dict[str, Any]]) -> str:
    header = f"{'task':<14}{'train_loss':>12}{'test metric':>24}{'nash_gap':>12}"
    lines = [header, "-" * len(header)]
    for name, row in tasks.items():
        if "test_accuracy" in row:
            metric = f"accuracy {row['test_accuracy']:.4f}"
        elif "test_mse" in row:
            metric = f"mse {row['test_mse']:.4f}"
        else:
            metric = "-"
        gap = f"{row['nash_gap']:.3g}" if "nash_gap" in row else "-"
        lines.append(f"{name:<14}{row['train_loss']:>12.4f}{metric:>24}{gap:>12}")
    return "\n".join(lines)


def _bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mtg_env.bench import default_config, load_config, quick_config, run_bench

    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.address is not None and args.backend != "ray":
        parser.error("--address applies to --backend ray")
    sealed = _sealed_config(args)
    if sealed is not None:
        return _bench_sealed(args, sealed)
    if args.test_key is not None or args.validation:
        parser.error("--test-key and --validation apply to a sealed-protocol config (protocol = 'sealed')")
    try:  # the whole config is checked before anything is written or played: one line that names the key
        if args.config is None:
            config = quick_config() if args.quick else default_config()
        else:
            config = load_config(args.config)
            if args.quick:
                config = quick_config(config)
        config.check()
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        raise CLIError(" ".join(str(err).split())) from None
    out = args.out or Path("runs") / f"bench_{config.name}"
    _check_out_dir(out)
    import resource

    def cpu() -> float:  # this process and its finished workers (a local Ray's workers are not counted)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    start, cpu_start = time.perf_counter(), cpu()
    summary = run_bench(
        config, out, args.backend, workers=args.workers, address=args.address, progress=not args.no_progress
    )
    seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
    print((out / "leaderboard.md").read_text().split("\n## Per workload")[0])
    skipped = summary["skipped_lines"]
    if skipped:
        lines = ", ".join(f"{s['line']} ({s['reason']})" for s in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        print(f"{out / 'results.jsonl'}: skipped {len(skipped)} line(s) that were not intact records (a broken "
              f"record's match was played again): line {lines}; the non-blank ones are kept in "
              f"{out / 'results.skipped'}")  # fmt: skip
    print(f"{config.name}: {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU on the {args.backend} backend; wrote "
          f"{out / 'results.jsonl'}, {out / 'leaderboard.md'} (.csv, .json) and figures")  # fmt: skip
    return 0


def _sealed_config(args: argparse.Namespace) -> Any:
    """The :class:`~mtg_env.bench.sealed.SealedConfig` of ``args.config`` if it is a TOML file with
    ``protocol = "sealed"`` (``--quick`` applied), else ``None``."""
    path = args.config
    if path is None or path.suffix != ".toml" or not path.is_file():
        return None
    import importlib

    from mtg_env.bench.sealed import is_sealed, sealed_config_from_dict

    try:
        toml: Any = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10: load_config says what to install
        return None
    try:
        data = toml.loads(path.read_text())
    except toml.TOMLDecodeError:
        return None  # load_config reports it
    if not is_sealed(data):
        return None
    try:
        config = sealed_config_from_dict(data)
        config = config.quick() if args.quick else config
        config.check()
    except (ValueError, TypeError) as err:
        raise CLIError(" ".join(str(err).split())) from None
    return config


def _bench_sealed(args: argparse.Namespace, config: Any) -> int:
    from mtg_env.bench.sealed import run_sealed

    out = args.out or Path("runs") / f"bench_{config.name}"
    start = time.perf_counter()
    try:
        stream = "validation" if args.validation else "test"
        run_sealed(config, out, test_key=args.test_key, progress=not args.no_progress, stream=stream)
    except ValueError as err:
        raise CLIError(" ".join(str(err).split())) from None
    print(f"{config.name}: {time.perf_counter() - start:.0f} s wall; wrote {out / 'report.md'} and report.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mtg-env`` console script.

    A refused command (bad arguments, an unusable file or directory, a run that cannot go on) prints one line,
    ``mtg-env <command>: <why>``, on stderr and raises :class:`CLIError`: exit status 2, no traceback.
    """
    parser = _parser()
    command = None
    try:
        args, extra = parser.parse_known_args(argv)
        command = args.command
        if extra:  # named after the command they were given to, not the top-level parser
            raise CLIError(f"unrecognized arguments: {' '.join(extra)}", usage=True)
        _set_threads(args.threads)
        return _dispatch(parser, args)
    except SystemExit as exc:
        if not isinstance(exc, CLIError) and not isinstance(exc.code, str):
            raise  # --help, or an exit status
        raise _report(exc, command) from None


def _report(exc: SystemExit, command: str | None) -> CLIError:
    """The one-line error of a refused command, printed on stderr (every subcommand's refusals pass here: a
    :class:`CLIError`, argparse's errors, or a ``SystemExit("message")``)."""
    message = str(exc) if isinstance(exc, CLIError) else str(exc.code)
    prog = f"mtg-env {command}" if command else (getattr(exc, "prog", None) or "mtg-env")
    for prefix in (f"{prog}: ", "mtg-env: "):
        message = message.removeprefix(prefix)
    line = f"{prog}: " + " ".join(part.strip() for part in message.splitlines() if part.strip())  # one line
    if getattr(exc, "usage", False):
        line += f" (see {prog} --help)"
    print(line, file=sys.stderr)
    return CLIError(line, prog=prog)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "meta-train":
        return _meta_train(args)
    if args.command == "audit":
        from mtg_env.audit import run_audit

        _check_out_dir(args.out)
        sections = run_audit(args.out, quick=args.quick, progress=not args.no_progress, stability=args.stability)
        for section in sections:
            print(f"- {section.title}: {section.finding}")
        print(f"wrote {args.out / 'report.md'}")
        return 0
    if args.command == "bench":
        return _bench(parser, args)
    if args.command == "coalitions":
        return _coalitions(args)
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":
    sys.exit(main())
