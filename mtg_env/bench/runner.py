"""Run a benchmark: plan its matches, play them on a backend, stream the records to disk, resume.

Backends: ``local`` (this process), ``process`` (a pool of spawned processes) and ``ray`` (Ray tasks, retried
when a node dies; ``ray.init()`` locally unless an address is given or Ray is already initialised). Every
match is a pure function of its spec, so the backends give identical records. Each finished match is
appended to ``DIR/results.jsonl`` and synced to disk at once; a re-run skips the matches already there. A line
that is not an intact record (a blank or note line, a write cut off by an interruption, a record without its
result) is skipped and reported by line number, its match played again; every intact record is kept. At the end
the file is replaced, atomically, by its records in the plan's order (the skipped lines, but blank ones, are
appended to ``DIR/results.skipped``), so an interrupted-and-resumed run leaves the same file as an uninterrupted
one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mtg_env._io import write_atomic
from mtg_env.bench.config import BenchConfig
from mtg_env.bench.match import MatchSpec, canonical, run_match
from mtg_env.bench.parts import SELFISH

Backend = Literal["local", "process", "ray"]
BACKENDS: tuple[str, ...] = ("local", "process", "ray")
RESULTS = "results.jsonl"
#: Where a run keeps the lines of ``results.jsonl`` that were not intact records when it rewrote the file.
SKIPPED = "results.skipped"


# --------------------------------------------------------------------------------------- the plan
def tuning_matches(config: BenchConfig) -> list[MatchSpec]:
    """One ``tune`` match per policy and workload."""
    return [
        MatchSpec("tune", w, (p,), config.protocol.tuning_seeds, protocol=config.protocol, policy=p.name)
        for p in config.policies
        for w in config.workloads()
    ]


def play_matches(config: BenchConfig, best: dict[tuple[str, str], float]) -> list[MatchSpec]:
    """The ``eval`` matches (every policy at its tuned step size on the held-out seeds) and the ``mixed`` ones
    (each deviator on each task m against the reference), given ``best[(policy, workload)]``."""
    seeds = config.protocol.eval_seeds
    specs = []
    for p in config.policies:
        for w in config.workloads():
            exact = config.nash_gap == "exact" and _exact_gap(w.suite, dict(w.suite_options))
            gap = config.nash_gap == "all" or exact
            specs.append(MatchSpec("eval", w, (p,), seeds, (best[(p.name, w.name)],), nash_gap=gap, policy=p.name))
    mixed = config.mixed
    if mixed is not None:
        ref = config.policy(mixed.reference)
        rules = mixed.rules or config.rules
        for d in mixed.deviators:
            dev = config.policy(d)
            for w in config.workloads():
                if w.consensus not in rules:
                    continue
                ref_lr = best[(ref.name, w.name)]
                dev_lr = ref_lr if d == SELFISH or d in mixed.reference_lr else best[(d, w.name)]
                count = _num_tasks(w.suite, dict(w.suite_options))
                for m in range(count):
                    lineup = tuple(dev if k == m else ref for k in range(count))
                    lrs = tuple(dev_lr if k == m else ref_lr for k in range(count))
                    specs.append(MatchSpec("mixed", w, lineup, seeds, lrs, policy=d, task=m))
    return specs


def _exact_gap(suite: str, options: dict[str, Any]) -> bool:
    from mtg_env.suites import SUITES, make_suite

    if suite in SUITES:
        return bool(getattr(SUITES[suite], "exact_best_response", False))
    return bool(make_suite(suite, **options).exact_best_response)  # by import path: the built suite knows


_TASKS: dict[tuple[str, str], int] = {}


def _num_tasks(suite: str, options: dict[str, Any]) -> int:
    key = (suite, canonical(options))
    if key not in _TASKS:
        from mtg_env.suites import make_suite

        _TASKS[key] = make_suite(suite, **options).num_tasks
    return _TASKS[key]


# ------------------------------------------------------------------------------------- the results
@dataclass(frozen=True)
class SkippedLine:
    """A line of a results file that is not an intact record."""

    line: int
    """Its number (from 1)."""
    reason: str
    text: str


@dataclass
class ResultsLog:
    """What a results file holds: its intact records by key (the first of a repeated key) and the lines skipped."""

    records: dict[str, dict[str, Any]]
    skipped: list[SkippedLine]
    ends_with_newline: bool = True
    """False when the last line was cut off: the next append starts a new line first."""


_KINDS = ("tune", "eval", "mixed")


def _record_problem(record: Any) -> str | None:
    """Why a parsed line is not an intact record (``None`` if it is one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("key"), str):
        return "a record without a key"
    if record.get("kind") not in _KINDS:
        return f"a record with kind {record.get('kind')!r}"
    if not isinstance(record.get("policy"), str) or not isinstance(record.get("workload"), str):
        return "a record without its policy or workload"
    result = record.get("result")
    if not isinstance(result, dict):
        return "a record without a result"
    if record["kind"] == "tune":
        lr = result.get("best_lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            return "a tuning record without best_lr"
    elif not isinstance(result.get("games"), list) or not all(isinstance(g, dict) for g in result["games"]):
        return "a record without its games"
    return None


def read_results(path: str | Path) -> ResultsLog:
    """The intact records of the results file ``path`` and the lines skipped, with why. Reads only: the file is
    left as it is."""
    path = Path(path)
    if not path.exists():
        return ResultsLog({}, [])
    data = path.read_bytes()
    records: dict[str, dict[str, Any]] = {}
    first: dict[str, int] = {}
    skipped: list[SkippedLine] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            skipped.append(SkippedLine(number, "blank line", text))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            skipped.append(SkippedLine(number, "not JSON (a note, or a write cut off)", text))
            continue
        problem = _record_problem(record)
        if problem is None and record["key"] in first:
            problem = f"repeats the key of line {first[record['key']]}"
        if problem is not None:
            skipped.append(SkippedLine(number, problem, text))
            continue
        records[record["key"]] = record
        first[record["key"]] = number
    return ResultsLog(records, skipped, ends_with_newline=not data or data.endswith(b"\n"))


def load_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """The intact records of the results file ``path`` by key (:func:`read_results` says which lines it skipped)."""
    return read_results(path).records


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _rewrite_in_order(path: Path, plan: list[MatchSpec], log: ResultsLog) -> None:
    """Replace ``path`` (atomically) by every record of ``log``: the plan's first, in its order, then any others
    (from another configuration); the skipped lines that held anything are kept in ``results.skipped``."""
    kept = [s.text + "\n" for s in log.skipped if s.text.strip()]
    if kept:
        _append(path.with_name(SKIPPED), "".join(kept))
    keys = [s.key for s in plan]
    planned = set(keys)
    extra = [k for k in log.records if k not in planned]
    write_atomic(path, "".join(canonical(log.records[k]) + "\n" for k in keys + extra))


# -------------------------------------------------------------------------------------- backends
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


class Executor:
    """A backend held open for a whole run (one process pool, one Ray session), playing batches of matches.

    Use as a context manager; :meth:`map` yields each record as its match finishes (in any order).
    """

    def __init__(
        self, backend: Backend = "local", *, workers: int | None = None, address: str | None = None,
        max_retries: int = 3,
    ) -> None:  # fmt: skip
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1 or None (one per CPU), got {workers!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if address is not None and backend != "ray":
            raise ValueError("address applies to the ray backend only")
        self.backend, self.workers, self.address, self.max_retries = backend, workers, address, max_retries
        self._pool: Any = None
        self._ray_started = False
        self._remote: Any = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut down what this executor started (never a Ray it did not start)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    def map(self, specs: list[MatchSpec]) -> Iterator[dict[str, Any]]:
        """Play ``specs``; yield each record as its match finishes."""
        if not specs:
            return
        if self.backend == "local":
            for spec in specs:
                yield run_match(spec)
        elif self.backend == "process":
            yield from self._process(specs)
        else:
            yield from self._ray(specs)

    def _process(self, specs: list[MatchSpec]) -> Iterator[dict[str, Any]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if self._pool is None:
            count = self.workers or os.cpu_count() or 1
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=count, mp_context=ctx, initializer=_init_worker)
        pending = {self._pool.submit(run_match, s) for s in specs}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def _ray(self, specs: list[MatchSpec]) -> Iterator[dict[str, Any]]:
        try:
            import ray
        except ImportError:
            raise ImportError("the ray backend needs Ray: pip install 'mtg-env[bench]' (ray>=2.60)") from None
        if not ray.is_initialized():
            # Only what this executor starts is shut down by it (never `ray stop`: it stops every cluster).
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None and self.workers is not None:
                kwargs["num_cpus"] = self.workers
            ray.init(address=self.address, **kwargs)
            self._ray_started = True
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(_ray_match)
        refs = [self._remote.remote(s) for s in specs]
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            yield ray.get(done[0])


def execute(
    specs: list[MatchSpec],
    backend: Backend = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    max_retries: int = 3,
) -> Iterator[dict[str, Any]]:
    """Play ``specs`` on ``backend`` (a one-off :class:`Executor`); yields each record as its match finishes."""
    with Executor(backend, workers=workers, address=address, max_retries=max_retries) as ex:
        yield from ex.map(specs)


def _ray_match(spec: MatchSpec) -> dict[str, Any]:
    _init_worker()
    return run_match(spec)


# -------------------------------------------------------------------------------------------- runs
def _phase(
    specs: list[MatchSpec],
    records: dict[str, dict[str, Any]],
    path: Path,
    executor: Executor,
    progress: bool,
    desc: str,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    todo = [s for s in specs if s.key not in records]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc=desc, unit="match", file=sys.stderr)
    try:
        for record in executor.map(todo):
            records[record["key"]] = record
            _append(path, canonical(record) + "\n")
            if on_record is not None:
                on_record(record)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def run_bench(
    config: BenchConfig,
    out: str | Path,
    backend: Backend = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    max_retries: int = 3,
    progress: bool = False,
    report: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``config`` into the directory ``out``; returns the summary the report is built from.

    Args:
        config: The benchmark.
        out: Its directory (``results.jsonl``, ``leaderboard.md/csv/json``, figures).
        backend: ``local``, ``process`` or ``ray``.
        workers: Processes (``process``) or CPUs (a local Ray); default one per CPU.
        address: A Ray cluster's address (default: a local Ray).
        max_retries: Ray's retries of a task whose worker or node died.
        progress: A progress bar over matches on stderr.
        report: Write the leaderboard and figures at the end.
        on_record: Called with every record as it is written (tests interrupt a run with it).

    Returns:
        The summary (what ``leaderboard.json`` holds) and ``skipped_lines``: the lines of ``results.jsonl`` that
        were not intact records, each ``{"line", "reason"}`` (their matches were played again).

    Raises:
        ValueError, TypeError: from :meth:`BenchConfig.check`, before anything is written.
    """
    config.check()  # the whole config, before the output folder is touched or a match is played
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    log = read_results(path)
    if not log.ends_with_newline:  # a write cut off mid-line: the next record starts on a line of its own
        _append(path, "\n")
    records = log.records
    tuning = tuning_matches(config)
    with Executor(backend, workers=workers, address=address, max_retries=max_retries) as executor:
        _phase(tuning, records, path, executor, progress, "tuning", on_record)
        best = {(s.policy, s.workload.name): float(records[s.key]["result"]["best_lr"]) for s in tuning}
        plays = play_matches(config, best)
        _phase(plays, records, path, executor, progress, "matches", on_record)
    _rewrite_in_order(path, tuning + plays, log)
    ordered = [records[s.key] for s in tuning + plays]
    from mtg_env.bench.report import summarize, write_report

    summary = summarize(config, ordered)
    if report:
        write_report(config, summary, out)
    # Not part of the report (a resumed run's leaderboard is the uninterrupted run's): what the resume skipped.
    summary["skipped_lines"] = [{"line": s.line, "reason": s.reason} for s in log.skipped]
    return summary


def iter_records(path: str | Path) -> Iterable[dict[str, Any]]:
    """The records of a results file, in order."""
    return load_records(Path(path)).values()
