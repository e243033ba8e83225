"""``mtg-env run``: one episode of a suite with one baseline agent per task; a table, a summary and figures."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from agents.runner import AGENTS
from mtg_env._io import dump_json
from mtg_env.cli._common import CLIError, _check_out_dir, _threads_option
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


def _run_parser(sub: Any) -> None:
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
