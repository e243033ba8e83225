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
    reference_lr = []                 # deviators played at the reference's tuned step size (as selfish is)

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

from dataclasses import replace

# The benchmark's parts, the whole and its parsing live in their own modules; their public names are re-exported here.
from mtg_env.bench.config import BenchConfig
from mtg_env.bench.parse import config_from_dict, load_config
from mtg_env.bench.parts import ROLES, SELFISH, MixedSpec, PolicySpec, SuiteSpec

__all__ = [
    "ROLES",
    "SELFISH",
    "BenchConfig",
    "MixedSpec",
    "PolicySpec",
    "SuiteSpec",
    "config_from_dict",
    "default_config",
    "load_config",
    "quick_config",
]

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
