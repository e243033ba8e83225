"""What a benchmark is: policies × suites × consensus rules × horizons × seeds, and the tuning protocol.

A benchmark is a small TOML (or YAML) file, so a published result is re-run by one command::

    name = "mine"
    rules = ["sum", "mean"]
    horizons = [100]
    [[policies]]                      # a baseline by name (agents.AGENTS), with its other arguments
    name = "adam"
    baseline = "adam"
    role = "yardstick"                # sets the targets and the score normalisation (a baseline's default)
    [[policies]]                      # any policy by import path: a callable lr -> Policy (kwargs passed)
    name = "mine"
    factory = "my_package.players:make"
    kwargs = { width = 32 }
    role = "entrant"                  # scored against the yardsticks (a factory's default)
    [[suites]]
    name = "regression"
    options = { trunk = "mlp", hidden = 8 }
    [[suites]]                        # any suite by import path: a callable (**options) -> TaskSuite, e.g. a
    name = "my_package.models:make_suite"   # ModuleSuite of your own model (device and dtype passed if taken)
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

Other top-level keys: ``reference`` (the policy the probability of improvement compares against; default the
first), ``dtype``, ``device``, ``nash_gap``, ``bootstrap_reps`` (int >= 1), ``smoothing`` (int >= 1) and
``max_game_steps`` (the size limit: every game's horizon summed over every match; default 10,000,000, about 26
times the default benchmark).

A policy's ``role`` is ``"yardstick"`` or ``"entrant"``. Yardsticks set each workload's targets (steps-to-target)
and the L* of the normalised score, so adding or removing one changes every policy's score; entrants are scored
against them. It defaults to ``"yardstick"`` for a baseline by name and ``"entrant"`` for a factory; the
leaderboard names the yardsticks. ``is_baseline = true/false`` is the older spelling of the same choice.

:meth:`BenchConfig.check` checks the whole benchmark before a match is played (:func:`~mtg_env.bench.run_bench`
calls it): every policy imports and its ``kwargs`` bind to its factory's signature, every workload builds, and the
size is within ``max_game_steps``. Every error is a ``ValueError`` or ``TypeError`` whose message names the key
(``policies[2].kwargs``, ``[tuning] low``, ``bootstrap_reps``).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mtg_env._args import bool_arg, choice_arg, int_arg, real_arg
from mtg_env.tuning import Baseline, PolicyFactory, Selfish, TuningProtocol, Workload

#: The label of the built-in selfish deviator in ``[mixed] deviators``.
SELFISH = "selfish"

#: A policy's part in the scoring (see the module docstring).
ROLES = ("yardstick", "entrant")

#: Options a workload sets itself; a suite's ``options`` must not override them.
_WORKLOAD_KEYS = {"suite": "suites", "consensus": "rules", "max_cycles": "horizons", "action_mode": "the bench",
                  "max_update": "the bench", "dtype": "dtype", "device": "device"}  # fmt: skip


def _freeze(value: Any) -> Any:
    """Lists as tuples and dicts as sorted (key, value) tuples: hashable, canonical."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _pairs(value: Any, key: str) -> None:
    """A frozen table: a tuple of ``(name, value)`` pairs with string names."""
    if not isinstance(value, tuple) or not all(
        isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in value
    ):
        raise TypeError(f"{key} must be a table of name = value pairs, got {_shown(value)}")


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
    """Whether it is a yardstick (``role = "yardstick"``): it sets targets (steps-to-target) and the normalisation
    of scores. The field keeps its old name so that the match keys of existing results files stay valid."""
    selfish_scale: float | None = None
    """Wrap the policy as the selfish deviator with this trunk scale (built for ``[mixed]``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a policy's name must be a non-empty string, got {self.name!r}")
        for key in ("baseline", "factory"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"policy {self.name!r}: {key} must be a non-empty string, got {_shown(value)}")
        if (self.baseline is None) == (self.factory is None):
            raise ValueError(f"policy {self.name!r} needs exactly one of 'baseline' (a name) or 'factory' (a path)")
        if self.factory is not None and not re.fullmatch(r"[\w.]+:\w+", self.factory):
            raise ValueError(f"policy {self.name!r}: factory must be 'package.module:callable', got {self.factory!r}")
        _pairs(self.kwargs, f"policy {self.name!r}: kwargs")
        bool_arg(f"policy {self.name!r}: is_baseline", self.is_baseline)
        if self.selfish_scale is not None:
            real_arg(f"policy {self.name!r}: selfish_scale", self.selfish_scale, 0.0, low_open=True)

    @property
    def role(self) -> str:
        """``"yardstick"`` or ``"entrant"`` (see the module docstring)."""
        return ROLES[0] if self.is_baseline else ROLES[1]

    def build(self) -> PolicyFactory:
        """The ``lr -> Policy`` factory (baselines with their batched form)."""
        kwargs = {k: _thaw(v) for k, v in self.kwargs}
        inner: PolicyFactory
        if self.baseline is not None:
            inner = Baseline(self.baseline, **kwargs)
        else:
            assert self.factory is not None
            try:
                target = _import(self.factory)
            except ValueError as err:
                raise ValueError(f"policy {self.name!r}: {err}") from None
            inner = _ImportedFactory(self.factory, target, kwargs)
        return inner if self.selfish_scale is None else Selfish(inner, self.selfish_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import(path: str) -> Any:
    """The callable at ``package.module:callable``, or a one-line ``ValueError``."""
    module, _, attr = path.partition(":")
    try:  # any error while the module runs is the user's import failing, reported in one line
        target = getattr(importlib.import_module(module), attr)
    except Exception as err:
        raise ValueError(f"cannot import {path!r} ({type(err).__name__}: {_one_line(err)})") from None
    if not callable(target):
        raise ValueError(f"{path!r} is a {type(target).__name__}, not a callable lr -> Policy")
    return target


def _bind(target: Any, label: str, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> None:
    """Refuse ``kwargs`` that ``target(*args, **kwargs)`` could not take, naming ``where`` and the signature."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        params = ", ".join(signature.parameters)
        raise TypeError(f"{where}: {label}({params}) does not take these arguments ({err})") from None


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a suite's name must be a non-empty string, got {_shown(self.name)}")
        _pairs(self.options, f"suite {self.name!r}: options")
        for key, _ in self.options:
            if key in _WORKLOAD_KEYS:
                raise ValueError(
                    f"suite {self.name!r}: options sets {key!r}, which the benchmark sets (from {_WORKLOAD_KEYS[key]})"
                )


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

    def __post_init__(self) -> None:
        if not isinstance(self.reference, str):
            raise TypeError(f"[mixed] reference must be a policy name, got {_shown(self.reference)}")
        _names(self.deviators, "[mixed] deviators")
        _names(self.rules, "[mixed] rules")
        real_arg("[mixed] selfish_scale", self.selfish_scale, 0.0, low_open=True)


