"""Meta-training sweeps on Ray Tune (``agents.learned.sweep``, ``mtg-env meta-train --sweep``).

The file checks run everywhere (no Ray needed); the sweeps themselves are ``slow`` and need Ray Tune: CI runs them
in its Ray venv, on a simulated two-node cluster (``ray.cluster_utils.Cluster``), with one trial's worker killed
mid-run."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agents.learned.sweep import SweepConfig, base_config, load_sweep
from agents.learned.train import MetaTrainConfig, meta_train

#: A run small enough for a test: 4 iterations in 2 chunks of a tiny quadratic game.
TINY: dict[str, Any] = {
    "agent": "learned_mlp", "suite": "quadratic", "iterations": 4, "val_every": 2, "games": 2, "configs": 1,
    "horizons": [8], "truncation": 4, "val_configs": 1, "val_games": 2, "dtype": "float64",
}  # fmt: skip


def _toml(meta: dict[str, Any], search: str, sweep: str = "") -> str:
    def value(v: Any) -> str:
        return json.dumps(v)

    lines = ["[meta_train]", *(f"{k} = {value(v)}" for k, v in meta.items()), "", "[search]", search, ""]
    return "\n".join(lines + (["[sweep]", sweep] if sweep else []))


def _write(tmp_path: Path, search: str, sweep: str = "", meta: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(_toml(TINY if meta is None else meta, search, sweep))
    return path


def test_a_sweep_file_reads_into_a_checked_config(tmp_path: Path) -> None:
    config = load_sweep(_write(tmp_path, 'meta_lr = {loguniform = [1e-4, 1e-2]}\ntruncation = {choice = [2, 4]}',
                               'scheduler = "fifo"\nnum_samples = 3\nseed = 5'))  # fmt: skip
    assert config.base == MetaTrainConfig(**{**TINY, "horizons": (8,)})
    assert config.search == {"meta_lr": {"loguniform": [1e-4, 1e-2]}, "truncation": {"choice": [2, 4]}}
    assert (config.scheduler, config.num_samples, config.seed, config.rungs) == ("fifo", 3, 5, 2)


def test_a_sweep_searches_and_sets_the_floor(tmp_path: Path) -> None:
    """``floor`` is a MetaTrainConfig field like the others: ``[search]`` draws it, ``[meta_train]`` sets it."""
    config = load_sweep(_write(tmp_path, 'floor = {grid = ["true", "legacy"]}'))
    assert config.search == {"floor": {"grid": ["true", "legacy"]}} and config.base.floor == "legacy"
    config = load_sweep(_write(tmp_path, "meta_lr = {grid = [1e-3]}", meta={**TINY, "floor": "true"}))
    assert config.base.floor == "true"


@pytest.mark.parametrize(
    ("search", "sweep", "match"),
    [
        ("learning_rate = {grid = [0.1]}", "", r"\[search\] learning_rate: not a MetaTrainConfig field"),
        ("iterations = {grid = [2, 4]}", "", r"\[search\] iterations: the sweep fixes it"),
        ("meta_lr = {normal = [0, 1]}", "", r"\[search\] meta_lr: expected one domain"),
        ("meta_lr = {loguniform = [0, 1e-2]}", "", r"loguniform needs \[low, high\] with 0 < low < high"),
        ("meta_lr = {uniform = [1e-2, 1e-3]}", "", r"uniform needs \[low, high\]"),
        ("truncation = {randint = [1.5, 4]}", "", r"randint needs int bounds"),
        ("truncation = {choice = [4, 0]}", "", r"the value 0 is refused by the run: truncation must be an int >= 1"),
        ('floor = {choice = ["true", "exact"]}', "", r"the value 'exact' is refused by the run: floor must be one of"),
        ("method = {grid = []}", "", r"grid needs a list of values"),
        ("meta_lr = {grid = [1e-3]}", 'scheduler = "pbt"', r"scheduler must be 'asha' or 'fifo'"),
        ("meta_lr = {grid = [1e-3]}", "num_samples = 0", r"num_samples must be an int >= 1"),
        ("meta_lr = {grid = [1e-3]}", "gpus_per_trial = 1", r"gpus_per_trial = 1 needs \[meta_train\] device"),
        ("meta_lr = {grid = [1e-3]}", "workers = 2", r"\[sweep\] has no key\(s\) \['workers'\]"),
        ("", "", r"\[search\] is empty"),
    ],
)
def test_a_bad_sweep_file_is_refused_naming_the_entry(tmp_path: Path, search: str, sweep: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_sweep(_write(tmp_path, search, sweep))


def test_the_base_run_is_checked_as_meta_train_checks_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[meta_train\] has no field\(s\) \['lr'\]"):
        base_config({"lr": 0.1})
    with pytest.raises(ValueError, match="budget_s = none"):
        base_config({"budget_s": 60})
    with pytest.raises(ValueError, match=r"sweep file .*: agent must be one of"):
        load_sweep(_write(tmp_path, "meta_lr = {grid = [1e-3]}", meta={**TINY, "agent": "nope"}))
    with pytest.raises(ValueError, match=r"unknown table\(s\) \['train'\]"):
        (tmp_path / "bad.toml").write_text("[train]\nx = 1\n")
        load_sweep(tmp_path / "bad.toml")


# ------------------------------------------------------------------------------------------- the sweeps (Ray Tune)
def _cluster() -> Any:
    pytest.importorskip("ray.tune", reason="sweeps need Ray Tune: pip install 'mtg-env[tune]'")
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def _kill_first_worker_after_a_checkpoint(out: Path, killed: list[int], stop: threading.Event) -> None:
    """Kill (SIGKILL) the worker of the first trial that has written a checkpoint, once."""
    experiment = out / "tune" / "sweep"
    while not stop.is_set():
        for trial in sorted(experiment.glob("*/")) if experiment.is_dir() else []:
            worker = trial / "worker.json"
            if worker.is_file() and any(trial.glob("checkpoint_*")):
                pid = json.loads(worker.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_sweep_on_two_nodes_survives_a_killed_trial_and_writes_the_best_weights(tmp_path: Path) -> None:
    """Two trials on a simulated two-node cluster; one trial's worker is killed after its first checkpoint. Tune
    restarts it from that checkpoint and it ends exactly where the uninterrupted run ends (meta-training resumes
    exactly); OUT/best.pt holds the best trial's weights and loads as a learned agent's."""
    import ray

    from agents.learned import learned_agent
    from agents.learned.sweep import run_sweep

    config = load_sweep(
        _write(tmp_path, "meta_lr = {grid = [1e-3, 3e-3]}", 'scheduler = "fifo"\nmax_failures = 2\nnum_samples = 1')
    )
    out = tmp_path / "out"
    cluster = _cluster()
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_worker_after_a_checkpoint, args=(out, killed, stop), daemon=True)
    killer.start()
    try:
        result = run_sweep(config, out, address=cluster.address)
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
        cluster.shutdown()
    assert killed, "no trial was killed: the test did not exercise a restart"
    assert len(result.trials) == 2 and all(t["error"] is None for t in result.trials)
    assert all(t["iterations"] == TINY["iterations"] for t in result.trials)
    for trial in result.trials:  # killed or not, each trial equals the run played straight through
        alone = meta_train(replace_lr(config.base, trial["params"]["meta_lr"]))
        assert trial["best_val"] == alone.best_val
    assert result.best["best_val"] == min(t["best_val"] for t in result.trials)
    assert json.loads((out / "sweep.json").read_text())["best"]["params"] == result.best["params"]
    agent = learned_agent("learned_mlp", weights=result.weights)
    assert agent is not None


def replace_lr(base: MetaTrainConfig, lr: float) -> MetaTrainConfig:
    from dataclasses import replace

    return replace(base, meta_lr=lr)


@pytest.mark.slow
def test_a_sweep_is_never_overwritten_and_resumes(tmp_path: Path) -> None:
    """A second run into the same OUT is refused (nothing touched); ``resume`` continues the sweep: a finished one
    gives its trials back without training them again."""
    import ray

    from agents.learned.sweep import run_sweep

    config = load_sweep(_write(tmp_path, "truncation = {choice = [2, 4]}", "num_samples = 2\nseed = 3"))
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        first = run_sweep(config, out)
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        with pytest.raises(FileExistsError, match="is not empty"):
            run_sweep(config, out)
        assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        again = run_sweep(config, out, resume=True)
    finally:
        ray.shutdown()
    assert sorted(t["best_val"] for t in again.trials) == sorted(t["best_val"] for t in first.trials)
    assert all(math.isfinite(t["best_val"]) for t in again.trials)
    with pytest.raises(FileNotFoundError, match="resume needs a sweep"):
        run_sweep(config, tmp_path / "empty", resume=True)


def test_sweep_config_refuses_a_bad_value_in_code() -> None:
    base = MetaTrainConfig(**{**TINY, "horizons": (8,)})
    with pytest.raises(ValueError, match="reduction_factor must be an int >= 2"):
        SweepConfig(base=base, search={"meta_lr": {"grid": [1e-3]}}, reduction_factor=1)


def test_the_shipped_example_sweep_reads() -> None:
    config = load_sweep(Path(__file__).resolve().parents[1] / "examples" / "sweep_meta_train.toml")
    assert (config.scheduler, config.rungs, sorted(config.search)) == (
        "asha",
        6,
        ["late_weight", "meta_lr", "truncation"],
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "meta-train needs --agent"),
        (["--sweep", "SWEEP", "--iterations", "5", "--meta-lr", "0.1"], "drop --iterations, --meta-lr"),
        (["--sweep", "SWEEP", "--floor", "true"], "drop --floor"),
        (["--agent", "learned_mlp", "--address", "127.0.0.1:6379"], "--address goes with --sweep"),
        (["--sweep", "MISSING"], "cannot read it"),
    ],
)
def test_the_cli_refuses_a_sweep_it_cannot_run_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """``mtg-env meta-train --sweep``: a run flag beside the file, ``--address`` without a sweep, a missing file:
    exit 2 with one line naming it, and nothing written."""
    from mtg_env.cli import main

    sweep = _write(tmp_path, "meta_lr = {grid = [1e-3]}")
    args = [str(sweep) if a == "SWEEP" else str(tmp_path / "nope.toml") if a == "MISSING" else a for a in args]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["meta-train", *args, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
