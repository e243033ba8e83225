"""Meta-hyper-parameter sweeps of meta-training on Ray Tune: ``mtg-env meta-train --sweep CONFIG``.

A sweep file (TOML) has three tables::

    [meta_train]            # the run every trial starts from: MetaTrainConfig's fields
    agent = "learned_mlp"
    suite = "quadratic"
    iterations = 40
    val_every = 10

    [search]                # the fields a trial draws: grid, choice, uniform, loguniform, randint
    meta_lr = {loguniform = [1e-4, 1e-2]}
    truncation = {choice = [5, 10, 20]}
    late_weight = {grid = [0.0, 1.0]}

    [sweep]                 # how Tune runs them (every key optional)
    scheduler = "asha"      # or "fifo" (no early stopping)
    num_samples = 8         # draws of the random domains (default 1; a grid runs in full for each draw)
    seed = 0                # decides the draws (Tune's BasicVariantGenerator, no global RNG)
    cpus_per_trial = 1
    gpus_per_trial = 0      # > 0 needs meta_train.device = "cuda"
    max_failures = 2        # a trial whose worker dies restarts from its last checkpoint this many times
    grace_period = 1        # ASHA: reports before a trial can be stopped
    reduction_factor = 3    # ASHA

Each trial is one :func:`~agents.learned.train.meta_train` run of ``[meta_train]`` with the drawn values, played
in chunks of ``val_every`` iterations: after each chunk it reports the chunk's held-out meta-loss (``val_loss``,
the metric ASHA cuts on, lower is better) and its best so far (``best_val``), with a Tune checkpoint holding the
run's ``last.pt``, ``best.pt`` and ``log.csv``. A trial restarted after its worker died (a killed process, a lost
node) resumes from that checkpoint; meta-training resumes exactly (every draw is a function of the seed and the
iteration), so it ends where an uninterrupted trial ends. Every trial uses the base run's ``seed``: the trials
play the same games, so their scores differ by the meta-hyper-parameters alone (common random numbers).

``run_sweep`` writes ``OUT/tune/`` (Tune's experiment: every trial's checkpoints and results), ``OUT/best.pt``
(the weights of the trial with the lowest ``best_val``, where ``--weights`` takes them) and ``OUT/sweep.json``
(every trial's values, scores, iterations and error). ``resume=True`` continues a sweep that stopped (Tune's
``Tuner.restore``, errored trials resumed); an ``OUT`` that holds a sweep is otherwise refused, so nothing is
overwritten. Locally Ray starts itself (``ray.init()``); ``address`` joins a cluster (``ray.init(address=...)``),
whose nodes must all reach ``OUT`` (a shared file system) or use a storage URI Tune accepts.

Needs ``pip install 'mtg-env[tune]'`` (Ray Tune).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import tomllib

from agents.learned.meta_config import _config_dict
from agents.learned.train import MetaTrainConfig, meta_train
from mtg_env._io import dump_json

#: Search domains a ``[search]`` entry may use, with how many values each takes.
DOMAINS: dict[str, str] = {
    "grid": "a list of values, every one tried",
    "choice": "a list of values, one drawn per sample",
    "uniform": "[low, high], a float drawn uniformly",
    "loguniform": "[low, high] with 0 < low < high, a float drawn log-uniformly",
    "randint": "[low, high), an int drawn uniformly",
}
#: MetaTrainConfig fields a trial may not draw: the sweep fixes them (iterations and the budget shape the chunks and
#: the determinism; the device is the trial's resources).
FIXED_FIELDS = ("iterations", "budget_s", "device")
#: The directory under ``OUT`` that holds Tune's experiment.
TUNE_DIR = "tune"
EXPERIMENT = "sweep"
#: Files of a meta-training run a trial's checkpoint carries (``meta_loss.png`` is redrawn on resume).
RUN_FILES = ("last.pt", "best.pt", "log.csv")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the base run, the search space, and how Tune runs the trials (see the module docstring)."""

    base: MetaTrainConfig
    search: dict[str, dict[str, list[Any]]]
    scheduler: Literal["asha", "fifo"] = "asha"
    num_samples: int = 1
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    grace_period: int = 1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if self.scheduler not in ("asha", "fifo"):
            raise ValueError(f"[sweep] scheduler must be 'asha' or 'fifo', got {self.scheduler!r}")
        for name in ("num_samples", "grace_period", "reduction_factor"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (2 if name == "reduction_factor" else 1)
            ):
                low = 2 if name == "reduction_factor" else 1
                raise ValueError(f"[sweep] {name} must be an int >= {low}, got {value!r}")
        for name in ("seed", "max_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"[sweep] {name} must be an int >= 0, got {value!r}")
        for name in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, name)
            floor = 0.0 if name == "gpus_per_trial" else 1e-9
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not floor <= value < math.inf:
                raise ValueError(f"[sweep] {name} must be a finite number >= {floor:g}, got {value!r}")
        if self.gpus_per_trial > 0 and not self.base.device.startswith("cuda"):
            raise ValueError(
                f"[sweep] gpus_per_trial = {self.gpus_per_trial} needs [meta_train] device = 'cuda' (it is "
                f"{self.base.device!r}); or set gpus_per_trial = 0"
            )
        if not self.search:
            raise ValueError("[search] is empty: name at least one MetaTrainConfig field to search")
        for name, domain in self.search.items():
            check_domain(name, domain, self.base)

    @property
    def rungs(self) -> int:
        """Reports per trial: one per ``val_every`` chunk of the base run's iterations."""
        return math.ceil(self.base.iterations / self.base.val_every)


