"""The two-objective toy as CAGrad, Nash-MTL and FAMO ran it: each paper's setting replayed on the engine.

Each paper moves the point x by Adam applied to the rule's combined gradient, C(−G), from its own starts,
for its own number of iterations, on its own version of the toy (f1 × 0.1 for Nash-MTL and FAMO). Here both
agents propose their descent direction −∇f_m (unit step), the rule combines the proposals, and Adam (as
``torch.optim.Adam``) turns the combination into the trunk's move: one stateful batched consensus callable
on the engine, every (rule, start) of a paper one game of a single batch. Settings, from the papers' code:

==========  =====  ===========================  ==========  =========  =====================================
paper       scale  starts                       optimizer   iters      rules (their names)
==========  =====  ===========================  ==========  =========  =====================================
CAGrad      1.0    (−8.5, 7.5) (−8.5, −5) (9, 9)  Adam 1e-3  100 000    mean ("Adam"), mgda, pcgrad, cagrad c=0.5
Nash-MTL    0.1    the five standard starts     Adam 1e-3   35 000     sum (LS), pcgrad, cagrad c=0.4, mgda, nash_mtl
FAMO        0.1    the five standard starts     Adam 1e-3   50 000     sum (LS), random (RLW), mgda, pcgrad,
                                                                       cagrad c=0.4, imtl_g, nash_mtl
==========  =====  ===========================  ==========  =========  =====================================

Sources: CAGrad ``toy.py`` (``run_all``: ``n_iter = 100000``, ``torch.optim.Adam([x], lr=0.001)``, three
``inits``, ``cagrad(grads, c=0.5)``); Nash-MTL ``experiments/toy/trainer.py`` (``n_epochs=35000``, ``lr=1e-3``,
five ``inits``, ``--scale 1e-1``) and ``experiments/utils.py`` (``--c 0.4``); FAMO ``experiments/toy/trainer.py``
(``n_epochs=50000``, the same Adam, starts, scale and c). FAMO's loss-based weightings (SI, DWA, UW, FAMO
itself) are not consensus rules of proposals and are left out here.

No gradient clip is applied. In FAMO's repository every method that uses ``WeightMethod.backward`` calls
``clip_grad_norm_(shared, 1.0)`` before ``loss.backward()``, on gradients just zeroed, so its toy runs are not
clipped (``methods/weight_methods.py:77-80`` at 0a6ad06); Nash-MTL's ``NashMTL.backward`` and the CAGrad copy in
FAMO's repository clip after the backward, so those rows of the papers' runs had a clip at 1.0 that this replay
leaves out (docs/conventions.md).

Prints, per paper, rule and start, the final (f1, f2), the distance to the Pareto set and whether it was
reached, beside what the paper's figure shows; draws each paper's panels (one per rule).

    python examples/mtl_toy_papers.py [--papers cagrad,nash_mtl,famo] [--iterations N] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env.consensus import consensus_rule
from mtg_env.consensus.two_task import TWO_TASK_RULES, TwoTaskRule
from mtg_env.engine import Game, reset, step
from mtg_env.suites.toy2d import (
    CAGRAD_STARTS,
    PARETO_X1,
    PARETO_X2,
    STANDARD_STARTS,
    Toy2DSuite,
    distance_to_pareto_set,
    toy_losses,
)


@dataclass(frozen=True)
class Paper:
    """One paper's toy setting."""

    title: str
    """The paper and its figure."""
    scale: float
    """The factor on f1."""
    starts: tuple[tuple[float, float], ...]
    """Starting points."""
    iterations: int
    """Adam steps."""
    rules: tuple[tuple[str, str, dict[str, Any]], ...]
    """(our rule, the paper's name for it, options)."""
    figure: dict[str, str] = field(default_factory=dict)
    """What the paper says its figure shows for each rule (our rule name → a short phrase): CAGrad's text (GD
    on the mean stalls; MGDA and PCGrad reach arbitrary Pareto points; CAGrad the mean's optimum), Nash-MTL's
    Fig. 1 caption (LS, PCGrad, CAGrad led by f2's larger gradient; MGDA biased to the small-gradient task)."""
    lr: float = 1e-3
    """Adam's learning rate (every paper: 1e-3)."""


