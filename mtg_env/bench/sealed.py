"""The sealed protocol for learned update rules: one bench config, two tracks, a sealed test stream, true L*.

    mtg-env bench examples/bench_learned.toml              # the learned tables
    mtg-env bench examples/bench_learned.toml --quick      # quadratic at 1× (under two minutes)
    mtg-env bench examples/bench_learned.toml --test-key new   # a fresh sealed test set

Per game family (``quadratic``, ``regression``, ``digits``; :mod:`agents.learned.family`) and horizon (multiples of
the meta-training horizon):

* **External tuning** (AlgoPerf): every baseline is tuned for the family over the declared :class:`SearchSpace`,
  which holds every control a learned rule has: the step size (a log grid, ≥ 3 per decade), heavy-ball μ, Adam's β1
  and β2 (RMSprop's α), the trunk/head step ratio and a schedule (constant, cosine, linear warm-up). The search is
  successive halving on the *tuning* stream's draws: rung 0 plays every candidate on each tuning draw with one seed;
  the best 1/η of each baseline's candidates play every tuning draw × every tuning seed in rung 1, and the lowest mean
  normalised gap wins. Its cost in game-steps is counted and held to one declared budget, the same for every baseline.
* **Self-tuning**: the learned rule as shipped, one set of weights per family, no knob.

Both are scored on the sealed *test* stream (hashed from a 128-bit key: no training, validation, trunk-search or
tuning run can draw those games; :func:`agents.learned.family.draw_games`). A game's score is its normalised gap
(L_T − L*) / (L_0 − L*) on the whole training objective, L* the suite's true minimum (:mod:`mtg_env.bench.floors`),
+inf for a diverged game. Each cell reports the mean and median gap, the entrant's ratio to the best externally tuned
baseline (by mean, and by median) with a paired bootstrap 95 % CI over games, the winning baseline with its knobs, and
every divergence.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtg_env import engine
from mtg_env._args import int_arg, real_arg
from mtg_env.bench.floors import Floor, true_floor
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
    """

    def __init__(self, game: Game, candidates: list[dict[str, Any]]):
        dev, f64 = game.device, torch.float64

        def col(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=f64, device=dev)[:, None]

        kinds = [c["baseline"] for c in candidates]
        self.lr = col([c["lr"] for c in candidates])
        self.b1 = col([c.get("momentum", c.get("beta1", 0.0)) if k in ("momentum", "adam") else 0.0
                       for k, c in zip(kinds, candidates, strict=True)])  # fmt: skip
        self.c1 = torch.where(col([k == "adam" for k in kinds]) > 0, 1.0 - self.b1, torch.ones_like(self.b1))
        self.b2 = col([c.get("beta2", 0.0) for c in candidates])
        self.adaptive = col([k in ("adam", "rmsprop") for k in kinds]) > 0
        self.corrected = col([k == "adam" for k in kinds]) > 0
        h, n = int(game.head_index.numel()), game.trunk_size
        ratio = col([c["trunk_ratio"] for c in candidates])
        self.scale = torch.cat([torch.ones_like(ratio).expand(-1, h), ratio.expand(-1, game.num_tasks * n)], 1)
        self.schedule = [c["schedule"] for c in candidates]
        codes = {name: i for i, name in enumerate(SCHEDULES)}
        self._code = torch.tensor([codes[s] for s in self.schedule], device=dev)[:, None]
        self.game, self.h, self.t = game, h, 0
        self.m: Tensor | None = None
        self.v: Tensor | None = None

    def factor(self, t: int) -> Tensor:
        """``[B, 1]`` each game's schedule at step t (0-based) of the horizon."""
        horizon = self.game.horizon
        cosine = 0.5 * (1.0 + math.cos(math.pi * t / horizon))
        warmup = min(1.0, (t + 1) / max(1.0, WARMUP_FRACTION * horizon))
        table = torch.tensor([1.0, cosine, warmup], dtype=torch.float64, device=self._code.device)
        return table[self._code]

    def act(self, head_grads: Tensor, jacobian: Tensor) -> tuple[Tensor, Tensor]:
        bsz = head_grads.shape[0]
        g = torch.cat([head_grads.reshape(bsz, -1), jacobian.reshape(bsz, -1)], 1).to(torch.float64)
        if self.m is None or self.v is None:
            self.m, self.v = torch.zeros_like(g), torch.zeros_like(g)
        self.t += 1
        self.m = self.b1 * self.m + self.c1 * g
        self.v = self.b2 * self.v + (1.0 - self.b2) * g.square()
        m_hat = torch.where(self.corrected, self.m / (1.0 - self.b1**self.t), self.m)
        v_hat = torch.where(self.corrected, self.v / (1.0 - self.b2**self.t), self.v)
        denom = torch.where(self.adaptive, v_hat.sqrt() + _EPS, torch.ones_like(v_hat))
        step = -(self.lr * self.factor(self.t - 1)) * self.scale * m_hat / denom
        step = step.to(self.game.dtype)
        return step[:, : self.h], step[:, self.h :].reshape(bsz, self.game.num_tasks, self.game.trunk_size)


