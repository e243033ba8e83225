"""``mtg-env bench``: update policies tuned, scored and ranked (the open protocol or the sealed one)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mtg_env.cli._common import CLIError, _check_out_dir, _threads_option


def _bench_parser(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmark update policies: tuned baselines, leaderboard with CIs, manipulability of the rules",
        description="Tune every policy of a benchmark (AlgoPerf-style budget on tuning seeds), score it on held-out "
        "seeds and in mixed populations; write DIR/results.jsonl (one record per match, resumable), "
        "DIR/leaderboard.md/.csv/.json and figures, and print the leaderboard.",
    )
    bench.add_argument("config", nargs="?", type=Path, default=None, help="benchmark file (.toml/.yaml); default: "
                       "the built-in default benchmark")  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="the small built-in benchmark (under two minutes); with "
                       "a file, that benchmark shrunk the same way (two suites and rules, half the horizon, one "
                       "tuning seed, five held-out seeds)")  # fmt: skip
    bench.add_argument("--backend", default="local", choices=["local", "process", "ray"], help="where matches run")
    bench.add_argument("--workers", type=int, default=None, help="processes / Ray CPUs (default: one per CPU)")
    bench.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    bench.add_argument("--out", type=Path, default=None, help="output directory (default runs/bench_<name>)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument("--validation", action="store_true", help="sealed-protocol configs: score on the development "
                       "validation stream, not the sealed test stream")  # fmt: skip
    bench.add_argument("--test-key", default=None, help="sealed-protocol configs (protocol = 'sealed'): the 128-bit "
                       "key of the sealed test draws, 32 hex digits, or 'new' for a fresh random one")  # fmt: skip
    _threads_option(bench)


def _bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mtg_env.bench import default_config, load_config, quick_config, run_bench

    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.address is not None and args.backend != "ray":
        parser.error("--address applies to --backend ray")
    sealed = _sealed_config(args)
    if sealed is not None:
        return _bench_sealed(args, sealed)
    if args.test_key is not None or args.validation:
        parser.error("--test-key and --validation apply to a sealed-protocol config (protocol = 'sealed')")
    try:  # the whole config is checked before anything is written or played: one line that names the key
        if args.config is None:
            config = quick_config() if args.quick else default_config()
        else:
            config = load_config(args.config)
            if args.quick:
                config = quick_config(config)
        config.check()
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        raise CLIError(" ".join(str(err).split())) from None
    out = args.out or Path("runs") / f"bench_{config.name}"
    _check_out_dir(out)
    import resource

    def cpu() -> float:  # this process and its finished workers (a local Ray's workers are not counted)
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    start, cpu_start = time.perf_counter(), cpu()
    summary = run_bench(
        config, out, args.backend, workers=args.workers, address=args.address, progress=not args.no_progress
    )
    seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
    print((out / "leaderboard.md").read_text().split("\n## Per workload")[0])
    skipped = summary["skipped_lines"]
    if skipped:
        lines = ", ".join(f"{s['line']} ({s['reason']})" for s in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        print(f"{out / 'results.jsonl'}: skipped {len(skipped)} line(s) that were not intact records (a broken "
              f"record's match was played again): line {lines}; the non-blank ones are kept in "
              f"{out / 'results.skipped'}")  # fmt: skip
    print(f"{config.name}: {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU on the {args.backend} backend; wrote "
          f"{out / 'results.jsonl'}, {out / 'leaderboard.md'} (.csv, .json) and figures")  # fmt: skip
    return 0


def _sealed_config(args: argparse.Namespace) -> Any:
    """The :class:`~mtg_env.bench.sealed.SealedConfig` of ``args.config`` if it is a TOML file with
    ``protocol = "sealed"`` (``--quick`` applied), else ``None``."""
    path = args.config
    if path is None or path.suffix != ".toml" or not path.is_file():
        return None
    import importlib

    from mtg_env.bench.sealed import is_sealed, sealed_config_from_dict

    try:
        toml: Any = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10: load_config says what to install
        return None
    try:
        data = toml.loads(path.read_text())
    except toml.TOMLDecodeError:
        return None  # load_config reports it
    if not is_sealed(data):
        return None
    try:
        config = sealed_config_from_dict(data)
        config = config.quick() if args.quick else config
        config.check()
    except (ValueError, TypeError) as err:
        raise CLIError(" ".join(str(err).split())) from None
    return config


def _bench_sealed(args: argparse.Namespace, config: Any) -> int:
    from mtg_env._platform import steady_allocator
    from mtg_env.bench.sealed import run_sealed

    steady_allocator()  # tuning frees and reallocates batch-sized blocks every step: keep them in the process

    out = args.out or Path("runs") / f"bench_{config.name}"
    start = time.perf_counter()
    try:
        stream = "validation" if args.validation else "test"
        run_sealed(config, out, test_key=args.test_key, progress=not args.no_progress, stream=stream)
    except ValueError as err:
        raise CLIError(" ".join(str(err).split())) from None
    print(f"{config.name}: {time.perf_counter() - start:.0f} s wall; wrote {out / 'report.md'} and report.json")
    return 0
