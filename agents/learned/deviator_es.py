"""Training the learned deviator (:mod:`agents.learned.deviator`) by antithetic evolution strategies on its own
reward only.

The deviator plays task m (every m) of batched engine games while the other tasks play the reference gradient rule,
everyone at the reference's tuned step size on the workload (an :class:`Arena`: ``scripts/train_deviator.py`` builds
them from a benchmark file with the bench's own tuning, the step size the bench gives it with ``[mixed]
reference_lr``). Its fitness is its
own final training loss against the all-reference game of the same seed, in the bench's own measure (the
manipulability table's *own gain*: ``(L_ref,m − L_dev,m) / mean_j |L0_j − L_ref,j|``, clipped to ±``clip``; a game
it makes diverge scores −``clip``; a log ratio would not do, the quadratic suite's losses go negative), over the
benchmark's suites, its consensus rules, the tasks and the iteration's seeds. One deviator is trained for all the
rules (it does not see which rule it plays under). The others' losses do not enter: it is selfish.

Each iteration plays, per workload, one batch: the all-reference games and the centre θ and the 2N antithetic
members θ ± σ ε_i on every (seed, task). Every draw is from explicit seeds (``torch.Generator``); the training seeds
are disjoint from the benchmark's tuning and held-out seeds (:func:`train_seeds` checks it).

    python scripts/train_deviator.py      # the shipped weights, agents/learned/weights/learned_deviator.pt
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from agents.learned.deviator import BatchedDeviator, DeviatorConfig, init_theta
from mtg_env import engine
from mtg_env._args import int_arg, real_arg
from mtg_env.engine import Game


@dataclass(frozen=True)
class ESConfig:
    """Antithetic ES on the deviator's own fitness."""

    iterations: int = 40
    """ES steps."""
    pairs: int = 8
    """N antithetic pairs per step (2N members, plus the centre for the record)."""
    seeds_per_iteration: int = 2
    """Games per (member, workload, task) each step: fresh training seeds every step, shared by all members."""
    sigma: float = 0.1
    """The perturbation's standard deviation."""
    lr: float = 0.05
    """Adam's step size on θ."""
    clip: float = 3.0
    """Bound of one game's own gain (3: ±300 % of the reference's mean progress); a diverged game scores −clip."""
    seed: int = 0
    """Seeds θ₀ and the perturbations."""
    first_train_seed: int = 500_000
    """Training games use seeds first_train_seed, first_train_seed + 1, ... (one block per step)."""

    def __post_init__(self) -> None:
        for key in ("iterations", "pairs", "seeds_per_iteration"):
            int_arg(key, getattr(self, key), low=1)
        for key in ("sigma", "lr", "clip"):
            real_arg(key, getattr(self, key), low=0.0, low_open=True)
        int_arg("seed", self.seed, low=0)
        int_arg("first_train_seed", self.first_train_seed, low=0)


def train_seeds(es: ESConfig, reserved: Sequence[int], iteration: int) -> list[int]:
    """The training seeds of step ``iteration``; ``ValueError`` if any training seed of the whole run is one of
    ``reserved`` (the benchmark's tuning and held-out seeds)."""
    first, last = es.first_train_seed, es.first_train_seed + es.iterations * es.seeds_per_iteration
    taken = sorted(s for s in set(reserved) if first <= s < last)
    if taken:
        raise ValueError(f"first_train_seed: the training seeds [{first}, {last}) include the benchmark's tuning or "
                         f"held-out seeds {taken}; choose another first_train_seed")  # fmt: skip
    start = first + iteration * es.seeds_per_iteration
    return list(range(start, start + es.seeds_per_iteration))


@dataclass(frozen=True)
class Arena:
    """One workload of the training: its game and the step size every player plays (the reference's tuned one)."""

    name: str
    game: Game
    lr: float