def _game(suite_name: str, options: dict[str, Any], horizon: int, mode: str = "update") -> Game:
    from agents.learned.family import build_suite

    suite = build_suite(suite_name, options, dtype=_dtype(suite_name))
    return Game(suite, consensus_rule("sum", num_tasks=suite.num_tasks), action_mode=mode, horizon=horizon)  # type: ignore[arg-type]


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
    rule: Any, suite_name: str, options: dict[str, Any], horizon: int, seeds: list[int]
) -> tuple[Tensor, Tensor]:
    """The learned ``rule`` (batched form) playing every task of the games ``seeds``: ``(L_0 [B], L_T [B])``."""
    from agents.learned import EngineDriver, StepRule

    mode = "step_size" if isinstance(rule, StepRule) else "update"
    game = _game(suite_name, options, horizon, mode)
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


# ----------------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class SealedConfig:
    """A sealed-protocol benchmark (its file form: ``examples/bench_learned.toml``)."""

    name: str
    families: tuple[str, ...]
    """Game families (:data:`agents.learned.family.FAMILIES`)."""
    entrants: tuple[tuple[str, str], ...]
    """Self-tuning track: (learned agent, family) pairs, each played with its shipped weights."""
    baselines: tuple[str, ...] = tuple(BASELINE_CONTROLS)
    """External-tuning track."""
    multiples: tuple[int, ...] = (1, 2, 5)
    """Horizons, as multiples of ``train_horizon``."""
    train_horizon: int = 100
    """The meta-training horizon."""
    train_horizons: tuple[tuple[str, int], ...] = ()
    """Per family, a meta-training horizon other than ``train_horizon`` (digits' rule trained on 50 steps)."""
    search: SearchSpace = field(default_factory=SearchSpace)
    tuning_draws: int = 4
    """Tuning-stream game draws per family."""
    tuning_seeds: int = 2
    """Seeds per tuning draw in rung 1 (rung 0 plays one)."""
    eta: int = 4
    """Successive halving keeps the best 1/η of each baseline's candidates after rung 0."""
    budget_game_steps: int = 20_000_000
    """The tuning budget of every baseline in one cell at 1× (× the multiple at k×), in game-steps."""
    test_draws: int = 8
    """Sealed test draws per family."""
    test_seeds: int = 3
    """Seeds per test draw (test_draws × test_seeds games per cell)."""
    test_key: str | None = None
    """The sealed stream's 128-bit key (32 hex digits; ``None``: :data:`agents.learned.family.DEFAULT_TEST_KEY`)."""
    bootstrap_reps: int = 2000

    def __post_init__(self) -> None:
        from agents.learned.family import FAMILIES, check_key

        for f in self.families:
            if f not in FAMILIES:
                raise ValueError(f"families: no game family {f!r}; available: {list(FAMILIES)}")
        for b in self.baselines:
            if b not in BASELINE_CONTROLS:
                raise ValueError(f"baselines: {b!r} is not tunable here; available: {list(BASELINE_CONTROLS)}")
        for name in ("train_horizon", "tuning_draws", "tuning_seeds", "eta", "test_draws", "test_seeds",
                     "bootstrap_reps", "budget_game_steps"):  # fmt: skip
            int_arg(name, getattr(self, name), low=1)
        if self.test_key is not None:
            check_key(self.test_key)

    def horizon(self, family: str, multiple: int) -> int:
        """The horizon of ``family``'s cell at ``multiple`` × its meta-training horizon."""
        return dict(self.train_horizons).get(family, self.train_horizon) * multiple

    def tuning_cost(self, baseline: str, multiple: int, family: str | None = None) -> int:
        """Game-steps successive halving spends on ``baseline`` at one family (default: the longest) and horizon."""
        count = len(self.search.candidates(baseline))
        families = self.families if family is None else (family,)
        horizon = max(self.horizon(f, multiple) for f in families)
        return (count + math.ceil(count / self.eta) * self.tuning_seeds) * self.tuning_draws * horizon

    def check(self) -> None:
        """Refuse a config whose search overruns its declared budget (naming the baseline and the sums)."""
        for b in self.baselines:
            for k in self.multiples:
                cost, cap = self.tuning_cost(b, k), self.budget_game_steps * k
                if cost > cap:
                    raise ValueError(
                        f"budget_game_steps: tuning {b} at {k}× costs {cost:,} game-steps, over the budget "
                        f"{cap:,} (= {self.budget_game_steps:,} × {k}); shrink [search] or [tuning], or raise it"
                    )

    def quick(self) -> SealedConfig:
        """``--quick``: the first family at 1× half the horizon, 2 tuning draws, 1 tuning seed, 8 test games."""
        return replace(self, name=f"{self.name}_quick", families=self.families[:1], multiples=(1,),
                       train_horizon=max(1, self.train_horizon // 2), tuning_draws=2, tuning_seeds=1, test_draws=4,
                       test_seeds=2, bootstrap_reps=min(self.bootstrap_reps, 1000))  # fmt: skip


_TOP = {"name", "protocol", "families", "entrants", "baselines", "multiples", "train_horizon", "train_horizons",
        "search", "tuning", "test", "bootstrap_reps"}  # fmt: skip


def sealed_config_from_dict(data: dict[str, Any]) -> SealedConfig:
    """A :class:`SealedConfig` from a parsed file with ``protocol = "sealed"``."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ValueError(f"unknown sealed-protocol key(s) {unknown}; known: {sorted(_TOP)}")
    search = dict(data.get("search", {}))
    for key in ("momentum", "beta1", "beta2", "trunk_ratios", "schedules"):
        if key in search:
            search[key] = tuple(search[key])
    tuning, test = dict(data.get("tuning", {})), dict(data.get("test", {}))
    unknown = sorted(set(tuning) - {"draws", "seeds", "eta", "budget_game_steps"}) + sorted(
        set(test) - {"draws", "seeds", "key"}
    )
    if unknown:
        raise ValueError(f"unknown [tuning]/[test] key(s) {unknown}")
    entrants = []
    for i, e in enumerate(data.get("entrants", [])):
        if not isinstance(e, dict) or not isinstance(e.get("agent"), str):
            raise TypeError(f"entrants[{i}] must be a table with agent = 'learned_mlp' (and families = [...])")
        for f in e.get("families", data.get("families", [])):
            entrants.append((e["agent"], f))
    try:
        space = SearchSpace(**search)
    except TypeError as err:
        raise TypeError(f"[search] {err}") from None
    return SealedConfig(
        name=data.get("name", "sealed"),
        families=tuple(data.get("families", ())),
        entrants=tuple(entrants),
        baselines=tuple(data.get("baselines", BASELINE_CONTROLS)),
        multiples=tuple(data.get("multiples", (1, 2, 5))),
        train_horizon=data.get("train_horizon", 100),
        train_horizons=tuple(sorted(dict(data.get("train_horizons", {})).items())),
        search=space,
        tuning_draws=tuning.get("draws", 4),
        tuning_seeds=tuning.get("seeds", 2),
        eta=tuning.get("eta", 4),
        budget_game_steps=tuning.get("budget_game_steps", 20_000_000),
        test_draws=test.get("draws", 8),
        test_seeds=test.get("seeds", 3),
        test_key=test.get("key"),
        bootstrap_reps=data.get("bootstrap_reps", 2000),
    )


def is_sealed(data: Any) -> bool:
    """Whether a parsed bench file is a sealed-protocol config (``protocol = "sealed"``)."""
    return isinstance(data, dict) and data.get("protocol") == "sealed"


# ------------------------------------------------------------------------------------------ the run
class _Floors:
    """L* per drawn game, computed once and kept in ``DIR/floors.json``."""

    def __init__(self, path: Path | None):
        self.path = path
        self.table: dict[str, Any] = {}
        if path is not None and path.exists():
            self.table = json.loads(path.read_text())

    def get(self, suite: str, options: dict[str, Any]) -> Floor:
        key = json.dumps([suite, options], sort_keys=True, default=str)
        if key not in self.table:
            game = _game(suite, options, 1)
            self.table[key] = asdict(true_floor(game.suite))
            if self.path is not None:
                self.path.write_text(json.dumps(self.table, indent=0, sort_keys=True))
        return Floor(**self.table[key])


#: A gap below this fraction of max(1, |L*|, |L_T|) is round-off: it counts as reached, so two rules at the floor tie
#: (an exact floor lets gaps fall to 1e-16, where ratios of round-off would decide a cell).
RESOLUTION = {"float64": 1e-12, "float32": 1e-6}


def _gaps(start: Tensor, final: Tensor, floor: float, dtype: str = "float64") -> np.ndarray:
    """``[B]`` normalised gaps (L_T − L*) / (L_0 − L*), at least the dtype's resolution; +inf where diverged."""
    s, f = start.cpu().numpy(), final.cpu().numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        resolution = RESOLUTION[dtype] * np.maximum(np.maximum(1.0, abs(floor)), np.abs(f))
        gap = np.maximum(f - floor, resolution) / np.maximum(s - floor, 1e-300)
        return np.where(np.isfinite(f), gap, np.inf)


#: Games whose gap is at most this are counted "at the floor" in the report: there, ratios of gaps compare round-off
#: and near-zero residues (1e-15 against 1e-11 of the start), so the count says more than the median ratio.
AT_FLOOR = 1e-9


def _dtype(suite: str) -> str:
    return "float64" if suite == "quadratic" else "float32"


def tune_baselines(config: SealedConfig, suite: str, horizon: int, floors: _Floors) -> dict[str, dict[str, Any]]:
    """Successive halving for every baseline on the tuning stream: per baseline its chosen candidate, its rung-1
    mean gap, the game-steps spent and whether the choice lies on an edge of the step-size grid."""
    from agents.learned.family import draw_games

    draws = draw_games(suite, "tuning", config.tuning_draws, config.tuning_seeds + 1)
    pools = {b: config.search.candidates(b) for b in config.baselines}
    everyone = [c for b in config.baselines for c in pools[b]]
    # Rung 0: every candidate of every baseline on each tuning draw, its first seed (one batch per draw).
    rung0 = np.zeros((len(draws), len(everyone)))
    records = []
    for d, (options, seeds) in enumerate(draws):
        game = _game(suite, options, horizon)
        start, final = play_candidates(game, everyone, [seeds[0]] * len(everyone))
        records.append((options, start, final))
        rung0[d] = _gaps(start, final, floors.get(suite, options).value, _dtype(suite))
    mean0 = rung0.mean(0)
    kept: list[dict[str, Any]] = []
    offset = 0
    for b in config.baselines:
        count = len(pools[b])
        order = np.argsort(mean0[offset : offset + count], kind="stable")
        kept += [pools[b][i] for i in order[: math.ceil(count / config.eta)]]
        offset += count
    # Rung 1: the survivors on every tuning draw × the other tuning seeds.
    rung1 = np.zeros((len(draws), config.tuning_seeds, len(kept)))
    for d, (options, seeds) in enumerate(draws):
        game = _game(suite, options, horizon)
        batch = [c for _ in seeds[1:] for c in kept]
        start, final = play_candidates(game, batch, [s for s in seeds[1:] for _ in kept])
        rung1[d] = _gaps(start, final, floors.get(suite, options).value, _dtype(suite)).reshape(
            config.tuning_seeds, len(kept)
        )
    mean1 = rung1.reshape(-1, len(kept)).mean(0)
    lrs = config.search.step_sizes()
    chosen: dict[str, dict[str, Any]] = {}
    for b in config.baselines:
        idx = [i for i, c in enumerate(kept) if c["baseline"] == b]
        best = min(idx, key=lambda i: (mean1[i], i))
        cand = kept[best]
        chosen[b] = {"knobs": cand, "tuning_gap": float(mean1[best]),
                     "game_steps": config.tuning_cost(b, 1, suite) * horizon // config.horizon(suite, 1),
                     "at_edge": cand["lr"] in (lrs[0], lrs[-1])}  # fmt: skip
    return chosen


def paired_ratio_ci(
    a: np.ndarray, b: np.ndarray, statistic: Any, reps: int, seed: int = 0
) -> tuple[float, float, float]:
    """``(point, low, high)``: statistic(a) / statistic(b) and its paired bootstrap 95 % CI (games resampled
    together); +inf where a's statistic is not finite, order statistics when some replicates are infinite."""

    def ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        sx, sy = statistic(x), statistic(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(np.isfinite(sx), sx / np.where(sy > 0, sy, np.nan), np.inf)
        return np.where(np.isnan(r), np.inf, r)

    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(a), size=(reps, len(a)))
    boots = ratio(a[index], b[index])
    finite = np.isfinite(boots).all()
    lo, hi = np.percentile(boots, [2.5, 97.5], method="linear" if finite else "nearest")
    return float(ratio(a[None], b[None])[0]), float(lo), float(hi)


def _mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).mean(axis=-1)


