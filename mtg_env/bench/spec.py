"""What a benchmark is: policies × suites × consensus rules × horizons × seeds, and the tuning protocol.

A benchmark is a small TOML (or YAML) file, so a published result is re-run by one command::

    name = "mine"
    rules = ["sum", "mean"]
    horizons = [100]
    [[policies]]                      # a baseline by name (agents.AGENTS), with its other arguments
    name = "adam"
    baseline = "adam"
    [[policies]]                      # any policy by import path: a callable lr -> Policy (kwargs passed)
    name = "mine"
    factory = "my_package.players:make"
    kwargs = { width = 32 }
    [[suites]]
    name = "regression"
    options = { trunk = "mlp", hidden = 8 }
    [tuning]
    low = 1e-3
    high = 1.0
    points_per_decade = 3
    tuning_seeds = [100000, 100001]
    eval_seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    [mixed]
    reference = "gradient"
    deviators = ["selfish", "adam"]
    selfish_scale = 4.0
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtg_env.tuning import Baseline, PolicyFactory, Selfish, TuningProtocol, Workload

#: The label of the built-in selfish deviator in ``[mixed] deviators``.
SELFISH = "selfish"


def _freeze(value: Any) -> Any:
    """Lists as tuples and dicts as sorted (key, value) tuples: hashable, canonical."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class PolicySpec:
    """A policy entered in the benchmark, as plain data (it crosses process and Ray boundaries)."""

    name: str
    """Its label on the leaderboard."""
    baseline: str | None = None
    """A baseline by name (:data:`agents.AGENTS`)."""
    factory: str | None = None
    """Or an import path ``package.module:callable``; the callable is called as ``f(lr, **kwargs)`` and returns a
    fresh :class:`agents.Policy` (a learned agent loads its checkpoint there)."""
    kwargs: tuple[tuple[str, Any], ...] = ()
    """The player's other arguments (frozen ``(name, value)`` pairs)."""
    is_baseline: bool = True
    """Whether it sets targets (steps-to-target) and the normalisation of scores (the tuned baselines do)."""
    selfish_scale: float | None = None
    """Wrap the policy as the selfish deviator with this trunk scale (built for ``[mixed]``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a policy needs a non-empty name, got {self.name!r}")
        if (self.baseline is None) == (self.factory is None):
            raise ValueError(f"policy {self.name!r} needs exactly one of 'baseline' (a name) or 'factory' (a path)")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"policy {self.name!r}: factory must be 'package.module:callable', got {self.factory!r}")

    def build(self) -> PolicyFactory:
        """The ``lr -> Policy`` factory (baselines with their batched form)."""
        kwargs = {k: _thaw(v) for k, v in self.kwargs}
        inner: PolicyFactory
        if self.baseline is not None:
            inner = Baseline(self.baseline, **kwargs)
        else:
            assert self.factory is not None
            module, _, attr = self.factory.partition(":")
            try:
                target = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise ValueError(f"policy {self.name!r}: cannot import {self.factory!r} ({err})") from None
            inner = _ImportedFactory(self.factory, target, kwargs)
        return inner if self.selfish_scale is None else Selfish(inner, self.selfish_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value):
            return {k: _thaw(v) for k, v in value}
        return tuple(_thaw(v) for v in value)
    return value


class _ImportedFactory:
    def __init__(self, path: str, target: Any, kwargs: dict[str, Any]):
        self.path, self.target, self.kwargs = path, target, kwargs

    def __call__(self, lr: float) -> Any:
        return self.target(lr, **self.kwargs)

    def __repr__(self) -> str:
        return f"{self.path}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


@dataclass(frozen=True)
class SuiteSpec:
    """A suite with its options."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class MixedSpec:
    """The mixed populations: each deviator plays task m while the others play the reference, for every m."""

    reference: str
    """A policy name of the benchmark."""
    deviators: tuple[str, ...] = (SELFISH,)
    """Policy names, and/or ``"selfish"`` (the reference with its trunk proposal scaled by ``selfish_scale``)."""
    selfish_scale: float = 4.0
    rules: tuple[str, ...] = ()
    """The rules to play them under (default: all the benchmark's)."""


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark (see the module docstring for its file form)."""

    name: str
    policies: tuple[PolicySpec, ...]
    suites: tuple[SuiteSpec, ...]
    rules: tuple[str, ...]
    horizons: tuple[int, ...]
    protocol: TuningProtocol
    mixed: MixedSpec | None = None
    dtype: str = "float32"
    device: str = "cpu"
    """The torch device every game runs on (e.g. ``cuda``)."""
    nash_gap: Literal["exact", "all", "none"] = "exact"
    """Head Nash gaps at the end of held-out games: on suites with an exact best response (``exact``), on all
    (digits' is an inner L-BFGS solve, seconds per game), or none."""
    reference: str | None = None
    """The policy the leaderboard's probability of improvement compares against (default: the first)."""
    bootstrap_reps: int = 2000
    smoothing: int = 10
    """Steps-to-target reads the batch-loss curve smoothed by a trailing mean over ``horizon / smoothing``
    steps."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [p.name for p in self.policies]
        if not names:
            raise ValueError("a benchmark needs at least one policy")
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}")
        if SELFISH in names:
            raise ValueError(f"{SELFISH!r} is the built-in deviator's name; rename that policy")
        if not self.suites or not self.rules or not self.horizons:
            raise ValueError("a benchmark needs at least one suite, one rule and one horizon")
        for h in self.horizons:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"horizons must be ints >= 1, got {h!r}")
        if self.nash_gap not in ("exact", "all", "none"):
            raise ValueError(f"nash_gap must be 'exact', 'all' or 'none', got {self.nash_gap!r}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a policy of the benchmark ({names})")
        if self.mixed is not None:
            if self.mixed.reference not in names:
                raise ValueError(f"[mixed] reference {self.mixed.reference!r} is not a policy ({names})")
            for d in self.mixed.deviators:
                if d != SELFISH and d not in names:
                    raise ValueError(f"[mixed] deviator {d!r} is neither a policy ({names}) nor {SELFISH!r}")
            unknown = sorted(set(self.mixed.rules) - set(self.rules))
            if unknown:
                raise ValueError(f"[mixed] rules {unknown} are not rules of the benchmark {list(self.rules)}")
        from mtg_env.consensus import CONSENSUS_RULES
        from mtg_env.suites import SUITES

        for rule in self.rules:
            if rule not in CONSENSUS_RULES:
                raise ValueError(f"unknown consensus rule {rule!r}; available: {list(CONSENSUS_RULES)}")
        for suite in self.suites:
            if suite.name not in SUITES:
                raise ValueError(f"unknown suite {suite.name!r}; available: {sorted(SUITES)}")

    def policy(self, name: str) -> PolicySpec:
        """A policy by name; ``"selfish"`` is the reference wrapped as the selfish deviator."""
        if name == SELFISH and self.mixed is not None:
            ref = self.policy(self.mixed.reference)
            return PolicySpec(
                name=SELFISH,
                baseline=ref.baseline,
                factory=ref.factory,
                kwargs=ref.kwargs,
                is_baseline=False,
                selfish_scale=self.mixed.selfish_scale,
            )
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(name)

    def workloads(self) -> list[Workload]:
        """Every (suite, rule, horizon) in a fixed order."""
        return [
            Workload(s.name, rule, horizon=h, suite_options=s.options, dtype=self.dtype, device=self.device)
            for s in self.suites
            for rule in self.rules
            for h in self.horizons
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocol"] = self.protocol.to_dict()
        d.pop("extra")
        return d

    def digest(self) -> str:
        """A short hash of the configuration (what the report's header prints)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------- parsing
_TOP_KEYS = {"name", "policies", "suites", "rules", "horizons", "tuning", "mixed", "dtype", "device", "nash_gap",
             "reference", "bootstrap_reps", "smoothing"}  # fmt: skip


def config_from_dict(data: dict[str, Any]) -> BenchConfig:
    """A :class:`BenchConfig` from the parsed file (see the module docstring); unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"a benchmark config is a table (mapping), got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown benchmark config key(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    policies = []
    for i, p in enumerate(data.get("policies", [])):
        extra = sorted(set(p) - {"name", "baseline", "factory", "kwargs", "is_baseline"})
        if extra:
            raise ValueError(f"policies[{i}] has unknown key(s) {extra}")
        policies.append(
            PolicySpec(
                name=p.get("name", p.get("baseline", "")),
                baseline=p.get("baseline"),
                factory=p.get("factory"),
                kwargs=_freeze(dict(p.get("kwargs", {}))),
                is_baseline=bool(p.get("is_baseline", p.get("baseline") is not None)),
            )
        )
    suites = []
    for i, s in enumerate(data.get("suites", [])):
        if isinstance(s, str):
            s = {"name": s}
        extra = sorted(set(s) - {"name", "options"})
        if extra:
            raise ValueError(f"suites[{i}] has unknown key(s) {extra}")
        suites.append(SuiteSpec(s["name"], _freeze(dict(s.get("options", {})))))
    tuning = dict(data.get("tuning", {}))
    for key in ("tuning_seeds", "eval_seeds"):
        if key in tuning:
            tuning[key] = tuple(tuning[key])
    try:
        protocol = TuningProtocol(**tuning)
    except TypeError as err:
        raise ValueError(f"[tuning]: {err}") from None
    mixed = None
    if "mixed" in data:
        m = dict(data["mixed"])
        extra = sorted(set(m) - {"reference", "deviators", "selfish_scale", "rules"})
        if extra:
            raise ValueError(f"[mixed] has unknown key(s) {extra}")
        scale = m.get("selfish_scale", 4.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise ValueError(f"[mixed] selfish_scale must be a finite number > 0, got {scale!r}")
        mixed = MixedSpec(
            reference=m["reference"],
            deviators=tuple(m.get("deviators", [SELFISH])),
            selfish_scale=float(scale),
            rules=tuple(m.get("rules", ())),
        )
    return BenchConfig(
        name=str(data.get("name", "bench")),
        policies=tuple(policies),
        suites=tuple(suites),
        rules=tuple(data.get("rules", ())),
        horizons=tuple(data.get("horizons", ())),
        protocol=protocol,
        mixed=mixed,
        dtype=str(data.get("dtype", "float32")),
        device=str(data.get("device", "cpu")),
        nash_gap=data.get("nash_gap", "exact"),
        reference=data.get("reference"),
        bootstrap_reps=int(data.get("bootstrap_reps", 2000)),
        smoothing=int(data.get("smoothing", 10)),
    )


def load_config(path: str | Path) -> BenchConfig:
    """Read a benchmark from a ``.toml`` or ``.yaml``/``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"benchmark config {path} does not exist (give a .toml or .yaml file)")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            toml: Any = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10
            try:
                toml = importlib.import_module("tomli")
            except ImportError:
                raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
        return config_from_dict(toml.loads(text))
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML benchmark configs need PyYAML: pip install pyyaml (or write TOML)") from None
        return config_from_dict(yaml.safe_load(text))
    raise ValueError(f"benchmark config must be .toml, .yaml or .yml, got {path.name}")


# --------------------------------------------------------------------------------------- built-ins
_BASELINES = [
    {"name": "gradient", "baseline": "gradient"},
    {"name": "gradient_rm", "baseline": "gradient", "kwargs": {"schedule": "robbins_monro"}},
    {"name": "momentum", "baseline": "momentum"},
    {"name": "adam", "baseline": "adam"},
    {"name": "rmsprop", "baseline": "rmsprop"},
]


def default_config() -> BenchConfig:
    """The default benchmark: the five tuned baselines on the four suites under sum, mean, MGDA and UPGrad, a
    horizon of 100 steps, a 13-point log grid from 1e-3 to 10 (3 per decade) on 2 tuning seeds, 10 held-out
    seeds, and the selfish deviator and Adam against the gradient players in mixed populations."""
    return config_from_dict(
        {
            "name": "default",
            "policies": _BASELINES,
            "suites": [
                {"name": "quadratic"},
                {"name": "regression"},
                {"name": "digits", "options": {"hidden": [32, 16], "batch_size": 64}},
                {"name": "toy2d"},
            ],
            "rules": ["sum", "mean", "mgda", "upgrad"],
            "horizons": [100],
            "tuning": {
                "low": 1e-3,
                "high": 10.0,
                "points_per_decade": 3,
                "tuning_seeds": [100_000, 100_001],
                "eval_seeds": list(range(10)),
            },
            "mixed": {"reference": "gradient", "deviators": [SELFISH, "adam"], "selfish_scale": 4.0},
        }
    )


def quick_config() -> BenchConfig:
    """``--quick``: two baselines, two suites, two rules, 50 steps, a 7-point grid on one tuning seed, 5
    held-out seeds, the selfish deviator (under two minutes on two cores)."""
    return config_from_dict(
        {
            "name": "quick",
            "policies": [_BASELINES[0], _BASELINES[3]],
            "suites": [{"name": "quadratic"}, {"name": "regression", "options": {"trunk": "mlp", "hidden": 8}}],
            "rules": ["sum", "upgrad"],
            "horizons": [50],
            "tuning": {
                "low": 1e-2,
                "high": 1.0,
                "points_per_decade": 3,
                "tuning_seeds": [100_000],
                "eval_seeds": list(range(5)),
            },
            "mixed": {"reference": "gradient", "deviators": [SELFISH], "selfish_scale": 4.0},
            "bootstrap_reps": 1000,
        }
    )
