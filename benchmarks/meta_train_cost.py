"""Per-step and meta-training cost of each learned agent against the plain gradient agent, on one device.

    python benchmarks/meta_train_cost.py --device cuda          # the GPU figures
    python benchmarks/meta_train_cost.py --games 4 --steps 3    # a quick CPU run
    python benchmarks/meta_train_cost.py --suite regression --agents learned_mlp \
        --files shipped=agents/learned/weights/learned_mlp_regression.pt    # a rule file as it ships, beside them

*Play*: one engine step of B games of the suite with every task's move chosen by the player, without autograd: the
batched gradient agent (:class:`agents.batched.BatchedBaseline`, the reference) and each learned rule's batched form
(:class:`agents.learned.EngineDriver`). *Meta-train*: one TBPTT truncation (``--truncation`` differentiable steps, the
backward pass into the rule, an Adam meta-step) of :mod:`agents.learned.train`, per step of the truncation, against the
reference's play step; ``learned_step`` plays ``step_size`` games. Also printed: game-steps per second (B / seconds per
step). ``--files NAME=PATH``: a learned-rule file's play too (what a shipped or meta-trained file costs with every
option it carries, where the rows above time untrained rules). CPU rounds are timed in process CPU time with one thread
(``benchmarks/_timing.py``); CUDA rounds in wall time after a synchronize. Interleaved rounds, the median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _timing import median_seconds_per_step, steady_allocator  # benchmarks/ is on sys.path when run as a script

from agents.batched import BatchedBaseline
from agents.learned import EngineDriver, new_rule
from agents.learned.checkpoint import load_rule
from agents.learned.meta_loss import _step_log_ratio
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.suites import make_suite

#: The learned rules timed.
AGENTS = ("learned_mlp", "learned_lstm", "learned_step")


def _game(suite_name: str, mode: str, device: str, options: dict, consensus: str = "sum") -> Game:
    suite = make_suite(suite_name, device=device, **options)
    return Game(suite, consensus_rule(consensus, num_tasks=suite.num_tasks), action_mode=mode, horizon=10**9)


def reference(game: Game, games: int, name: str = "gradient") -> Callable[[], None]:
    """One step of B games played by the batched baseline ``name`` (gradient: the reference; adam) at lr 0.01."""
    player = BatchedBaseline(name, game, torch.full((games,), 0.01))
    box = list(engine.reset(game, list(range(games))))

    def step() -> None:
        with torch.no_grad():
            state = box[0]
            box[0], box[1] = engine.step(game, state, player.act(state.head_grads, state.jacobian))

    return step


def learned_play(name: str, game: Game, games: int, compile: bool = False, **options: object) -> Callable[[], None]:
    """One step of B games played by the learned rule's batched form (untrained, with config ``options``;
    ``compile``: its step compiled, :class:`~agents.learned.EngineDriver`)."""
    return rule_play(new_rule(name, **options), game, games, compile)


def rule_play(rule: torch.nn.Module, game: Game, games: int, compile: bool = False) -> Callable[[], None]:
    """One step of B games played by ``rule``'s batched form, as :func:`learned_play`."""
    driver = EngineDriver(rule.to(game.device), game, compile=compile)  # type: ignore[arg-type]
    state, out = engine.reset(game, list(range(games)))
    box = [state, out, driver.start(out)]

    def step() -> None:
        with torch.no_grad():
            actions, box[2] = driver.act(box[0], box[1], box[2])
            box[0], box[1] = engine.step(game, box[0], actions)

    return step


def learned_truncation(name: str, game: Game, games: int, truncation: int, compile: bool = False) -> Callable[[], None]:
    """One TBPTT truncation (forward through ``truncation`` steps, backward, meta-step) of the learned rule."""
    rule = new_rule(name).to(game.device)
    optimizer = torch.optim.Adam(rule.parameters(), lr=1e-3)
    driver = EngineDriver(rule, game, compile=compile)
    state, out = engine.reset(game, list(range(games)))
    start = out.losses.sum(1)
    box = [state, out, driver.start(out)]

    def run() -> None:
        optimizer.zero_grad()
        total = torch.zeros((), device=game.device)
        for _ in range(truncation):
            actions, box[2] = driver.act(box[0], box[1], box[2])
            box[0], box[1] = engine.step(game, box[0], actions)
            total = total + _step_log_ratio(box[1].losses.sum(1), start, 0.0).mean()
        total.backward()
        optimizer.step()
        box[0] = box[0].detach()
        box[2] = {k: v.detach() for k, v in box[2].items()}

    return run