def _median(x: np.ndarray) -> np.ndarray:
    return np.median(np.asarray(x, dtype=np.float64), axis=-1)


def run_cell(
    config: SealedConfig,
    suite: str,
    multiple: int,
    floors: _Floors,
    rules: dict[str, Any],
    key: str,
    stream: str = "test",
) -> dict[str, Any]:
    """One family at one horizon: tune the baselines, play everyone on the sealed draws (``stream="validation"``:
    the development stream's instead; ``key`` is then unused), compare."""
    from agents.learned.family import draw_games

    horizon = config.horizon(suite, multiple)
    began = time.perf_counter()
    chosen = tune_baselines(config, suite, horizon, floors)
    tuned_s = time.perf_counter() - began
    draws = draw_games(suite, stream, config.test_draws, config.test_seeds, key=key if stream == "test" else None)
    floor_kinds = []
    gaps: dict[str, list[float]] = {}
    for options, seeds in draws:
        game = _game(suite, options, horizon)
        batch = [chosen[b]["knobs"] for b in config.baselines for _ in seeds]
        start, final = play_candidates(game, batch, list(seeds) * len(config.baselines))
        per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, b in enumerate(config.baselines):
            sl = slice(i * len(seeds), (i + 1) * len(seeds))
            per[b] = (start[sl].cpu().numpy(), final[sl].cpu().numpy())
        for agent, rule in rules.items():
            rule_start, rule_final = play_rule(rule, suite, options, horizon, list(seeds))
            per[agent] = (rule_start.cpu().numpy(), rule_final.cpu().numpy())
        floor = floors.get(suite, options)
        for _, reached in per.values():  # a non-convex suite's best run is lowered to any loss a game reached
            floor = floor.lowered(float(np.min(reached)))
        floor_kinds.append(floor.kind)
        for name, (s0, s1) in per.items():
            gaps.setdefault(name, []).extend(
                _gaps(torch.as_tensor(s0), torch.as_tensor(s1), floor.value, _dtype(suite)).tolist()
            )
    arrays = {k: np.asarray(v) for k, v in gaps.items()}
    base = list(config.baselines)
    best_mean = min(base, key=lambda k: float(_mean(arrays[k])))
    best_median = min(base, key=lambda k: float(_median(arrays[k])))
    entrants = {}
    for agent in rules:
        entrants[agent] = {
            "ratio_mean": paired_ratio_ci(arrays[agent], arrays[best_mean], _mean, config.bootstrap_reps),
            "ratio_median": paired_ratio_ci(arrays[agent], arrays[best_median], _median, config.bootstrap_reps),
        }
    return {
        "family": suite, "multiple": multiple, "horizon": horizon, "games": len(arrays[base[0]]),
        "mean": {k: float(_mean(v)) for k, v in arrays.items()},
        "median": {k: float(_median(v)) for k, v in arrays.items()},
        "diverged": {k: int(np.sum(~np.isfinite(v))) for k, v in arrays.items()},
        "at_floor": {k: int(np.sum(v <= AT_FLOOR)) for k, v in arrays.items()},
        "best_mean": best_mean, "best_median": best_median, "tuned": chosen, "entrants": entrants,
        "floor_kinds": sorted(set(floor_kinds)), "gaps": {k: v.tolist() for k, v in arrays.items()},
        "seconds": time.perf_counter() - began, "tuning_seconds": tuned_s,
    }  # fmt: skip


