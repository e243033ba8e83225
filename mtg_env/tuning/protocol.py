"""The declared tuning budget (:class:`TuningProtocol`: step sizes, tuning seeds, held-out seeds) and the
game a policy is tuned on (:class:`Workload`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mtg_env.envs.config import EnvConfig
from mtg_env.envs.parallel import MultiTaskGameEnv
from mtg_env.rng import check_seed


# ----------------------------------------------------------------------------------- the protocol
@dataclass(frozen=True)
class TuningProtocol:
    """The declared tuning budget: which step sizes, on which seeds; and the held-out evaluation seeds.

    Raises:
        ValueError: for a bad range, fewer than 3 grid points per decade, a search without trials, repeated
            seeds, or tuning seeds that overlap the evaluation seeds (tuning on the test seeds).
    """

    low: float = 1e-3
    """Smallest step size searched."""
    high: float = 1.0
    """Largest step size searched."""
    points_per_decade: int = 3
    """Grid density (``search="grid"``): the grid is ``low · 10^(i / points_per_decade)`` up to ``high``."""
    search: Literal["grid", "quasirandom"] = "grid"
    """``grid``: a log grid; ``quasirandom``: ``trials`` points of a van der Corput sequence, log-uniform."""
    trials: int = 0
    """Number of step sizes of the quasi-random search (ignored by the grid)."""
    tuning_seeds: tuple[int, ...] = (100_000, 100_001)
    """Seeds the step size is chosen on."""
    eval_seeds: tuple[int, ...] = tuple(range(10))
    """Held-out seeds the chosen step size is scored on (disjoint from ``tuning_seeds``)."""

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"TuningProtocol.{name} must be a finite number > 0, got {value!r}")
        if not self.low < self.high:
            raise ValueError(f"TuningProtocol needs low < high, got low={self.low}, high={self.high}")
        if self.search not in ("grid", "quasirandom"):
            raise ValueError(f"TuningProtocol.search must be 'grid' or 'quasirandom', got {self.search!r}")
        for name, least in (("points_per_decade", 3), ("trials", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"TuningProtocol.{name} must be an int >= {least}, got {value!r}")
        if self.search == "quasirandom" and self.trials < 1:
            raise ValueError("TuningProtocol(search='quasirandom') needs trials >= 1 (the number of step sizes)")
        for name in ("tuning_seeds", "eval_seeds"):
            seeds = getattr(self, name)
            if not isinstance(seeds, tuple) or not seeds:
                raise ValueError(f"TuningProtocol.{name} must be a non-empty tuple of ints, got {seeds!r}")
            for i, s in enumerate(seeds):
                check_seed(s, f"TuningProtocol.{name}[{i}]")
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"TuningProtocol.{name} repeats a seed: {seeds}")
        overlap = sorted(set(self.tuning_seeds) & set(self.eval_seeds))
        if overlap:
            raise ValueError(
                f"tuning seeds and evaluation seeds must be disjoint (tuning on the held-out seeds leaks them), "
                f"both have {overlap}; pick tuning_seeds outside eval_seeds"
            )

    def step_sizes(self) -> tuple[float, ...]:
        """The step sizes every policy is tried at, in increasing order."""
        lo, hi = math.log10(self.low), math.log10(self.high)
        if self.search == "grid":
            return tuple(float(10 ** (lo + i / self.points_per_decade)) for i in range(self.num_step_sizes))
        return tuple(sorted(float(10 ** (lo + (hi - lo) * _van_der_corput(i + 1))) for i in range(self.trials)))

    @property
    def num_step_sizes(self) -> int:
        """How many step sizes :meth:`step_sizes` has, counted without listing them (a size check of a huge
        protocol must not build it)."""
        if self.search == "grid":
            return math.floor((math.log10(self.high) - math.log10(self.low)) * self.points_per_decade + 1e-9) + 1
        return self.trials

    @property
    def budget(self) -> int:
        """Trials per policy and workload: step sizes × tuning seeds."""
        return self.num_step_sizes * len(self.tuning_seeds)

    def to_dict(self) -> dict[str, Any]:
        """The protocol as plain data, with its step sizes and budget (what a report prints)."""
        return {**asdict(self), "step_sizes": list(self.step_sizes()), "budget": self.budget}

    def describe(self) -> str:
        """One paragraph for a report: the search, the budget, the seeds."""
        lrs = self.step_sizes()
        how = (
            f"a log grid of {len(lrs)} step sizes from {lrs[0]:.3g} to {lrs[-1]:.3g} ({self.points_per_decade} per "
            "decade)"
            if self.search == "grid"
            else f"a quasi-random (van der Corput, log-uniform) search of {len(lrs)} step sizes in "
            f"[{self.low:.3g}, {self.high:.3g}]"
        )
        return (
            f"Each policy is tuned on {how}, each played on {len(self.tuning_seeds)} tuning seeds "
            f"({self.budget} trials per policy and workload); the step size with the lowest mean final training "
            f"loss is kept (a diverged trial counts as +inf) and scored on {len(self.eval_seeds)} held-out seeds "
            "disjoint from the tuning seeds."
        )


def _van_der_corput(i: int, base: int = 2) -> float:
    x, denom = 0.0, 1.0
    while i:
        denom *= base
        i, digit = divmod(i, base)
        x += digit / denom
    return x


# -------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    """A game to tune and score on: a suite (with options), a consensus rule and a horizon."""

    suite: str
    """A suite name (:data:`mtg_env.SUITES`)."""
    consensus: str = "sum"
    """A consensus rule name (:data:`mtg_env.CONSENSUS_RULES`)."""
    horizon: int = 100
    """Steps per game."""
    suite_options: tuple[tuple[str, Any], ...] = ()
    """Suite options as ``(name, value)`` pairs (hashable), e.g. ``(("hidden", (16, 8)),)``."""
    dtype: str = "float32"
    """The game's dtype."""
    device: str = "cpu"
    """The torch device the games run on."""

    def env_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`mtg_env.parallel_env` for this workload (update mode, no bound on an update:
        the players play their rule as written)."""
        return {
            "suite": self.suite,
            "consensus": self.consensus,
            "max_cycles": self.horizon,
            "action_mode": "update",
            "max_update": None,
            "dtype": self.dtype,
            "device": self.device,
            **dict(self.suite_options),
        }

    def config(self) -> EnvConfig:
        """The env's options for this workload (checked)."""
        return EnvConfig.from_kwargs(**self.env_kwargs())

    def make_env(self) -> MultiTaskGameEnv:
        return MultiTaskGameEnv.from_config(self.config())

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.consensus}/T{self.horizon}"
