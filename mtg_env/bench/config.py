"""A whole benchmark: :class:`BenchConfig`, its checks (in the constructor, and :meth:`BenchConfig.check` for what
only importing and building can find), its workloads and its digest. Its file form is described in
:mod:`mtg_env.bench.spec`."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mtg_env._args import choice_arg, int_arg
from mtg_env.bench._values import _names, _one_line, _shown
from mtg_env.bench.parts import SELFISH, MixedSpec, PolicySpec, SuiteSpec, _check_policy
from mtg_env.tuning import TuningProtocol, Workload


@dataclass(frozen=True)
class BenchConfig:
    """A whole benchmark (its file form: :mod:`mtg_env.bench.spec`)."""

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
        if d["mixed"] is not None and not d["mixed"]["reference_lr"]:
            d["mixed"].pop("reference_lr")  # the option's default: digests of files without it stay as they were
        return d

    def digest(self) -> str:
        """A short hash of the configuration (what the report's header prints); the size limit, which changes no
        result, is left out."""
        d = self.to_dict()
        d.pop("max_game_steps")
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