def run_sealed(
    config: SealedConfig,
    out: str | Path,
    test_key: str | None = None,
    progress: bool = True,
    stream: str = "test",
) -> dict[str, Any]:
    """Run every cell of ``config`` into ``out`` (``report.md``, ``report.json``, ``floors.json``); returns the
    report. ``test_key`` overrides the config's sealed key (``"new"``: a fresh random one, printed);
    ``stream="validation"`` scores on the development stream instead of the sealed one."""
    from agents.learned import learned_agent
    from agents.learned.family import DEFAULT_TEST_KEY, check_key, new_test_key

    config.check()
    key = test_key if test_key is not None else (config.test_key or DEFAULT_TEST_KEY)
    key = new_test_key() if key == "new" else check_key(key)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    floors = _Floors(out / "floors.json")
    torch.set_num_threads(1)
    cells = []
    for suite in config.families:
        rules = {agent: learned_agent(agent, suite=suite).rule for agent, f in config.entrants if f == suite}
        for multiple in config.multiples:
            cell = run_cell(config, suite, multiple, floors, rules, key, stream)
            cells.append(cell)
            if progress:
                print(cell_rows(cell, header=not cells[:-1]), flush=True)
    report = {"name": config.name, "test_key": key, "stream": stream, "search": config.search.describe(),
              "config": _plain(asdict(config)), "cells": cells}  # fmt: skip
    (out / "report.json").write_text(json.dumps(_plain(report), indent=1))
    (out / "report.md").write_text(report_markdown(config, report))
    return report


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _knobs(knobs: dict[str, Any]) -> str:
    parts = [f"lr {knobs['lr']:.3g}"]
    for k, label in (("momentum", "μ"), ("beta1", "β1"), ("beta2", "β2"), ("trunk_ratio", "ratio")):
        if k in knobs:
            parts.append(f"{label} {knobs[k]:g}")
    parts.append(knobs["schedule"])
    return ", ".join(parts)