def play_gains(arena: Arena, thetas: Tensor, seeds: list[int], config: DeviatorConfig, clip: float) -> Tensor:
    """``[K, S, M]`` each deviator's own gain on seed s as task m, for the weights ``thetas [K, P]``: its final
    training loss below the all-reference game's, ``(L_ref,m − L_dev,m) / mean_j |L0_j − L_ref,j|`` (the bench's
    manipulability measure, /100), clipped to ±``clip``, −``clip`` for a game it made diverge; NaN where the
    all-reference game diverged (no comparison)."""
    game, k, s, m = arena.game, thetas.shape[0], len(seeds), arena.game.num_tasks
    # Rows: the S all-reference games (θ = 0 plays exactly the reference: exp(0) = 1), then K × S × M deviations.
    theta_rows = torch.cat([torch.zeros(s, thetas.shape[1], dtype=torch.float64),
                            thetas.to(torch.float64).repeat_interleave(s * m, 0)])  # fmt: skip
    tasks = torch.cat([torch.zeros(s, dtype=torch.int64), torch.arange(m).repeat(k * s)])
    game_seeds = seeds + [seed for seed in seeds for _ in range(m)] * k
    bsz = len(game_seeds)
    form = BatchedDeviator(game, torch.full((bsz,), arena.lr, dtype=torch.float64), theta_rows, tasks, config)
    state, out = engine.reset(game, game_seeds)
    suite = game.suite
    alive = torch.ones(bsz, dtype=torch.bool, device=game.device)
    with torch.no_grad():
        start = suite.batched_losses(state.heads[:s], state.trunk[:s], suite.train_batch()).to(torch.float64).cpu()
        for _ in range(game.horizon):
            head, proposals = form.act(state.head_grads, state.jacobian, out.features)
            head = torch.where(alive[:, None], head, torch.zeros_like(head))  # as the bench: a diverged game stands
            proposals = torch.where(alive[:, None, None], proposals, torch.zeros_like(proposals))
            state, out = engine.step(game, state, (head, proposals))
            alive = alive & ~(out.diverged | out.out_of_domain)
        final = suite.batched_losses(state.heads, state.trunk, suite.train_batch()).to(torch.float64).cpu()
    final[~(alive.cpu() & torch.isfinite(final).all(1))] = math.inf
    ref = final[:s]  # [S, M]
    dev = final[s:].reshape(k, s, m, m)[..., torch.arange(m), torch.arange(m)]  # task m's own loss: [K, S, M]
    scale = (start - ref).abs().mean(1).clamp_min(1e-12)  # [S]: the reference population's mean progress per task
    gains = ((ref.unsqueeze(0) - dev) / scale[None, :, None]).clamp(-clip, clip)  # dev = +inf (diverged): −clip
    valid = torch.isfinite(ref).all(1)[None, :, None].expand_as(gains)
    return torch.where(valid, gains, torch.full_like(gains, math.nan))


def fitness(arenas_: list[Arena], thetas: Tensor, seeds: list[int], config: DeviatorConfig, clip: float) -> Tensor:
    """``[K]`` the mean own log gain of each θ over the workloads, tasks and seeds (games without an all-reference
    comparison left out)."""
    gains = torch.cat([play_gains(a, thetas, seeds, config, clip).flatten(1) for a in arenas_], 1)
    return gains.nanmean(1)


def _ranks(x: Tensor) -> Tensor:
    """Centred ranks in [−½, ½] (ES's fitness shaping: invariant to the fitness's scale)."""
    ranks = torch.empty_like(x)
    ranks[x.argsort(stable=True)] = torch.arange(x.numel(), dtype=x.dtype)
    return ranks / (x.numel() - 1) - 0.5


def train(
    fields: Sequence[Arena],
    es: ESConfig,
    config: DeviatorConfig | None = None,
    reserved: Sequence[int] = (),
    log: Callable[[str], None] | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """Train θ by antithetic ES on the workloads ``fields``, never on a seed of ``reserved`` (the benchmark's tuning
    and held-out seeds); returns ``(θ, meta)`` (meta: the settings, the step sizes, the centre's fitness on each
    step's games, the wall time)."""
    config = config or DeviatorConfig()
    started = time.perf_counter()
    train_seeds(es, reserved, 0)  # the overlap check, before any game
    fields = list(fields)
    theta = init_theta(config, es.seed).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=es.lr)
    gen = torch.Generator().manual_seed(es.seed + 1)
    history = []
    for it in range(es.iterations):
        eps = torch.randn(es.pairs, config.num_params, generator=gen, dtype=torch.float64)
        members = torch.cat([theta.detach()[None], theta.detach() + es.sigma * eps, theta.detach() - es.sigma * eps])
        fit = fitness(fields, members, train_seeds(es, reserved, it), config, es.clip)
        shaped = _ranks(fit[1:])
        grad = ((shaped[: es.pairs] - shaped[es.pairs :]) @ eps) / (es.pairs * es.sigma)
        opt.zero_grad()
        theta.grad = -grad  # ascent on the fitness
        opt.step()
        history.append(float(fit[0]))
        if log is not None:
            log(f"step {it:3d}  centre fitness {fit[0]:+.4f}  best member {fit[1:].max():+.4f}  "
                f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    meta = {
        "es": asdict(es),
        "config": asdict(config),
        "lrs": {a.name: a.lr for a in fields},
        "centre_fitness": history,
        "wall_seconds": time.perf_counter() - started,
    }
    return theta.detach(), meta
