"""Per-task final train losses and head Nash gaps of a learned rule and of the tuned Adam, on the validation stream's
digits games (docs/results/learned.md, twelfth session).

    python scripts/mgda_per_task.py TUNED.json RULE.pt --consensus mgda --draws 8

``TUNED.json``: the sealed protocol's tuned baselines for the cell (``sealed.tune_baselines``' result, as
``docs/sealed/general/k7/play.py`` keeps it under ``CACHE=DIR``: ``DIR/tuned_digits_mgda_1.json`` after a digits
``mgda`` 1x cell). The digits file before the balance is ``docs/sealed/general/k13/learned_mlp_digits_before.pt``.
Prints each task's mean final loss and head Nash gap (its loss minus its best response's, so the loss minus the gap
is what the trunk's features allow) for both players, and the learned rule's loss over Adam's per task (the mean of
the games' ratios: with few draws one game can pull it far).
"""

from __future__ import annotations

import argparse
import json

import torch

from agents.learned import EngineDriver
from agents.learned.checkpoint import load_rule
from agents.learned.family import draw_games
from mtg_env import engine
from mtg_env.bench.sealed_search import SearchPlayers, _game


def _final(game: engine.Game, heads: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
    """``[B, 2M]`` each task's train loss, then its head Nash gap."""
    suite = game.suite
    with torch.no_grad():
        losses = suite.batched_losses(heads, trunk, suite.train_batch()).to(torch.float64)
    gaps = torch.stack([suite.nash_gaps(heads[b], trunk[b]).reshape(-1) for b in range(len(heads))])
    return torch.cat([losses, gaps.to(torch.float64)], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tuned", help="the cell's tuned baselines (JSON), e.g. CACHE/tuned_digits_mgda_1.json")
    parser.add_argument("rule", help="a learned-rule file, e.g. docs/sealed/general/k13/learned_mlp_digits_before.pt")
    parser.add_argument("--consensus", default="mgda", help="default mgda")
    parser.add_argument("--horizon", type=int, default=100, help="steps (digits at 1x: 100)")
    parser.add_argument("--draws", type=int, default=8, help="validation draws, 3 seeds each (default 8: 24 games)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open(args.tuned) as f:
        knobs = json.load(f)["adam"]["knobs"]
    rule = load_rule(args.rule)[1]
    rows: dict[str, list[torch.Tensor]] = {"learned": [], "adam": []}
    for options, seeds in draw_games("digits", "validation", args.draws, 3):
        game = _game("digits", options, args.horizon, consensus=args.consensus)
        with torch.no_grad():
            players = SearchPlayers(game, [knobs] * len(seeds))
            state, out = engine.reset(game, list(seeds))
            for _ in range(args.horizon):
                state, out = engine.step(game, state, players.act(state.head_grads, state.jacobian))
            rows["adam"].append(_final(game, state.heads, state.trunk))
            driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
            state, out = engine.reset(game, list(seeds))
            memory = driver.start(out)
            for _ in range(args.horizon):
                actions, memory = driver.act(state, out, memory)
                state, out = engine.step(game, state, actions)
            rows["learned"].append(_final(game, state.heads, state.trunk))
    result = {k: torch.cat(v) for k, v in rows.items()}
    m = result["adam"].shape[1] // 2
    print(f"digits under {args.consensus}, {len(result['adam'])} games; tasks: digit, parity, ge5, ink")
    for name, r in result.items():
        loss, gap = r[:, :m].mean(0).numpy().round(4), r[:, m:].mean(0).numpy().round(4)
        print(f"  {name:<8} loss {loss}  head Nash gap {gap}")
    ratio = (result["learned"][:, :m] / result["adam"][:, :m]).mean(0)
    print(f"  learned / adam, per task (mean of the games' ratios): {ratio.numpy().round(3)}")


if __name__ == "__main__":
    main()