HEADER = (
    "| family | horizon | entrant | mean gap vs best tuned (mean) | ratio [95% CI] | median gap vs best tuned "
    "(median) | ratio [95% CI] | diverged (entrant / baselines) | at the floor (entrant / best by median) | L* |"
    "\n|---|---|---|---|---|---|---|---|---|---|"
)


def _num(x: float) -> str:
    """A ratio in the table: two decimals, or two significant digits far from 1."""
    return f"{x:.2f}" if x == 0 or 0.01 <= abs(x) < 1000 else f"{x:.1e}"


def cell_rows(cell: dict[str, Any], header: bool = False) -> str:
    """The cell's rows of the report's main table (one per entrant)."""
    lines = [HEADER] if header else []
    bm, bd = cell["best_mean"], cell["best_median"]
    base_div = sum(v for k, v in cell["diverged"].items() if k in cell["tuned"])
    for agent, e in cell["entrants"].items():
        rm, rd = e["ratio_mean"], e["ratio_median"]
        lines.append(
            f"| {cell['family']} | {cell['multiple']}× ({cell['horizon']}) | {agent} | "
            f"{cell['mean'][agent]:.3g} vs {bm} {cell['mean'][bm]:.3g} | **{_num(rm[0])}** [{_num(rm[1])}, "
            f"{_num(rm[2])}] | "
            f"{cell['median'][agent]:.3g} vs {bd} {cell['median'][bd]:.3g} | **{_num(rd[0])}** [{_num(rd[1])}, "
            f"{_num(rd[2])}] | {cell['diverged'][agent]} / {base_div} | {cell['at_floor'][agent]} / "
            f"{cell['at_floor'][bd]} | {', '.join(cell['floor_kinds'])} |"
        )
    return "\n".join(lines)


