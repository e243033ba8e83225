"""The sealed protocol's external-tuning track (:mod:`mtg_env.bench.sealed`): the declared search space of every
baseline's candidates, the batched players that play B candidates at once on the engine's tensors, and the games
they and the learned rules play."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtg_env import engine
from mtg_env._args import int_arg, real_arg
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game

#: The externally tuned baselines, and which controls each one's candidates vary.
BASELINE_CONTROLS: dict[str, tuple[str, ...]] = {
    "gradient": ("lr", "trunk_ratio", "schedule"),
    "momentum": ("lr", "momentum", "trunk_ratio", "schedule"),
    "adam": ("lr", "beta1", "beta2", "trunk_ratio", "schedule"),
    "rmsprop": ("lr", "beta2", "trunk_ratio", "schedule"),
}
SCHEDULES = ("constant", "cosine", "warmup")
#: The warm-up schedule ramps the step linearly over this fraction of the horizon, then holds it.
WARMUP_FRACTION = 0.1
_EPS = 1e-8


# ------------------------------------------------------------------------------------ the search space
@dataclass(frozen=True)
class SearchSpace:
    """The external-tuning track's declared search space (every baseline's candidates are its product)."""

    low: float = 1e-4
    """Smallest step size."""
    high: float = 10.0
    """Largest step size."""
    points_per_decade: int = 3
    """Step sizes per decade of the log grid (at least 3)."""
    momentum: tuple[float, ...] = (0.5, 0.9, 0.99)
    """Heavy-ball μ."""
    beta1: tuple[float, ...] = (0.5, 0.9)
    """Adam's first-moment decay."""
    beta2: tuple[float, ...] = (0.99, 0.999)
    """Adam's second-moment decay, and RMSprop's α."""
    trunk_ratios: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)
    """The trunk's step over the heads' step."""
    schedules: tuple[str, ...] = SCHEDULES
    """``constant``, ``cosine`` (to 0 at the horizon) and ``warmup`` (linear over the first 10 %, then constant)."""

    def __post_init__(self) -> None:
        real_arg("[search] low", self.low, 0.0, low_open=True)
        real_arg("[search] high", self.high, self.low, low_open=True)
        int_arg("[search] points_per_decade", self.points_per_decade, low=3)
        for name in ("momentum", "beta1", "beta2"):
            values = getattr(self, name)
            if not values or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in values):
                raise ValueError(f"[search] {name} must be a non-empty list of numbers in [0, 1), got {values!r}")
        if not self.trunk_ratios or not all(isinstance(v, (int, float)) and v > 0 for v in self.trunk_ratios):
            raise ValueError(
                f"[search] trunk_ratios must be a non-empty list of numbers > 0, got {self.trunk_ratios!r}"
            )
        if not self.schedules or any(s not in SCHEDULES for s in self.schedules):
            raise ValueError(
                f"[search] schedules must be a non-empty list of {list(SCHEDULES)}, got {self.schedules!r}"
            )

    def step_sizes(self) -> tuple[float, ...]:
        lo = math.log10(self.low)
        count = math.floor((math.log10(self.high) - lo) * self.points_per_decade + 1e-9) + 1
        return tuple(float(10 ** (lo + i / self.points_per_decade)) for i in range(count))

    def candidates(self, baseline: str) -> list[dict[str, Any]]:
        """Every candidate of ``baseline``: a dict of its controls (the others at their neutral values)."""
        if baseline not in BASELINE_CONTROLS:
            raise ValueError(f"no search space for baseline {baseline!r}; tuned baselines: {list(BASELINE_CONTROLS)}")
        axes: dict[str, tuple[Any, ...]] = {
            "lr": self.step_sizes(), "momentum": self.momentum, "beta1": self.beta1, "beta2": self.beta2,
            "trunk_ratio": self.trunk_ratios, "schedule": self.schedules,
        }  # fmt: skip
        names = BASELINE_CONTROLS[baseline]
        return [
            {"baseline": baseline, **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(axes[n] for n in names))
        ]

    def describe(self) -> str:
        lrs = self.step_sizes()
        sizes = ", ".join(f"{b} {len(self.candidates(b))}" for b in BASELINE_CONTROLS)
        return (
            f"step size: {len(lrs)} log-spaced from {lrs[0]:.3g} to {lrs[-1]:.3g} ({self.points_per_decade} per "
            "decade); "
            f"momentum μ ∈ {list(self.momentum)}; Adam β1 ∈ {list(self.beta1)}, β2 (and RMSprop α) ∈ "
            f"{list(self.beta2)}; trunk/head step ratio ∈ {list(self.trunk_ratios)}; schedule ∈ {list(self.schedules)}"
            f" (candidates: {sizes})"
        )


