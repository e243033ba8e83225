"""The benchmark of update policies: tuned baselines, honest statistics, mixed populations, backends.

    from mtg_env.bench import default_config, run_bench
    summary = run_bench(default_config(), "runs/bench", backend="process")

See :mod:`mtg_env.bench.spec` (what a benchmark is and its file form), :mod:`mtg_env.tuning` (the tuning
protocol), :mod:`mtg_env.bench.stats` (the statistics), :mod:`mtg_env.bench.runner` (backends, resume) and
:mod:`mtg_env.bench.report` (the leaderboard).
"""

from mtg_env.bench.match import MatchSpec, run_match
from mtg_env.bench.report import leaderboard_markdown, summarize, write_report
from mtg_env.bench.runner import (
    BACKENDS,
    Executor,
    ResultsLog,
    SkippedLine,
    execute,
    load_records,
    play_matches,
    read_results,
    run_bench,
    tuning_matches,
)
from mtg_env.bench.spec import (
    SELFISH,
    BenchConfig,
    MixedSpec,
    PolicySpec,
    SuiteSpec,
    config_from_dict,
    default_config,
    load_config,
    quick_config,
)

__all__ = [
    "BACKENDS",
    "SELFISH",
    "BenchConfig",
    "Executor",
    "MatchSpec",
    "MixedSpec",
    "PolicySpec",
    "ResultsLog",
    "SkippedLine",
    "SuiteSpec",
    "config_from_dict",
    "default_config",
    "execute",
    "leaderboard_markdown",
    "load_config",
    "load_records",
    "play_matches",
    "quick_config",
    "read_results",
    "run_bench",
    "run_match",
    "summarize",
    "tuning_matches",
    "write_report",
]