def report_markdown(config: SealedConfig, report: dict[str, Any]) -> str:
    """The report: the protocol (search space, budget, streams), the main table, the tuned baselines."""
    lines = [
        f"# {config.name}: learned rules under the sealed protocol",
        "",
        f"Sealed test key `{report['test_key']}`: {config.test_draws} draws × {config.test_seeds} seeds per cell "
        "from the hashed test stream (agents.learned.family.draw_games), disjoint from every training, validation, "
        "trunk-search and tuning stream."
        if report["stream"] == "test"
        else f"DEVELOPMENT RUN on the validation stream ({config.test_draws} draws × {config.test_seeds} seeds per "
        "cell): not a sealed result.",
        "",
        f"External tuning (per family and horizon, successive halving on {config.tuning_draws} tuning-stream draws: "
        f"rung 0 every candidate × 1 seed, rung 1 the best 1/{config.eta} × {config.tuning_seeds} seeds): "
        f"{report['search']}. Budget: {config.budget_game_steps:,} game-steps per baseline at 1× (× the multiple); "
        "spent: " + ", ".join(f"{b} {config.tuning_cost(b, 1):,}" for b in config.baselines) + " at 1×.",
        "",
        "Self-tuning: the learned rules as shipped. Score: the normalised gap (L_T − L*) / (L_0 − L*) on the whole "
        "training objective, +inf when diverged; ratios < 1 favour the entrant; paired bootstrap 95 % CI over games "
        f"({config.bootstrap_reps} resamples).",
        "",
        HEADER,
    ]
    lines += [cell_rows(c) for c in report["cells"]]
    lines += ["", "## The tuned baselines", "",
              "| family | horizon | baseline | knobs | mean gap | median gap | diverged | tuning gap | at grid edge |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in report["cells"]:
        for b, t in c["tuned"].items():
            lines.append(
                f"| {c['family']} | {c['multiple']}× | {b} | {_knobs(t['knobs'])} | {c['mean'][b]:.3g} | "
                f"{c['median'][b]:.3g} | {c['diverged'][b]} | {t['tuning_gap']:.3g} | {t['at_edge']} |"
            )
    return "\n".join(lines) + "\n"