PAPERS: dict[str, Paper] = {
    "cagrad": Paper(
        "CAGrad (Liu et al. 2021), Fig. 1",
        1.0,
        CAGRAD_STARTS,
        100_000,
        (("mean", "Adam", {}), ("mgda", "MGDA", {}), ("pcgrad", "PCGrad", {}), ("cagrad", "CAGrad", {"c": 0.5})),
        {
            "mean": "stuck before the front",
            "mgda": "front, away from the mean's optimum",
            "pcgrad": "front, away from the mean's optimum",
            "cagrad": "the mean's optimum, every start",
        },
    ),
    "nash_mtl": Paper(
        "Nash-MTL (Navon et al. 2022), Fig. 1 / Appendix B",
        0.1,
        STANDARD_STARTS,
        35_000,
        (
            ("sum", "LS", {}),
            ("pcgrad", "PCGrad", {}),
            ("cagrad", "CAGrad", {"c": 0.4}),
            ("mgda", "MGDA", {}),
            ("nash_mtl", "Nash-MTL", {}),
        ),
        {
            "sum": "pulled to f2's side",
            "pcgrad": "pulled to f2's side",
            "cagrad": "pulled to f2's side",
            "mgda": "biased to f1's end",
            "nash_mtl": "front, every start, spread",
        },
    ),
    "famo": Paper(
        "FAMO (Liu et al. 2023), Fig. 1",
        0.1,
        STANDARD_STARTS,
        50_000,
        (
            ("sum", "LS", {}),
            ("random", "RLW", {}),
            ("mgda", "MGDA", {}),
            ("pcgrad", "PCGrad", {}),
            ("cagrad", "CAGrad", {"c": 0.4}),
            ("imtl_g", "IMTL-G", {}),
            ("nash_mtl", "Nash-MTL", {}),
        ),
        {},  # the figure's per-rule outcomes are not stated in FAMO's text; see docs/results/games.md
    ),
}


class AdamAfterRules:
    """A batched consensus callable: game b's rule on its proposals, then Adam on the result.

    The papers' update x ← Adam(x, grad = −C(P)) with P = −G (each agent proposes its descent direction), as
    ``torch.optim.Adam`` computes it (betas 0.9, 0.999, eps 1e-8, bias-corrected), one Adam state per game.
    Two-task closed forms (:mod:`mtg_env.consensus.two_task`) move each rule's games in one call; ``random`` (RLW:
    weights softmax(N(0, I)) drawn every step, the law torchjd's ``Random`` draws from) draws all its games'
    weights at once from this callable's seeded generator; any other rule runs game by game.

    Args:
        rules: One ``(name, options)`` per game.
        lr: Adam's learning rate.
        seed: Seeds the per-game generators of randomized rules (game b gets ``seed + b``).
    """

    batched = True
    differentiable = False

    def __init__(self, rules: list[tuple[str, dict[str, Any]]], lr: float, seed: int = 0):
        self.lr = lr
        self.betas = (0.9, 0.999)
        self.eps = 1e-8
        self.groups: list[tuple[Any, list[int]]] = []  # (a rule, or "random", and its games)
        by_rule: dict[tuple[str, tuple[tuple[str, Any], ...]], list[int]] = {}
        for b, (name, options) in enumerate(rules):
            by_rule.setdefault((name, tuple(sorted(options.items()))), []).append(b)
        for (name, options), games in by_rule.items():
            contiguous = games == list(range(games[0], games[-1] + 1))
            if name in TWO_TASK_RULES and contiguous:
                self.groups.append((TwoTaskRule(name, **dict(options)), games))
            elif name == "random" and contiguous and not options:
                self.groups.append(("random", games))
            else:
                for b in games:
                    self.groups.append((consensus_rule(name, num_tasks=2, seed=seed + b, **dict(options)), [b]))
        self.num_games = len(rules)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget Adam's moments."""
        self.t = 0
        self.generator = torch.Generator().manual_seed(self.seed)
        self.m: Tensor | None = None
        self.v: Tensor | None = None

    def __call__(self, proposals: Tensor) -> Tensor:
        combined = torch.empty(proposals.shape[0], proposals.shape[2], dtype=proposals.dtype, device=proposals.device)
        for rule, games in self.groups:
            block = slice(games[0], games[-1] + 1)  # a rule's games are contiguous in a batch
            if isinstance(rule, TwoTaskRule):
                combined[block] = rule(proposals[block])
            elif rule == "random":
                noise = torch.randn(len(games), proposals.shape[1], generator=self.generator, dtype=torch.float64)
                weights = noise.softmax(-1).to(proposals.dtype)
                combined[block] = (weights.unsqueeze(-1) * proposals[block]).sum(-2)
            else:
                combined[games[0]] = rule(proposals[games[0]])
        grad = -combined  # the papers' x.grad
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(grad), torch.zeros_like(grad)
        beta1, beta2 = self.betas
        self.t += 1
        self.m = self.m * beta1 + grad * (1 - beta1)
        self.v = self.v * beta2 + grad * grad * (1 - beta2)
        denom = (self.v.sqrt() / (1 - beta2**self.t) ** 0.5) + self.eps
        return -(self.lr / (1 - beta1**self.t)) * self.m / denom


