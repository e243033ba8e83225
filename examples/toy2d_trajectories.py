"""Each consensus rule's trajectories on the standard two-objective toy, from the standard starts.

Both agents play the paper's gradient rule (update mode, constant step) on `toy2d`; only the consensus
rule changes. Writes a figure (the loss landscape, the Pareto set, one panel per rule) and prints, per
rule and start, the final (f1, f2), the Pareto stationarity (norm of the minimum-norm convex combination
of the two gradients) and the distance to the Pareto set.

    python examples/toy2d_trajectories.py [--steps 2000] [--lr 0.05] [--rules mean,mgda,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import mtg_env
from agents import GradientAgent
from mtg_env.consensus import RULE_TABLE
from mtg_env.consensus.loss_rules import LOSS_RULES
from mtg_env.metrics import pareto_stationarity
from mtg_env.suites.toy2d import PARETO_X1, PARETO_X2, STANDARD_STARTS, distance_to_pareto_set, toy_losses

# The rules of mtg_env.consensus.loss_rules are left out of this figure: three of them take logs or ratios of the
# losses, and toy2d's losses go negative (pass --rules uw,gradvac,fairgrad for the others).
TWO_TASK_RULES = [name for name, spec in RULE_TABLE.items() if spec.min_tasks <= 2 and name not in LOSS_RULES]


def play(rule: str, start: int, steps: int, lr: float) -> np.ndarray:
    """The trunk's path (steps + 1 points) when both agents play GradientAgent(lr) under ``rule``."""
    env = mtg_env.parallel_env(
        suite="toy2d",
        start=start,
        consensus=rule,
        dtype="float64",
        max_cycles=steps,
        max_update=10.0,
        update_units="raw",
    )
    observations, infos = env.reset(seed=0)
    agents = {a: GradientAgent(lr=lr) for a in env.agents}
    for a, agent in agents.items():
        agent.reset(observations[a], infos[a], env.action_space(a))
    path = [env.get_parameters()[1].numpy().copy()]
    while env.agents:
        actions = {a: agents[a].act(observations[a], infos[a]) for a in env.agents}
        observations, _, _, _, infos = env.step(actions)
        path.append(env.get_parameters()[1].numpy().copy())
    return np.asarray(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--rules", default=",".join(TWO_TASK_RULES), help="comma-separated rule names")
    parser.add_argument("--out", type=Path, default=Path("runs/toy2d"))
    parser.add_argument("--reached", type=float, default=0.2, help="distance to the Pareto set that counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small tensors: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # on a busy machine more threads cost many times the run time
    rules = args.rules.split(",")
    paths: dict[str, list[np.ndarray]] = {}
    print(f"toy2d, GradientAgent(lr={args.lr}) for both tasks, {args.steps} steps, update mode")
    print(f"{'rule':<13}{'start':>14}{'f1':>10}{'f2':>10}{'pareto stat.':>14}{'dist. to set':>14}  reached")
    for rule in rules:
        clock = time.perf_counter()
        paths[rule] = []
        with warnings.catch_warnings():
            # Nash-MTL's solver (cvxpy/ECOS) reports its own numerical trouble; the rule warns when it
            # could not solve the bargaining problem. Both are summarised by the table, not repeated.
            warnings.simplefilter("ignore")
            for s in range(len(STANDARD_STARTS)):
                path = play(rule, s, args.steps, args.lr)
                paths[rule].append(path)
                x = torch.tensor(path[-1])
                f1, f2 = toy_losses(x).tolist()
                stat = pareto_stationarity(torch.autograd.functional.jacobian(toy_losses, x))
                dist = distance_to_pareto_set(x)
                start = f"({STANDARD_STARTS[s][0]:g}, {STANDARD_STARTS[s][1]:g})"
                print(
                    f"{rule:<13}{start:>14}{f1:>10.3f}{f2:>10.3f}{stat:>14.2e}{dist:>14.3f}  "
                    f"{'yes' if dist < args.reached else 'no'}"
                )
        print(f"{'':<13}({time.perf_counter() - clock:.1f} s)")
    figure = plot(paths, args.out, args.steps, args.lr)
    print(f"wrote {figure}")


def plot(paths: dict[str, list[np.ndarray]], out: Path, steps: int, lr: float) -> Path:
    """One panel per rule: the trunk's path from each standard start over the landscape (f1 + f2) / 2."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = np.linspace(-10, 10, 201)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=torch.float64)
    landscape = toy_losses(points).mean(1).reshape(xx.shape).numpy()  # (f1 + f2) / 2
    cols = 4
    rows = -(-len(paths) // cols)
    fig = Figure(figsize=(4 * cols, 3.6 * rows + 0.8), dpi=90)
    FigureCanvasAgg(fig)
    fill = None
    for i, (rule, trajectories) in enumerate(paths.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        fill = ax.contourf(xx, yy, landscape, levels=30, cmap="Greys")
        ax.plot(PARETO_X1, [PARETO_X2, PARETO_X2], color="tab:green", lw=4, label="Pareto set")
        for j, path in enumerate(trajectories):
            ax.plot(path[:, 0], path[:, 1], color="tab:red", lw=1.2, label="trunk's path" if j == 0 else None)
            ax.scatter(path[0, 0], path[0, 1], color="black", s=12, zorder=3, label="start" if j == 0 else None)
            ax.scatter(path[-1, 0], path[-1, 1], color="tab:red", s=18, zorder=3, label="end" if j == 0 else None)
        ax.set_title(f"{rule} consensus")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_xlabel("trunk x1 (unitless)")
        ax.set_ylabel("trunk x2 (unitless)")
        if i == 0:
            ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    fig.suptitle(
        f"toy2d (CAGrad's two-objective toy): trunk paths from the {len(STANDARD_STARTS)} standard starts, "
        f"GradientAgent(lr={lr:g}) for both tasks, {steps} steps; shading: (f1 + f2) / 2"
    )
    fig.tight_layout()
    if fill is not None:
        bar = fig.colorbar(fill, ax=fig.axes, shrink=0.6, pad=0.01)
        bar.set_label("(f1 + f2) / 2 (loss, unitless)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "toy2d_trajectories.png"
    fig.savefig(path)
    return path


if __name__ == "__main__":
    main()
