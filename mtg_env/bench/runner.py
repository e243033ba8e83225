"""Run a benchmark: plan its matches, play them on a backend, stream the records to disk, resume.

Backends: ``local`` (this process), ``process`` (a pool of spawned processes) and ``ray`` (Ray tasks, retried
when a node dies; ``ray.init()`` locally unless an address is given or Ray is already initialised). Every
match is a pure function of its spec, so the backends give identical records. Each finished match is
appended to ``DIR/results.jsonl`` and flushed at once; a re-run skips the matches already there (a partial
last line, from an interrupted write, is dropped and its match redone). At the end the file is rewritten in
the plan's order, so an interrupted-and-resumed run leaves the same file as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from mtg_env.bench.match import MatchSpec, canonical, run_match
from mtg_env.bench.spec import SELFISH, BenchConfig

Backend = Literal["local", "process", "ray"]
BACKENDS: tuple[str, ...] = ("local", "process", "ray")
RESULTS = "results.jsonl"


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
            gap = config.nash_gap == "all" or (config.nash_gap == "exact" and _exact_gap(w.suite))
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
                dev_lr = ref_lr if d == SELFISH else best[(d, w.name)]
                count = _num_tasks(w.suite, dict(w.suite_options))
                for m in range(count):
                    lineup = tuple(dev if k == m else ref for k in range(count))
                    lrs = tuple(dev_lr if k == m else ref_lr for k in range(count))
                    specs.append(MatchSpec("mixed", w, lineup, seeds, lrs, policy=d, task=m))
    return specs


def _exact_gap(suite: str) -> bool:
    from mtg_env.suites import SUITES

    return bool(getattr(SUITES[suite], "exact_best_response", False))


_TASKS: dict[tuple[str, str], int] = {}


def _num_tasks(suite: str, options: dict[str, Any]) -> int:
    key = (suite, canonical(options))
    if key not in _TASKS:
        from mtg_env.suites import make_suite

        _TASKS[key] = make_suite(suite, **options).num_tasks
    return _TASKS[key]


# ------------------------------------------------------------------------------------- the results
def load_records(path: Path) -> dict[str, dict[str, Any]]:
    """The finished matches of ``path`` by key. A line that does not parse (an interrupted write) and every
    line after it are dropped, and the file is truncated to its valid part so appends continue cleanly."""
    if not path.exists():
        return {}
    records: dict[str, dict[str, Any]] = {}
    valid = 0
    with path.open("rb") as f:
        data = f.read()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict) or "key" not in record:
            break
        records.setdefault(record["key"], record)
        valid += len(line)
    if valid != len(data):
        with path.open("r+b") as f:
            f.truncate(valid)
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(canonical(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _rewrite_in_order(path: Path, plan: list[MatchSpec], records: dict[str, dict[str, Any]]) -> None:
    keys = [s.key for s in plan]
    extra = [k for k in records if k not in set(keys)]
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for k in keys + extra:
            f.write(canonical(records[k]) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
            _append(path, record)
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

    Raises:
        ValueError, TypeError: from :meth:`BenchConfig.check`, before anything is written.
    """
    config.check()  # the whole config, before the output folder is touched or a match is played
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    records = load_records(path)
    tuning = tuning_matches(config)
    with Executor(backend, workers=workers, address=address, max_retries=max_retries) as executor:
        _phase(tuning, records, path, executor, progress, "tuning", on_record)
        best = {(s.policy, s.workload.name): float(records[s.key]["result"]["best_lr"]) for s in tuning}
        plays = play_matches(config, best)
        _phase(plays, records, path, executor, progress, "matches", on_record)
    _rewrite_in_order(path, tuning + plays, records)
    ordered = [records[s.key] for s in tuning + plays]
    from mtg_env.bench.report import summarize, write_report

    summary = summarize(config, ordered)
    if report:
        write_report(config, summary, out)
    return summary


def iter_records(path: str | Path) -> Iterable[dict[str, Any]]:
    """The records of a results file, in order."""
    return load_records(Path(path)).values()