Game_ = tuple[str, dict[str, Any], int]  # (rule, options, start index): one game of a batch


def batch_games(papers: list[Paper]) -> list[Game_]:
    """The games of papers that share a toy (scale, starts, lr): every (rule, options) any of them runs, from
    every start, once (Nash-MTL's and FAMO's LS, PCGrad, CAGrad, MGDA and Nash-MTL are the same games)."""
    rules: list[tuple[str, dict[str, Any]]] = []
    for paper in papers:
        for name, _, opts in paper.rules:
            if (name, opts) not in rules:
                rules.append((name, opts))
    return [(name, opts, s) for name, opts in rules for s in range(len(papers[0].starts))]


def replay(papers: list[Paper], iterations: list[int], stride: int = 100) -> tuple[list[Game_], dict[int, np.ndarray]]:
    """Play the games of ``papers`` (one toy) as one batch on the engine, Adam steps up to the largest of
    ``iterations``.

    Returns the games and, for each count in ``iterations``, the paths ``[B, points, 2]`` up to it (every
    ``stride`` steps and the last).
    """
    games = batch_games(papers)
    rule = AdamAfterRules([(name, opts) for name, opts, _ in games], papers[0].lr)
    suite = Toy2DSuite(scale=papers[0].scale, dtype="float32")  # the papers' x is a float32 torch.Tensor
    horizon = max(iterations)
    game = Game(suite, rule, action_mode="update", horizon=horizon, divergence_threshold=None)
    starts = torch.tensor([papers[0].starts[s] for _, _, s in games], dtype=torch.float32)
    state, _ = reset(game, seeds=list(range(len(games))), trunk=starts)
    rule.reset()
    no_heads = torch.zeros(len(games), 0)
    path = [state.trunk.clone()]
    paths: dict[int, np.ndarray] = {}
    for it in range(1, horizon + 1):
        state, _ = step(game, state, (no_heads, -state.jacobian))  # each agent proposes −∇f_m
        if it % stride == 0 or it in iterations:
            path.append(state.trunk.clone())
        if it in iterations:
            paths[it] = torch.stack(path, 1).numpy()
    return games, paths


