"""One stiff quadratic of tests/test_learned_stability.py played by a shipped file, traced step by step: each play seed
alone, the total loss against its start, the losses, each trunk proposal's length, the length of their sum and of the
consensus's move, and the cosine of the move with each proposal (thirty-third session).

    python docs/sealed/stability/trace.py learned_mlp quadratic cagrad 1e5 1000     # the last steps before a blow-up
    python docs/sealed/stability/trace.py learned_mlp quadratic imtl_g 1e4 1000 --every 1 --steps 14
    python docs/sealed/stability/trace.py learned_mlp digits trimmed_mean 1e4 1000 \\
        --options "{'guard_hold_unplayed': True}"

Prints, per play seed, whether the game diverged and on how many steps the consensus moved the trunk by less than 1 %
of the longest proposal; with ``--every N`` every N-th step, else the eight steps before a divergence.
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for tests/

from agents.learned import EngineDriver
from mtg_env import engine
from tests.test_learned_stability import _mode, shipped_rule, stiff_game


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("suite")
    parser.add_argument("consensus")
    parser.add_argument("condition", type=float)
    parser.add_argument("game_seed", type=int)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="play seeds, each played alone")
    parser.add_argument("--steps", type=int, default=1000, help="steps played of the 1 000-step game")
    parser.add_argument("--every", type=int, default=0, help="print every N-th step (0: the steps before a blow-up)")
    parser.add_argument("--options", default="{}", help="config fields to change, a Python dict")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the rules' own warnings (nash_mtl's failures) are not what is traced
    rule = shipped_rule(args.name, args.suite, **ast.literal_eval(args.options))
    for seed in args.seeds:
        game = stiff_game(args.consensus, 1000, args.condition, args.game_seed, action_mode=_mode(args.name))
        driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
        lines: collections.deque[str] = collections.deque(maxlen=None if args.every else 8)
        unplayed = 0
        with torch.no_grad():
            state, out = engine.reset(game, [seed])
            memory = driver.start(out)
            start = float(out.losses.sum())
            for t in range(args.steps):
                actions, memory = driver.act(state, out, memory)
                before = state.trunk.clone()
                state, out = engine.step(game, state, actions)
                move = (state.trunk - before)[0]
                if isinstance(actions, tuple):
                    proposals = actions[1][0]
                    lengths = proposals.norm(dim=-1)
                    cosines = (proposals @ move) / (lengths * move.norm()).clamp_min(1e-300)
                    summed = float(proposals.sum(0).norm())
                else:  # the step rule's log step sizes
                    lengths, cosines, summed = actions[0, :, 1].exp(), torch.zeros(0), float("nan")
                unplayed += int(float(move.norm()) < 0.01 * float(lengths.max()))
                if not args.every or t % args.every == 0:
                    lines.append(
                        f"t {t:4d}  L/L0 {float(out.losses.sum()) / start:10.3e}  losses "
                        f"{[f'{x:.1e}' for x in out.losses[0].tolist()]}  proposals "
                        f"{[f'{x:.2g}' for x in lengths.tolist()]}  |sum| {summed:.2g}  move {float(move.norm()):.2g}"
                        f"  cos {[f'{x:.2f}' for x in cosines.tolist()]}"
                    )
                if bool(out.diverged.any()):
                    break
        diverged = bool(out.diverged.any())
        print(f"play seed {seed}: {'diverged at step ' + str(t) if diverged else 'did not diverge'}; the move was "
              f"under 1 % of the longest proposal on {unplayed} of {t + 1} steps")  # fmt: skip
        if args.every or diverged:
            print("\n".join(lines))


if __name__ == "__main__":
    main()
