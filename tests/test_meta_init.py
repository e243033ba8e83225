"""Meta-training from a rule file (``MetaTrainConfig.init``, ``mtg-env meta-train --init``): fine-tuning starts at the
file's trained parameters and options, keeps the file as ``best.pt`` until an iteration beats it on held-out draws,
and refuses a file it cannot start from, naming it."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from agents.learned.checkpoint import WEIGHTS_DIR, load_rule, read_rule, save_rule
from agents.learned.meta_loss import _STREAM_VALID, _draws, evaluate_rule
from agents.learned.train import MetaTrainConfig, meta_train
from mtg_env.cli.entry import main as cli_main

SHIPPED = WEIGHTS_DIR / "learned_mlp_quadratic.pt"


def _config(**kwargs: object) -> MetaTrainConfig:
    base = {"agent": "learned_mlp", "suite": "quadratic", "iterations": 1, "games": 2, "configs": 1,
            "horizons": (6,), "truncation": 3, "val_every": 1, "val_configs": 1, "val_games": 2,
            "dtype": "float64", "floor": "legacy"}  # fmt: skip
    return MetaTrainConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_run_from_a_file_starts_at_its_parameters_and_options(tmp_path: Path) -> None:
    _, shipped, _ = load_rule(SHIPPED)
    config = _config(init=str(SHIPPED))
    assert config.rule_options() == asdict(shipped.config)  # the file's options
    result = meta_train(config, out=tmp_path / "run", stop_after=0)  # stopped before its first iteration
    assert result.best_iteration == 0 and result.rows == []
    _, best, meta = load_rule(tmp_path / "run" / "best.pt")
    assert _same(best, shipped) and best.config == shipped.config
    assert meta["config"]["init"] == str(SHIPPED)
    # the file's held-out score is the run's best so far: what the run's own validation gives the file
    draws = _draws(config, 0, _STREAM_VALID, config.val_configs, config.val_games)
    trained = load_rule(SHIPPED)[1]
    training = type(trained)(type(trained.config)(**config.training_rule_options()))
    training.load_state_dict(trained.state_dict())
    assert result.best_val == evaluate_rule(training, config, draws, max(config.horizons))


def test_best_pt_is_the_file_unless_an_iteration_beats_it_on_held_out_draws(tmp_path: Path) -> None:
    plain = meta_train(_config(iterations=2), out=tmp_path / "plain")  # untrained start: the first iteration's
    assert plain.best_iteration >= 1
    run = meta_train(_config(init=str(SHIPPED), iterations=2), out=tmp_path / "tuned")
    vals = [row["val_loss"] for row in run.rows]
    _, best, _ = load_rule(tmp_path / "tuned" / "best.pt")
    if run.best_iteration == 0:  # no iteration beat the file: best.pt is the file, its score below every row's
        assert all(v >= run.best_val for v in vals) and _same(best, load_rule(SHIPPED)[1])
    else:
        assert run.best_val == min(vals) and not _same(best, load_rule(SHIPPED)[1])


def test_a_file_of_another_agent_or_none_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"init: .*holds a learned_mlp rule, and this run meta-trains learned_lstm"):
        _config(agent="learned_lstm", init=str(SHIPPED))
    with pytest.raises(ValueError, match=r"init: cannot start from '.*nothing\.pt'"):
        _config(init=str(tmp_path / "nothing.pt"))
    with pytest.raises(ValueError, match="init must be the path of a learned-rule file"):
        _config(init="")


def test_options_that_drop_a_trained_parameter_are_refused_naming_it(tmp_path: Path) -> None:
    config = _config(init=str(SHIPPED), rule={})  # the class's defaults: no trunk AMSGrad share, which the file has
    with pytest.raises(ValueError, match="trunk_adam_log_lr"):
        meta_train(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written


def test_the_cli_takes_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main([
        "meta-train", "--agent", "learned_mlp", "--suite", "quadratic", "--init", str(SHIPPED), "--iterations", "1",
        "--games", "2", "--configs", "1", "--horizons", "6", "--truncation", "3", "--val-every", "1",
        "--out", str(tmp_path / "cli"), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    assert load_rule(tmp_path / "cli" / "best.pt")[2]["config"]["init"] == str(SHIPPED)
    assert "cannot" not in capsys.readouterr().err


def test_a_run_from_a_file_resumes_exactly_and_only_from_the_same_file(tmp_path: Path) -> None:
    start = tmp_path / "start.pt"
    shutil.copyfile(SHIPPED, start)
    config = _config(init=str(start), iterations=2)
    whole = meta_train(config, out=tmp_path / "whole")
    meta_train(config, out=tmp_path / "cut", stop_after=1)
    resumed = meta_train(config, out=tmp_path / "cut", resume=True)
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.rows] for r in (resumed, whole)]
    assert timeless[0] == timeless[1] and resumed.best_iteration == whole.best_iteration
    assert _same(load_rule(tmp_path / "cut" / "best.pt")[1], load_rule(tmp_path / "whole" / "best.pt")[1])
    assert load_rule(tmp_path / "whole" / "best.pt")[2]["init_sha256"] == read_rule(start)[3]
    # another file at the same path: the run's options and start are not what it began with, so it is refused
    meta_train(config, out=tmp_path / "cut2", stop_after=1)
    agent, rule, meta = load_rule(start)
    rule.scale_trunk_step(2.0)
    save_rule(start, agent, rule, meta)
    before = (tmp_path / "cut2" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="is not the file this run started from"):
        meta_train(config, out=tmp_path / "cut2", resume=True)
    assert (tmp_path / "cut2" / "last.pt").read_bytes() == before  # nothing written


def test_a_checkpoint_from_before_init_resumes_as_a_run_from_an_untrained_rule(tmp_path: Path) -> None:
    config = _config(iterations=2)
    meta_train(config, out=tmp_path / "run", stop_after=1)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    del ckpt["config"]["init"], ckpt["init_sha256"]  # as the runs before this field wrote them
    torch.save(ckpt, tmp_path / "run" / "last.pt")
    assert meta_train(config, out=tmp_path / "run", resume=True).rows[-1]["iteration"] == 2
