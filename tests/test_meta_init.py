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
from tests.conftest import ROOT

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
    # meta-steps of 0.3 wreck the rule (held-out meta-loss -0.60 -> +1.26, +1.07): the file stays best.pt
    kept = meta_train(_config(init=str(SHIPPED), iterations=2, meta_lr=0.3), out=tmp_path / "kept")
    assert kept.best_iteration == 0 and all(row["val_loss"] > kept.best_val for row in kept.rows)
    assert _same(load_rule(tmp_path / "kept" / "best.pt")[1], load_rule(SHIPPED)[1])
    # the default meta-step improves it at the first iteration: best.pt is that iteration's rule
    run = meta_train(_config(init=str(SHIPPED), iterations=2), out=tmp_path / "tuned")
    assert run.best_iteration >= 1 and run.best_val == min(row["val_loss"] for row in run.rows)
    assert not _same(load_rule(tmp_path / "tuned" / "best.pt")[1], load_rule(SHIPPED)[1])


def test_the_file_is_scored_at_the_longest_horizon_by_the_runs_metric_and_once() -> None:
    config = _config(init=str(SHIPPED), horizons=(4, 6), val_metric="final")
    result = meta_train(config, stop_after=0)
    trained = load_rule(SHIPPED)[1]
    training = type(trained)(type(trained.config)(**config.training_rule_options()))
    training.load_state_dict(trained.state_dict())
    draws = _draws(config, 0, _STREAM_VALID, config.val_configs, config.val_games)
    assert result.best_val == evaluate_rule(training, config, draws, 6, final=True)


def test_a_resume_keeps_the_checkpoints_best(tmp_path: Path) -> None:
    config = _config(init=str(SHIPPED), iterations=3, meta_lr=0.3)
    first = meta_train(config, out=tmp_path, stop_after=1)
    again = meta_train(config, out=tmp_path, resume=True, stop_after=1)  # no new iteration, the file not scored again
    assert (again.best_iteration, again.best_val) == (first.best_iteration, first.best_val)


def test_it_trains_without_the_guard_and_plays_with_the_files(tmp_path: Path) -> None:
    config = _config(init=str(SHIPPED))
    assert config.rule_options()["guard"] is True and config.training_rule_options()["guard"] is False
    assert _config(init=str(SHIPPED), rule={**config.rule_options()}).training_rule_options()["guard"] is True
    assert _config(init=SHIPPED).init == str(SHIPPED)  # a path object, kept as its str


def test_a_file_of_another_agent_or_none_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"init: .*holds a learned_mlp rule, and this run meta-trains learned_lstm"):
        _config(agent="learned_lstm", init=str(SHIPPED))
    with pytest.raises(ValueError, match=r"init: cannot start from '.*nothing\.pt'"):
        _config(init=str(tmp_path / "nothing.pt"))
    with pytest.raises(ValueError, match="init must be the path of a learned-rule file"):
        _config(init="")


def test_options_that_change_the_trained_parameters_are_refused_naming_them() -> None:
    own = asdict(load_rule(SHIPPED)[1].config)
    assert _config(init=str(SHIPPED), rule=own).rule_options() == own  # the file's own options: accepted
    with pytest.raises(ValueError, match=r"rule: .*drop \['trunk_adam_log_lr'\], add \[\]"):
        _config(init=str(SHIPPED), rule={})  # the class's defaults: no trunk AMSGrad share, which the file has
    with pytest.raises(ValueError, match=r"rule: .*add \['move_net.0.bias'"):
        _config(init=str(SHIPPED), rule={**own, "trunk_reads_moves": True})
    with pytest.raises(ValueError, match=r"rule: .*reshape \['net.0.bias'"):
        _config(init=str(SHIPPED), rule={**own, "hidden": own["hidden"] + 1})


def test_the_cli_takes_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main([
        "meta-train", "--agent", "learned_mlp", "--suite", "quadratic", "--init", str(SHIPPED), "--iterations", "1",
        "--games", "2", "--configs", "1", "--horizons", "6", "--truncation", "3", "--val-every", "1",
        "--out", str(tmp_path / "cli"), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    assert load_rule(tmp_path / "cli" / "best.pt")[2]["config"]["init"] == str(SHIPPED)
    assert "meta-trained learned_mlp" in capsys.readouterr().out


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
    with pytest.raises(ValueError, match=r"init: .* is not the file this run started from"):
        meta_train(config, out=tmp_path / "cut2", resume=True)
    assert (tmp_path / "cut2" / "last.pt").read_bytes() == before  # nothing written


def test_a_checkpoint_from_before_init_resumes_as_a_run_from_an_untrained_rule(tmp_path: Path) -> None:
    config = _config(iterations=2)
    meta_train(config, out=tmp_path / "run", stop_after=1)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    del ckpt["config"]["init"], ckpt["init_sha256"]  # as the runs before this field wrote them
    torch.save(ckpt, tmp_path / "run" / "last.pt")
    assert meta_train(config, out=tmp_path / "run", resume=True).rows[-1]["iteration"] == 2


def test_a_sweep_refuses_a_relative_init_naming_the_absolute_path() -> None:
    from agents.learned.sweep import base_config

    relative = SHIPPED.relative_to(ROOT)
    with pytest.raises(ValueError, match=r"\[meta_train\] init: .*relative path.*give the file's absolute path"):
        base_config({"agent": "learned_mlp", "init": str(relative)})
    assert base_config({"agent": "learned_mlp", "init": str(SHIPPED)}).init == str(SHIPPED)