def check_domain(name: str, domain: Any, base: MetaTrainConfig) -> None:
    """Refuse a ``[search]`` entry naming what is wrong: the field, the domain, a value the field refuses."""
    names = {f.name for f in fields(MetaTrainConfig)}
    if name not in names:
        raise ValueError(f"[search] {name}: not a MetaTrainConfig field; fields: {sorted(names - set(FIXED_FIELDS))}")
    if name in FIXED_FIELDS:
        raise ValueError(f"[search] {name}: the sweep fixes it; set it in [meta_train]")
    if not isinstance(domain, dict) or len(domain) != 1 or next(iter(domain)) not in DOMAINS:
        hint = "; ".join(f"{{{k} = ...}}: {v}" for k, v in DOMAINS.items())
        raise ValueError(f"[search] {name}: expected one domain as a table, got {domain!r} ({hint})")
    ((kind, values),) = domain.items()
    if not isinstance(values, list) or not values:
        raise ValueError(f"[search] {name}: {kind} needs {DOMAINS[kind]}, got {values!r}")
    if kind in ("uniform", "loguniform", "randint"):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if len(values) != 2 or not numeric or not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
            raise ValueError(f"[search] {name}: {kind} needs {DOMAINS[kind]}, got {values!r}")
        if kind == "randint" and not all(isinstance(v, int) for v in values):
            raise ValueError(f"[search] {name}: randint needs int bounds, got {values!r}")
        probes = [values[0], values[1] - 1] if kind == "randint" else list(values)
    else:
        probes = values
    for value in probes:  # every value the field can take here must be one the run accepts
        try:
            replace(base, **{name: _cast(name, value)})
        except (TypeError, ValueError) as err:
            raise ValueError(f"[search] {name}: the value {value!r} is refused by the run: {err}") from None


def _cast(name: str, value: Any) -> Any:
    """TOML lists as the tuples MetaTrainConfig holds (``horizons``, ``trunk_search``, ``head_search``)."""
    return tuple(value) if name in ("horizons", "trunk_search", "head_search") and isinstance(value, list) else value