def reference_loop(paper: Paper, rule: str, start: int, iterations: int) -> np.ndarray:
    """The papers' own loop for one (rule, start), without the engine: ``torch.optim.Adam`` on x, x.grad set
    to −C(−∇f) with the named rule (its solver per step). The final x."""
    options = next(opts for name, _, opts in paper.rules if name == rule)
    combine = consensus_rule(rule, num_tasks=2, **options)
    x = torch.tensor(paper.starts[start], dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=paper.lr)
    for _ in range(iterations):
        jacobian = torch.autograd.functional.jacobian(lambda y: toy_losses(y, paper.scale), x.detach())
        optimizer.zero_grad()
        x.grad = -combine(-jacobian)
        optimizer.step()
    return x.detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", default=",".join(PAPERS), help="comma-separated: " + ", ".join(PAPERS))
    parser.add_argument("--iterations", type=int, default=None, help="override every paper's iteration count")
    parser.add_argument("--reached", type=float, default=0.2, help="distance to the Pareto set that counts")
    parser.add_argument("--out", type=Path, default=Path("runs/toy_papers"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--time-reference",
        type=int,
        default=0,
        metavar="STEPS",
        help="also time the papers' own loop (no engine, the named rules) for STEPS steps per game and "
        "extrapolate it to the papers' iteration counts",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.papers.split(",")
    unknown = sorted(set(names) - set(PAPERS))
    if unknown:
        parser.error(f"unknown paper(s) {unknown}; choose from {list(PAPERS)}")
    total = time.perf_counter()
    toys: dict[tuple[float, tuple[tuple[float, float], ...], float], list[str]] = {}
    for key in names:
        paper = PAPERS[key]
        toys.setdefault((paper.scale, paper.starts, paper.lr), []).append(key)
    for keys in toys.values():
        papers = [PAPERS[k] for k in keys]
        counts = [p.iterations if args.iterations is None else args.iterations for p in papers]
        clock, cpu = time.perf_counter(), time.process_time()
        games, paths = replay(papers, counts)
        seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
        print(
            f"[one engine batch: {', '.join(keys)}; {len(games)} games, {max(counts)} steps, "
            f"{seconds:.0f} s wall, {cpu:.0f} s CPU]",
            flush=True,
        )
        for key, paper, count in zip(keys, papers, counts, strict=True):
            report(key, paper, count, games, paths[count], args)
    if args.time_reference:
        time_reference(names, args.time_reference)
    print(f"(total {time.perf_counter() - total:.0f} s)")


def report(key: str, paper: Paper, count: int, games: list[Game_], paths: np.ndarray, args: Any) -> None:
    """Print one paper's table and draw its panels."""
    index = {(name, tuple(sorted(opts.items())), s): b for b, (name, opts, s) in enumerate(games)}
    print(f"{paper.title}: f1 x {paper.scale:g}, Adam(lr={paper.lr:g}), {count} iterations")
    print(f"{'rule':<10}{'paper':<10}{'start':>13}{'f1':>9}{'f2':>9}{'dist.':>8}  reached  paper's figure")
    rows: list[tuple[str, str, int, int]] = []
    summary = []
    for name, label, opts in paper.rules:
        reached = 0
        for s in range(len(paper.starts)):
            b = index[(name, tuple(sorted(opts.items())), s)]
            rows.append((name, label, s, b))
            x = torch.tensor(paths[b, -1], dtype=torch.float64)
            f1, f2 = toy_losses(x, paper.scale).tolist()
            dist = distance_to_pareto_set(x)
            reached += dist < args.reached
            start = f"({paper.starts[s][0]:g}, {paper.starts[s][1]:g})"
            figure = paper.figure.get(name, "") if s == 0 else ""
            print(
                f"{name:<10}{label:<10}{start:>13}{f1:>9.3f}{f2:>9.3f}{dist:>8.3f}  "
                f"{'yes' if dist < args.reached else 'no':<7}  {figure}"
            )
        summary.append(f"{label} {reached}/{len(paper.starts)}")
    print("  reached the Pareto set: " + ", ".join(summary))
    if not args.no_plot:
        print(f"wrote {plot(key, paper, paths, rows, args.out)}")


def time_reference(names: list[str], steps: int) -> None:
    """Time the papers' own loop (one (rule, start) at a time, the named rules) and extrapolate."""
    estimate = 0.0
    for key in names:
        paper = PAPERS[key]
        for name, _, _ in paper.rules:
            clock = time.process_time()
            reference_loop(paper, name, 0, steps)
            per_step = (time.process_time() - clock) / steps
            estimate += per_step * paper.iterations * len(paper.starts)
            print(f"  without the engine: {key} {name}: {1e3 * per_step:.2f} ms/step")
    print(f"  without the engine, all of it: about {estimate / 60:.0f} min (extrapolated from {steps} steps a game)")


def plot(key: str, paper: Paper, paths: np.ndarray, rows: list[tuple[str, str, int, int]], out: Path) -> Path:
    """The paper's panel layout: one panel per rule, every start's trajectory; CAGrad draws them over the
    contours of the mean loss in x, Nash-MTL and FAMO in loss space (f1, f2) with the Pareto front."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = len(paper.rules)
    fig = Figure(figsize=(3.6 * cols, 3.6), dpi=90)
    FigureCanvasAgg(fig)
    segment = torch.stack(
        [torch.linspace(*PARETO_X1, 200, dtype=torch.float64), torch.full((200,), PARETO_X2, dtype=torch.float64)], 1
    )
    front = toy_losses(segment, paper.scale).numpy()
    grid = np.linspace(-10, 10, 161)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=torch.float64)
    landscape = toy_losses(points, paper.scale).mean(1).reshape(xx.shape).numpy()
    for i, (name, label, _) in enumerate(paper.rules):
        ax = fig.add_subplot(1, cols, i + 1)
        for n, _, _, b in rows:
            if n != name:
                continue
            if key == "cagrad":
                xs, ys = paths[b, :, 0], paths[b, :, 1]
            else:
                losses = toy_losses(torch.tensor(paths[b], dtype=torch.float64), paper.scale).numpy()
                xs, ys = losses[:, 0], losses[:, 1]
            ax.plot(xs, ys, color="tab:red", lw=1.2)
            ax.scatter(xs[0], ys[0], color="black", s=14, zorder=3)
            ax.scatter(xs[-1], ys[-1], color="tab:red", s=18, zorder=3)
        if key == "cagrad":
            ax.contour(xx, yy, landscape, levels=20, cmap="viridis", linewidths=0.8)
            ax.plot(PARETO_X1, [PARETO_X2, PARETO_X2], color="gray", lw=4, zorder=0)
            ax.set_xlim(-10, 10)
            ax.set_ylim(-10, 10)
        else:
            ax.plot(front[:, 0], front[:, 1], color="gray", lw=4, zorder=0)
            ax.set_xlabel("f1")
            ax.set_ylabel("f2")
        ax.set_title(label)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"toy_{key}.png"
    fig.savefig(path)
    return path


if __name__ == "__main__":
    main()