# ------------------------------------------------------------------------------------ batched players
class SearchPlayers:
    """Every player of B games, game b playing candidate b (any baseline, any controls), on the engine's tensors.

    One rule covers the four baselines, per game (float64, coordinate-wise, as :mod:`agents.batched`):
    m ← β1 m + c g (momentum and gradient: c = 1, β1 = μ or 0; Adam: c = 1 − β1), v ← β2 v + (1 − β2) g²;
    u = −α_t r m̂ / d with m̂ = m / (1 − β1^t) for Adam, d = √v̂ + ε for Adam and RMSprop (1 otherwise), α_t the step
    size under the game's schedule and r the trunk ratio on trunk coordinates (1 on heads).

    ``grouped`` (the default) updates each contiguous run of games of one baseline on its own, with only the state
    and the arithmetic its baseline has: the gradient step keeps no buffer (its m is g), the heavy ball no v, RMSprop
    no m, and no run computes another baseline's branch. ``grouped=False`` is the one formula above over every game
    at once (the reference, as ``torch.optim``'s single-tensor path is for its ``foreach`` one). The two agree to the
    bit (the identities x·1 = x, x / 1 = x and 0·m + g = g), but for the sign of a zero: where g is −0 the reference's
    0·m + g can be +0 (``tests/test_sealed.py``; a zero step either way). So tuning picks the same knobs either way; on
    a digits tuning batch the grouped step costs about a third of the reference's (``benchmarks/tuning_players.py``).
    """

    def __init__(self, game: Game, candidates: list[dict[str, Any]], grouped: bool = True):
        dev, f64 = game.device, torch.float64

        def col(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=f64, device=dev)[:, None]

        if not candidates:
            raise ValueError("candidates is empty: give one candidate per game (SearchSpace.candidates(baseline))")
        kinds = [c["baseline"] for c in candidates]
        unknown = sorted(set(kinds) - set(BASELINE_CONTROLS))
        if unknown:
            raise ValueError(f"no player for baseline {unknown[0]!r}; tuned baselines: {list(BASELINE_CONTROLS)}")
        self.lr = col([c["lr"] for c in candidates])
        self.b1 = col([c.get("momentum", c.get("beta1", 0.0)) if k in ("momentum", "adam") else 0.0
                       for k, c in zip(kinds, candidates, strict=True)])  # fmt: skip
        self.c1 = torch.where(col([k == "adam" for k in kinds]) > 0, 1.0 - self.b1, torch.ones_like(self.b1))
        self.b2 = col([c.get("beta2", 0.0) for c in candidates])
        self.ratio = col([c["trunk_ratio"] for c in candidates])
        self.schedule = [c["schedule"] for c in candidates]
        codes = {name: i for i, name in enumerate(SCHEDULES)}
        self._code = torch.tensor([codes[s] for s in self.schedule], device=dev)[:, None]
        #: ``(start, stop, baseline)``: the contiguous runs of games that play one baseline.
        self.runs: list[tuple[int, int, str]] = []
        for kind, group in itertools.groupby(kinds):
            start = self.runs[-1][1] if self.runs else 0
            self.runs.append((start, start + len(list(group)), kind))
        self.game, self.h, self.t, self.grouped = game, int(game.head_index.numel()), 0, grouped
        #: Per run, its float64 buffers, created at its first step: ``m0``/``m1`` (heads/trunk) for the heavy ball
        #: and Adam, ``v0``/``v1`` for Adam and RMSprop.
        self.state: list[dict[str, Tensor]] = [{} for _ in self.runs]

    def factor(self, t: int) -> Tensor:
        """``[B, 1]`` each game's schedule at step t (0-based) of the horizon."""
        horizon = self.game.horizon
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / horizon))
        warmup = min(1.0, (t + 1) / max(1.0, WARMUP_FRACTION * horizon))
        table = torch.tensor([1.0, cosine, warmup], dtype=torch.float64, device=self._code.device)
        return table[self._code]

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        bsz, game = head_grads.shape[0], self.game
        if bsz != len(self.schedule):
            raise ValueError(f"head_grads holds {bsz} games; these players play {len(self.schedule)}: one per game")
        self.t += 1
        step = -(self.lr * self.factor(self.t - 1))  # [B, 1]: −α_t
        coef = (step, step * self.ratio)  # heads' and trunk's −α_t r
        # Adam's bias corrections over every game's column at once: a power's vectorised and scalar kernels can differ
        # in the last bit, and which one an element meets depends on its place in the tensor.
        fix1, fix2 = 1.0 - self.b1**self.t, 1.0 - self.b2**self.t
        if not self.grouped:
            return self._one_formula(head_grads, jacobian, step, fix1, fix2)
        grads = (head_grads.reshape(bsz, -1), jacobian.reshape(bsz, -1))
        out = (torch.empty(bsz, self.h, dtype=game.dtype, device=game.device),
               torch.empty(bsz, game.num_tasks * game.trunk_size, dtype=game.dtype, device=game.device))  # fmt: skip
        for (lo, hi, kind), state in zip(self.runs, self.state, strict=True):
            b1, c1, b2 = self.b1[lo:hi], self.c1[lo:hi], self.b2[lo:hi]
            for part in (0, 1):
                g = grads[part][lo:hi].to(torch.float64)
                m_hat = g  # the gradient step and RMSprop: m = 0·m + 1·g
                if kind in ("momentum", "adam"):
                    m = _buffer(state, f"m{part}", g)
                    m.mul_(b1).add_(g if kind == "momentum" else c1 * g)
                    m_hat = m / fix1[lo:hi] if kind == "adam" else m
                u = coef[part][lo:hi] * m_hat
                if kind in ("adam", "rmsprop"):
                    v = _buffer(state, f"v{part}", g)
                    v.mul_(b2).add_((1.0 - b2) * g.square())
                    v_hat = v / fix2[lo:hi] if kind == "adam" else v
                    u.div_(v_hat.sqrt().add_(_EPS))
                out[part][lo:hi] = u
        return out[0], out[1].reshape(bsz, game.num_tasks, game.trunk_size)

    def _one_formula(
        self, head_grads: Tensor, jacobian: Tensor, step: Tensor, fix1: Tensor, fix2: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The reference: every game through the one formula, each baseline's branches selected per game."""
        bsz, game, state = head_grads.shape[0], self.game, self.state[0] if self.state else {}
        g = torch.cat([head_grads.reshape(bsz, -1), jacobian.reshape(bsz, -1)], 1).to(torch.float64)
        flags = [(kind == "adam", kind in ("adam", "rmsprop")) for lo, hi, kind in self.runs for _ in range(lo, hi)]
        adam, adaptive = torch.tensor(flags, device=g.device).reshape(bsz, 2, 1).unbind(1)  # each [B, 1]
        m = self.b1 * _buffer(state, "m", g) + self.c1 * g
        v = self.b2 * _buffer(state, "v", g) + (1.0 - self.b2) * g.square()
        state["m"], state["v"] = m, v
        m_hat = torch.where(adam, m / fix1, m)
        v_hat = torch.where(adam, v / fix2, v)
        denom = torch.where(adaptive, v_hat.sqrt() + _EPS, torch.ones_like(v_hat))
        trunk = self.ratio.expand(-1, g.shape[1] - self.h)
        scale = torch.cat([torch.ones_like(self.ratio).expand(-1, self.h), trunk], 1)
        u = (step * scale * m_hat / denom).to(game.dtype)
        return u[:, : self.h], u[:, self.h :].reshape(bsz, game.num_tasks, game.trunk_size)


def _buffer(state: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """``state[name]``, zeros shaped as ``like`` the first time."""
    if name not in state:
        state[name] = torch.zeros_like(like)
    return state[name]


def _game(
    suite_name: str,
    options: dict[str, Any],
    horizon: int,
    mode: str = "update",
    device: str = "cpu",
    consensus: str = "sum",
) -> Game:
    """One drawn game of ``suite_name`` whose trunk moves by the consensus rule ``consensus``."""
    from agents.learned.family import build_suite

    suite = build_suite(suite_name, options, device=device, dtype=_dtype(suite_name))
    rule = consensus_rule(consensus, num_tasks=suite.num_tasks)
    return Game(suite, rule, action_mode=mode, horizon=horizon)  # type: ignore[arg-type]


def _dtype(suite: str) -> str:
    return "float64" if suite == "quadratic" else "float32"


def _train_totals(game: Game, heads: Tensor, trunk: Tensor) -> Tensor:
    """``[B]`` L = Σ_m ℓ_m on the whole training sets, float64 (+inf where not finite)."""
    suite = game.suite
    with torch.no_grad():
        total = suite.batched_losses(heads, trunk, suite.train_batch()).sum(-1).to(torch.float64)
    return torch.where(torch.isfinite(total), total, torch.full_like(total, math.inf))


def play_candidates(game: Game, candidates: list[dict[str, Any]], seeds: list[int]) -> tuple[Tensor, Tensor]:
    """Game b plays candidate b with seed ``seeds[b]``: ``(L_0 [B], L_T [B])``, L_T = +inf for a diverged game."""
    players = SearchPlayers(game, candidates)
    with torch.no_grad():
        state, out = engine.reset(game, seeds)
        start = _train_totals(game, state.heads, state.trunk)
        alive = torch.ones(len(seeds), dtype=torch.bool, device=game.device)
        for _ in range(game.horizon):
            h_up, props = players.act(state.head_grads, state.jacobian)
            h_up = torch.where(alive[:, None], h_up, torch.zeros_like(h_up))
            props = torch.where(alive[:, None, None], props, torch.zeros_like(props))
            state, out = engine.step(game, state, (h_up, props))
            alive = alive & ~out.diverged
        final = _train_totals(game, state.heads, state.trunk)
    return start, torch.where(alive, final, torch.full_like(final, math.inf))


def play_rule(
    rule: Any,
    suite_name: str,
    options: dict[str, Any],
    horizon: int,
    seeds: list[int],
    device: str = "cpu",
    consensus: str = "sum",
) -> tuple[Tensor, Tensor]:
    """The learned ``rule`` (batched form, its parameters on ``device``) playing every task of the games ``seeds`` on
    ``device``, the trunk moving by the consensus rule ``consensus``: ``(L_0 [B], L_T [B])``."""
    from agents.learned import EngineDriver, StepRule

    mode = "step_size" if isinstance(rule, StepRule) else "update"
    game = _game(suite_name, options, horizon, mode, device, consensus)
    driver = EngineDriver(rule, game, log_step_range=(-12.0, 2.0))
    with torch.no_grad():
        state, out = engine.reset(game, seeds)
        start = _train_totals(game, state.heads, state.trunk)
        memory = driver.start(out)
        alive = torch.ones(len(seeds), dtype=torch.bool, device=game.device)
        for _ in range(horizon):
            actions, memory = driver.act(state, out, memory)
            state, out = engine.step(game, state, actions)
            alive &= ~out.diverged
        final = _train_totals(game, state.heads, state.trunk)
    return start, torch.where(alive, final, torch.full_like(final, math.inf))