def base_config(table: dict[str, Any]) -> MetaTrainConfig:
    """``[meta_train]`` as a MetaTrainConfig (an unknown key is refused, naming the fields)."""
    names = {f.name for f in fields(MetaTrainConfig)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ValueError(f"[meta_train] has no field(s) {unknown}; fields: {sorted(names)}")
    if table.get("budget_s") is not None:
        raise ValueError("[meta_train] budget_s: a sweep's trials run a fixed number of iterations (budget_s = none)")
    init = table.get("init")
    if isinstance(init, str) and not Path(init).is_absolute():  # a trial runs in Tune's own folder, not this one
        raise ValueError(
            f"[meta_train] init: {init!r} is a relative path, and each trial runs in its own folder: give the file's "
            f"absolute path (here: {str(Path(init).resolve())!r})"
        )
    return MetaTrainConfig(**{k: _cast(k, v) for k, v in table.items()})


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and check a sweep file (TOML); nothing runs."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"sweep file {path}: cannot read it ({err})") from None
    unknown = sorted(set(data) - {"meta_train", "search", "sweep"})
    if unknown:
        raise ValueError(f"sweep file {path}: unknown table(s) {unknown}; expected [meta_train], [search], [sweep]")
    sweep = data.get("sweep", {})
    allowed = {f.name for f in fields(SweepConfig)} - {"base", "search"}
    bad = sorted(set(sweep) - allowed)
    if bad:
        raise ValueError(f"sweep file {path}: [sweep] has no key(s) {bad}; keys: {sorted(allowed)}")
    try:
        return SweepConfig(base=base_config(data.get("meta_train", {})), search=data.get("search", {}), **sweep)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sweep file {path}: {err}") from None


def param_space(config: SweepConfig) -> dict[str, Any]:
    """The search space in Tune's domains."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, domain in config.search.items():
        ((kind, values),) = domain.items()
        if kind == "grid":
            space[name] = tune.grid_search(values)
        elif kind == "choice":
            space[name] = tune.choice(values)
        else:
            space[name] = getattr(tune, kind)(*values)
    return space


def _trial(params: dict[str, Any], base: MetaTrainConfig) -> None:
    """One trial: meta-train ``base`` with ``params`` in ``val_every`` chunks, a report and checkpoint after each."""
    from ray import tune

    config = replace(base, **{k: _cast(k, v) for k, v in params.items()})
    trial_dir = Path(tune.get_context().get_trial_dir())
    work = trial_dir / "meta"
    # Where this trial's worker runs (host, pid): what to look at, or stop, on a cluster.
    dump_json(trial_dir / "worker.json", {"host": socket.gethostname(), "pid": os.getpid()})
    if work.exists():
        shutil.rmtree(work)  # files of a worker that died after its last checkpoint: the checkpoint is the truth
    work.mkdir(parents=True)
    done = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as saved:
            for name in RUN_FILES:
                if (Path(saved) / name).is_file():
                    shutil.copy2(Path(saved) / name, work / name)
            done = json.loads((Path(saved) / "progress.json").read_text())["iteration"]
    while done < config.iterations:
        stop = min(done + config.val_every, config.iterations)
        result = meta_train(config, out=work, resume=done > 0, stop_after=stop)
        done = stop
        validated = [row["val_loss"] for row in result.rows if not math.isnan(row["val_loss"])]
        metrics = {
            "val_loss": validated[-1] if validated else math.inf,
            "best_val": result.best_val,
            "best_iteration": result.best_iteration,
            "iteration": done,
            "skipped_steps": result.skipped_steps,
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name in RUN_FILES:
                if (work / name).is_file():
                    shutil.copy2(work / name, Path(tmp) / name)
            (Path(tmp) / "progress.json").write_text(json.dumps({"iteration": done}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did: every trial's record (as in ``sweep.json``), the best one, and where it wrote."""

    trials: list[dict[str, Any]]
    best: dict[str, Any]
    out: Path

    @property
    def weights(self) -> Path:
        """The best trial's ``best.pt``, copied to ``OUT/best.pt``."""
        return self.out / "best.pt"


def run_sweep(
    config: SweepConfig, out: str | Path, address: str | None = None, resume: bool = False, verbose: int = 0
) -> SweepResult:
    """Run the sweep (see the module docstring) and write ``OUT/best.pt`` and ``OUT/sweep.json``.

    Args:
        config: The sweep (:func:`load_sweep`).
        out: Output directory: new or empty, or this sweep's own with ``resume``.
        address: A Ray cluster to join (``ray.init(address=...)``); ``None``: the Ray already running in this
            process, else a local one (started here and shut down at the end).
        resume: Continue the sweep in ``out`` (unfinished and errored trials resume from their checkpoints).
        verbose: Tune's console verbosity (0: silent).

    Raises:
        FileExistsError: ``out`` holds files and ``resume`` is not set (nothing in it is touched).
        FileNotFoundError: ``resume`` is set and ``out`` holds no sweep.
        RuntimeError: no trial finished (each trial's error is in ``OUT/sweep.json``).
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    out = Path(out).resolve()
    experiment = out / TUNE_DIR / EXPERIMENT
    if resume and not experiment.is_dir():
        raise FileNotFoundError(f"resume needs a sweep in {out} ({experiment} is missing)")
    if not resume and out.is_dir() and any(out.iterdir()):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise FileExistsError(f"{out} is not empty (it holds {held}); pass resume to continue its sweep, or a new out")
    out.mkdir(parents=True, exist_ok=True)
    started = False
    if address is not None:
        ray.init(address=address)
        started = True
    elif not ray.is_initialized():
        ray.init()
        started = True
    try:
        resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
        trainable = tune.with_resources(tune.with_parameters(_trial, base=config.base), resources)
        if resume:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
        else:
            scheduler = (
                ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=config.rungs,
                    grace_period=min(config.grace_period, config.rungs),
                    reduction_factor=config.reduction_factor,
                )
                if config.scheduler == "asha"
                else FIFOScheduler()
            )
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(config),
                tune_config=tune.TuneConfig(
                    metric="val_loss",
                    mode="min",
                    scheduler=scheduler,
                    num_samples=config.num_samples,
                    search_alg=BasicVariantGenerator(random_state=config.seed),
                ),
                run_config=tune.RunConfig(
                    name=EXPERIMENT,
                    storage_path=str(out / TUNE_DIR),
                    failure_config=tune.FailureConfig(max_failures=config.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    verbose=verbose,
                ),
            )
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    trials = []
    for index in range(len(grid)):
        result = grid[index]
        metrics = result.metrics or {}
        trials.append({
            "params": {k: v for k, v in (result.config or {}).items()},
            "best_val": metrics.get("best_val", math.inf),
            "val_loss": metrics.get("val_loss", math.inf),
            "iterations": metrics.get("iteration", 0),
            "error": None if result.error is None else f"{type(result.error).__name__}: {result.error}",
            "path": result.path,
            "checkpoint": None if result.checkpoint is None else result.checkpoint.path,
        })  # fmt: skip
    finished = [t for t in trials if t["checkpoint"] is not None and math.isfinite(t["best_val"])]
    summary = {"base": _config_dict(config.base), "search": config.search, "trials": trials}
    if not finished:
        dump_json(out / "sweep.json", {**summary, "best": None})
        raise RuntimeError(f"no trial of the sweep in {out} finished; their errors are in {out / 'sweep.json'}")
    best = min(finished, key=lambda t: t["best_val"])
    shutil.copy2(Path(best["checkpoint"]) / "best.pt", out / "best.pt.tmp")
    os.replace(out / "best.pt.tmp", out / "best.pt")
    dump_json(out / "sweep.json", {**summary, "best": best})
    return SweepResult(trials, best, out)
