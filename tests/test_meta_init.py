"""Meta-training from a rule file (``MetaTrainConfig.init``, ``mtg-env meta-train --init``): fine-tuning starts at the
file's trained parameters and options, keeps the file as ``best.pt`` until an iteration beats it on held-out draws,
and refuses a file it cannot start from, naming it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from agents.learned.checkpoint import WEIGHTS_DIR, load_rule
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