def _names(values: Any, key: str, *, kind: type = str) -> None:
    """A tuple of ``kind`` values, none repeated (a repeat would count its games twice in the IQM and CIs)."""
    if not isinstance(values, tuple):
        raise TypeError(f"{key} must be a list, got {_shown(values)}")
    seen: dict[Any, int] = {}
    for i, v in enumerate(values):
        if kind is int:
            int_arg(f"{key}[{i}]", v, low=1)
        elif not isinstance(v, kind) or not v:
            raise TypeError(f"{key}[{i}] must be a non-empty string, got {_shown(v)}")
        if v in seen:
            raise ValueError(f"{key}[{i}] repeats {v!r} (also {key}[{seen[v]}]); its games would count twice")
        seen[v] = i


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
    max_game_steps: int = 10_000_000
    """The size limit: :meth:`check` refuses a benchmark whose games' horizons sum past it (the default benchmark
    plays 384,000 game-steps)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"\w[\w.-]*", self.name):
            raise ValueError(
                f"name must be a non-empty string of letters, digits, '_', '.' and '-' (it names the default output "
                f"folder), got {self.name!r}"
            )
        for key, kind in (("policies", PolicySpec), ("suites", SuiteSpec)):
            values = getattr(self, key)
            if not isinstance(values, tuple) or not all(isinstance(v, kind) for v in values):
                raise TypeError(f"{key} must be a tuple of {kind.__name__}, got {_shown(values)}")
        if not self.policies:
            raise ValueError("policies: a benchmark needs at least one policy")
        names: dict[str, int] = {}
        for i, p in enumerate(self.policies):
            if p.name == SELFISH:
                raise ValueError(f"policies[{i}].name: {SELFISH!r} is the built-in deviator's name; rename the policy")
            if p.name in names:
                raise ValueError(f"policies[{i}].name: {p.name!r} is also policies[{names[p.name]}]'s name; policy "
                                 "names must be unique")  # fmt: skip
            names[p.name] = i
        if not any(p.is_baseline for p in self.policies):
            raise ValueError(
                "role: no policy is a yardstick; set role = 'yardstick' on the policies that set the targets and "
                "the normalisation of scores (a baseline by name is one by default)"
            )
        if not self.suites or not self.rules or not self.horizons:
            raise ValueError("a benchmark needs at least one of each of suites, rules and horizons")
        _names(tuple(s.name for s in self.suites), "suites")
        _names(self.rules, "rules")
        _names(self.horizons, "horizons", kind=int)
        choice_arg("dtype", self.dtype, ("float32", "float64"))
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {_shown(self.device)}")
        choice_arg("nash_gap", self.nash_gap, ("exact", "all", "none"))
        if not isinstance(self.protocol, TuningProtocol):
            raise TypeError(f"protocol must be a TuningProtocol ([tuning]), got {_shown(self.protocol)}")
        int_arg("bootstrap_reps", self.bootstrap_reps, low=1, hint="bootstrap replicates of every CI")
        int_arg("smoothing", self.smoothing, low=1, hint="the smoothing window is horizon / smoothing steps")
        int_arg("max_game_steps", self.max_game_steps, low=1)
        if self.reference is not None and not isinstance(self.reference, str):
            raise TypeError(f"reference must be a policy name, got {_shown(self.reference)}")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a policy of the benchmark ({list(names)})")
        if self.mixed is not None:
            if not isinstance(self.mixed, MixedSpec):
                raise TypeError(f"mixed must be a MixedSpec ([mixed]), got {_shown(self.mixed)}")
            if self.mixed.reference not in names:
                raise ValueError(f"[mixed] reference {self.mixed.reference!r} is not a policy ({list(names)})")
            for i, d in enumerate(self.mixed.deviators):
                if d != SELFISH and d not in names:
                    raise ValueError(f"[mixed] deviators[{i}]: deviator {d!r} is neither a policy ({list(names)}) nor "
                                     f"{SELFISH!r}")  # fmt: skip
            unknown = sorted(set(self.mixed.rules) - set(self.rules))
            if unknown:
                raise ValueError(f"[mixed] rules {unknown} are not rules of the benchmark {list(self.rules)}")
        from mtg_env.consensus import CONSENSUS_RULES
        from mtg_env.suites import IMPORT_PATH, SUITES

        for i, rule in enumerate(self.rules):
            if rule not in CONSENSUS_RULES:
                raise ValueError(f"rules[{i}]: unknown consensus rule {rule!r}; available: {list(CONSENSUS_RULES)}")
        for i, suite in enumerate(self.suites):
            if suite.name not in SUITES and not IMPORT_PATH.fullmatch(suite.name):
                raise ValueError(
                    f"suites[{i}].name: unknown suite {suite.name!r}; available: {sorted(SUITES)}, or an import path "
                    "'package.module:factory' (a callable returning a TaskSuite, e.g. a ModuleSuite of your model)"
                )

    def check(self) -> None:
        """Check what only importing and building can, before any match is played: every policy's factory
        imports and its ``kwargs`` bind to the factory's signature (a baseline's are also checked by value), the
        device is usable, every workload builds, and the benchmark plays at most ``max_game_steps`` game-steps.

        Raises:
            ValueError, TypeError: one line naming the key (``policies[1].kwargs``, ``suites[0]``, ...).
        """
        for i, p in enumerate(self.policies):
            _check_policy(p, i)
        from mtg_env.envs.config import check_device

        check_device(self.device)
        tasks: dict[str, int] = {}
        for i, s in enumerate(self.suites):
            for rule in self.rules:
                workload = Workload(s.name, rule, self.horizons[0], s.options, dtype=self.dtype, device=self.device)
                try:
                    env = workload.make_env()
                except (ValueError, TypeError) as err:
                    raise type(err)(f"suites[{i}] ({s.name!r}) under rule {rule!r}: {_one_line(err)}") from None
                except Exception as err:  # e.g. options too large to allocate: still the config's fault
                    raise ValueError(f"suites[{i}] ({s.name!r}) under rule {rule!r}: cannot build the game "
                                     f"({type(err).__name__}: {_one_line(err)})") from None  # fmt: skip
            tasks[s.name] = env.suite.num_tasks
        self._check_size(tasks)

    def _check_size(self, tasks: dict[str, int]) -> None:
        policies, suites, rules, horizon = len(self.policies), len(self.suites), len(self.rules), sum(self.horizons)
        trials, evals = self.protocol.budget, len(self.protocol.eval_seeds)
        tuning = policies * suites * rules * horizon * trials
        held_out = policies * suites * rules * horizon * evals
        mixed, mixed_text = 0, ""
        if self.mixed is not None:
            deviators, mixed_rules = len(self.mixed.deviators), len(self.mixed.rules or self.rules)
            mixed = deviators * mixed_rules * horizon * sum(tasks.values()) * evals
            mixed_text = (f" + mixed {deviators} deviators × {mixed_rules} rules × {horizon:,} × {sum(tasks.values())} "
                          f"tasks × {evals} = {mixed:,}")  # fmt: skip
        total = tuning + held_out + mixed
        if total > self.max_game_steps:
            raise ValueError(
                f"max_game_steps: the benchmark would play {total:,} game-steps, more than max_game_steps = "
                f"{self.max_game_steps:,}: tuning {policies} policies × {suites} suites × {rules} rules × {horizon:,} "
                f"steps (sum of horizons) × {trials:,} trials ({self.protocol.num_step_sizes:,} step sizes × "
                f"{len(self.protocol.tuning_seeds)} tuning_seeds) = {tuning:,} + held-out {policies} × {suites} × "
                f"{rules} × {horizon:,} × {evals} eval_seeds = {held_out:,}{mixed_text}; use fewer policies, suites, "
                "rules, shorter horizons, fewer step sizes (points_per_decade, low, high) or seeds, or raise "
                "max_game_steps"
            )

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
        """A short hash of the configuration (what the report's header prints); the size limit, which changes no
        result, is left out."""
        d = self.to_dict()
        d.pop("max_game_steps")
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_policy(p: PolicySpec, i: int) -> None:
    """Import ``p``'s factory and bind its ``kwargs`` to the signature (a baseline's also by value)."""
    where = f"policies[{i}]"
    kwargs = {k: _thaw(v) for k, v in p.kwargs}
    if p.baseline is not None:
        from agents.runner import AGENTS

        if p.baseline not in AGENTS:
            raise ValueError(f"{where}.baseline: unknown baseline {p.baseline!r}; available: {sorted(AGENTS)}")
        own = {k: v for k, v in kwargs.items() if k != "trunk_ratio"}  # Baseline's own argument, not the player's
        _bind(AGENTS[p.baseline], p.baseline, (), {"lr": 1e-3, **own}, f"{where}.kwargs (policy {p.name!r})")
        try:  # the values: Baseline builds one player now
            Baseline(p.baseline, **kwargs)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}.kwargs (policy {p.name!r}): {_one_line(err)}") from None
    else:
        assert p.factory is not None
        try:
            target = _import(p.factory)
        except ValueError as err:
            raise ValueError(f"{where}.factory (policy {p.name!r}): {err}") from None
        _bind(target, p.factory, (1e-3,), kwargs, f"{where}.kwargs (policy {p.name!r})")


# ------------------------------------------------------------------------------------------- parsing
_TOP_KEYS = {"name", "policies", "suites", "rules", "horizons", "tuning", "mixed", "dtype", "device", "nash_gap",
             "reference", "bootstrap_reps", "smoothing", "max_game_steps"}  # fmt: skip
_POLICY_KEYS = {"name", "baseline", "factory", "kwargs", "role", "is_baseline"}
_TUNING_KEYS = {"low", "high", "points_per_decade", "search", "trials", "tuning_seeds", "eval_seeds"}
_MIXED_KEYS = {"reference", "deviators", "selfish_scale", "rules"}


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be a table (mapping), got {_shown(value)}")
    return value


def _known(table: dict[str, Any], known: set[str], key: str) -> None:
    unknown = sorted(map(str, set(table) - known))
    if unknown:
        raise ValueError(f"unknown {key} key(s) {unknown}; known: {sorted(known)}")


def _list(value: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{key} must be a list, got {_shown(value)}")
    return tuple(value)


def _role(p: dict[str, Any], where: str) -> bool:
    """Whether the policy table ``p`` is a yardstick: ``role``, or the older ``is_baseline``, or the default."""
    role = p.get("role")
    if role is not None:
        choice_arg(f"{where}.role", role, ROLES)
    if "is_baseline" in p:
        implied = ROLES[0] if bool_arg(f"{where}.is_baseline", p["is_baseline"]) else ROLES[1]
        if role is not None and role != implied:
            raise ValueError(f"{where}: role = {role!r} and is_baseline = {p['is_baseline']} disagree; give role alone")
        role = implied
    if role is None:
        role = ROLES[0] if p.get("baseline") is not None else ROLES[1]
    return bool(role == ROLES[0])


def _policy(i: int, p: Any) -> PolicySpec:
    where = f"policies[{i}]"
    p = _table(p, where)
    _known(p, _POLICY_KEYS, where)
    name = p.get("name", p.get("baseline"))  # a baseline by name names itself unless told otherwise
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}.name must be a non-empty string, got {_shown(name)}")
    kwargs = _table(p.get("kwargs", {}), f"{where}.kwargs")
    is_baseline = _role(p, where)
    try:
        return PolicySpec(name, p.get("baseline"), p.get("factory"), _freeze(kwargs), is_baseline)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None


def _suite(i: int, s: Any) -> SuiteSpec:
    where = f"suites[{i}]"
    if isinstance(s, str):
        s = {"name": s}
    s = _table(s, where)
    _known(s, {"name", "options"}, where)
    if "name" not in s:
        raise ValueError(f"{where} needs a name (a suite of mtg_env.SUITES or an import path 'package.module:factory')")
    options = _table(s.get("options", {}), f"{where}.options")
    try:
        return SuiteSpec(s["name"], _freeze(options))
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None


def _protocol(data: dict[str, Any]) -> TuningProtocol:
    tuning = dict(_table(data.get("tuning", {}), "[tuning]"))
    _known(tuning, _TUNING_KEYS, "[tuning]")
    for key in ("tuning_seeds", "eval_seeds"):
        if key in tuning:
            tuning[key] = _list(tuning[key], f"[tuning] {key}")
    try:
        return TuningProtocol(**tuning)
    except (ValueError, TypeError) as err:
        raise type(err)(f"[tuning] {err}") from None


def _mixed(data: dict[str, Any]) -> MixedSpec | None:
    if "mixed" not in data:
        return None
    m = _table(data["mixed"], "[mixed]")
    _known(m, _MIXED_KEYS, "[mixed]")
    if "reference" not in m:
        raise ValueError("[mixed] needs a reference (the policy the other tasks play)")
    return MixedSpec(
        reference=m["reference"],
        deviators=_list(m.get("deviators", [SELFISH]), "[mixed] deviators"),
        selfish_scale=real_arg("[mixed] selfish_scale", m.get("selfish_scale", 4.0), 0.0, low_open=True),
        rules=_list(m.get("rules", ()), "[mixed] rules"),
    )


def config_from_dict(data: dict[str, Any]) -> BenchConfig:
    """A :class:`BenchConfig` from the parsed file (see the module docstring). Nothing is coerced: unknown keys,
    values of the wrong type (``is_baseline = "no"``, ``bootstrap_reps = "5"``) and repeats (a suite, rule,
    horizon or policy name twice) are errors that name the key."""
    data = _table(data, "a benchmark config")
    _known(data, _TOP_KEYS, "benchmark config")
    policies = tuple(_policy(i, p) for i, p in enumerate(_list(data.get("policies", []), "policies")))
    suites = tuple(_suite(i, s) for i, s in enumerate(_list(data.get("suites", []), "suites")))
    return BenchConfig(
        name=data.get("name", "bench"),
        policies=policies,
        suites=suites,
        rules=_list(data.get("rules", ()), "rules"),
        horizons=_list(data.get("horizons", ()), "horizons"),
        protocol=_protocol(data),
        mixed=_mixed(data),
        dtype=data.get("dtype", "float32"),
        device=data.get("device", "cpu"),
        nash_gap=data.get("nash_gap", "exact"),
        reference=data.get("reference"),
        bootstrap_reps=data.get("bootstrap_reps", 2000),
        smoothing=data.get("smoothing", 10),
        max_game_steps=data.get("max_game_steps", 10_000_000),
    )


def load_config(path: str | Path) -> BenchConfig:
    """Read a benchmark from a ``.toml`` or ``.yaml``/``.yml`` file (a syntax error is a ``ValueError`` naming the
    file)."""
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
        try:
            data = toml.loads(text)
        except toml.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({_one_line(err)})") from None
        return config_from_dict(data)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML benchmark configs need PyYAML: pip install pyyaml (or write TOML)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({_one_line(err)})") from None
        return config_from_dict(data)
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


def quick_config(config: BenchConfig | None = None) -> BenchConfig:
    """``--quick``. Alone: the small built-in benchmark (two baselines, two suites, two rules, 50 steps, a 7-point
    grid on one tuning seed, 5 held-out seeds, the selfish deviator; under two minutes on two cores).

    Given a benchmark (``mtg-env bench --quick FILE``): the cuts ``--quick`` makes to the default benchmark, with
    its policies, deviators and step-size range kept (they are what the file is about): its first two suites and
    rules (a rule of ``[mixed] rules`` kept), its shortest horizon halved, one tuning seed, at most five held-out
    seeds and at most 1000 bootstrap replicates. It is named ``<name>_quick``, so its default folder is its own.
    """
    if config is not None:
        rules = config.rules[:2]
        mixed = config.mixed
        if mixed is not None and mixed.rules:
            if not set(mixed.rules) & set(rules):
                rules = (config.rules[0], mixed.rules[0])
            mixed = replace(mixed, rules=tuple(r for r in mixed.rules if r in rules))
        protocol = replace(
            config.protocol,
            tuning_seeds=config.protocol.tuning_seeds[:1],
            eval_seeds=config.protocol.eval_seeds[:5],
        )
        return replace(
            config,
            name=f"{config.name}_quick",
            suites=config.suites[:2],
            rules=rules,
            horizons=(max(1, min(config.horizons) // 2),),
            protocol=protocol,
            mixed=mixed,
            bootstrap_reps=min(config.bootstrap_reps, 1000),
        )
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