def cuda_median(runners: dict[str, Callable[[], None]], steps: int, rounds: int, warmup: int) -> dict[str, float]:
    """As :func:`median_seconds_per_step`, in wall time with a CUDA synchronize around each round."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                run()
            torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--suite", default="digits", choices=["quadratic", "regression", "digits"])
    parser.add_argument("--games", type=int, default=64, help="B, games per batch (default 64)")
    parser.add_argument("--truncation", type=int, default=10, help="TBPTT truncation length (default 10)")
    parser.add_argument("--steps", type=int, default=20, help="calls per timed round (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--agents", nargs="+", default=list(AGENTS), choices=AGENTS,
        help="the learned rules to time (default all; the LSTM takes minutes at B = 64 on digits)",
    )  # fmt: skip
    parser.add_argument(
        "--compile", action="store_true",
        help="also time each rule with its step compiled (EngineDriver(compile=True); compiling takes a minute)",
    )  # fmt: skip
    parser.add_argument(
        "--consensus", default="sum",
        help="the trunk's consensus rule (default sum; under mgda the shipped files' balance plays: see below)",
    )  # fmt: skip
    parser.add_argument(
        "--files", nargs="*", default=[], metavar="NAME=PATH",
        help="learned-rule files whose play is timed too, each with every option it carries (update-mode rules)",
    )  # fmt: skip
    args = parser.parse_args()
    files = {}
    for entry in args.files:
        label, sep, path = entry.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--files takes NAME=PATH entries, got {entry!r}")
        files[label] = load_rule(path)[1]
    torch.set_num_threads(1)
    steady = steady_allocator()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this torch build sees no GPU")
    options = {"batch_size": 64} if args.suite == "digits" else {}
    update = _game(args.suite, "update", args.device, options, args.consensus)
    step_game = _game(args.suite, "step_size", args.device, options, args.consensus)
    b, k = args.games, args.truncation
    runners: dict[str, Callable[[], None]] = {
        "gradient (reference)": reference(update, b),
        "adam": reference(update, b, "adam"),
    }
    for name in args.agents:
        game = step_game if name == "learned_step" else update
        runners[f"{name} play"] = learned_play(name, game, b)
    share = {"trunk_adam": True, "adam_floor": 0.01}  # the generalist's options: the trunk's AMSGrad share
    if "learned_mlp" in args.agents:
        runners["learned_mlp+trunk_adam play"] = learned_play("learned_mlp", update, b, **share)
        # what every shipped MLP file plays: the share and the balance (which plays where the rule is min-bounded)
        runners["learned_mlp+share+balance play"] = learned_play(
            "learned_mlp", update, b, **share, balance_min_bounded=True
        )
    for label, rule in files.items():
        runners[f"{label} (file) play"] = rule_play(rule, update, b)
        if args.compile:
            runners[f"{label} (file) play, compiled"] = rule_play(rule, update, b, compile=True)
    trunc_runners = {
        f"{name} meta-train": learned_truncation(name, step_game if name == "learned_step" else update, b, k)
        for name in args.agents
    }
    if args.compile:
        for name in args.agents:
            game = step_game if name == "learned_step" else update
            runners[f"{name} play, compiled"] = learned_play(name, game, b, compile=True)
            trunc_runners[f"{name} meta-train, compiled"] = learned_truncation(name, game, b, k, compile=True)
        if "learned_mlp" in args.agents:
            runners["learned_mlp+trunk_adam play, compiled"] = learned_play("learned_mlp", update, b, True, **share)
    timer = cuda_median if args.device.startswith("cuda") else median_seconds_per_step
    play = timer(runners, args.steps, args.rounds, 2)
    meta = timer(trunc_runners, max(1, args.steps // k), args.rounds, 1)
    meta = {name: t / k for name, t in meta.items()}  # per step of a truncation
    base = play["gradient (reference)"]
    sizes = f"trunk {update.trunk_size}, heads {update.head_index.numel()}, {update.num_tasks} tasks"
    print(
        f"{args.suite} ({sizes}) under {args.consensus}, B = {b} games, device {args.device}, truncation {k}, "
        f"median of {args.rounds} rounds"
        f"{'' if steady else ' (allocator thresholds not fixed: not glibc)'}"
    )
    adam = play["adam"]
    print(f"{'player':<40}{'ms/step':>10}{'vs gradient':>13}{'vs adam':>9}{'game-steps/s':>15}")
    for name, t in {**play, **meta}.items():
        print(f"{name:<40}{1e3 * t:>10.3f}{t / base:>13.2f}{t / adam:>9.2f}{b / t:>15.0f}")


if __name__ == "__main__":
    main()
