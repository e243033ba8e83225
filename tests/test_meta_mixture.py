"""Meta-training on a mixture of game families and consensus rules (the generalist's training), and user families
(:class:`agents.learned.family.Family`: a ModuleSuite of the user's model as a family of games)."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.learned import learned_agent
from agents.learned.checkpoint import load_rule
from agents.learned.family import (
    Family,
    build_suite,
    get_family,
    register_family,
    sample_config,
    true_loss_floor,
    unregister_family,
)
from agents.learned.meta_loss import _STREAM_GAMES, _STREAM_VALID, _draws, _game, evaluate_rule
from agents.learned.train import MetaTrainConfig, meta_train
from mtg_env.consensus import rule_name

MIX = ("quadratic", "regression", "digits")


def tiny(**overrides: object) -> MetaTrainConfig:
    fields: dict[str, object] = dict(agent="learned_mlp", suite=("quadratic", "regression"), iterations=2, games=2,
                                     configs=2, horizons=(4,), truncation=2, val_every=1, val_configs=2, val_games=1,
                                     floor="true", dtype="auto")  # fmt: skip
    fields.update(overrides)
    return MetaTrainConfig(**fields)  # type: ignore[arg-type]


def test_every_family_and_rule_pair_is_played_in_turn() -> None:
    """Draw i of iteration k plays family (k·configs + i) mod n and rule ((k·configs + i) // n) mod r: over n·r
    slots every (family, rule) pair once, whatever configs is."""
    config = MetaTrainConfig(suite=MIX, consensus=("sum", "mean"), configs=4)
    slots = [(k, i) for k in range(3) for i in range(4)][:6]
    pairs = [config.draw_plan(k, i) for k, i in slots]
    assert sorted(pairs) == sorted((f, r) for f in MIX for r in ("sum", "mean"))
    draws = _draws(config, 1, _STREAM_GAMES, 4, 2)
    assert [(d.suite, d.consensus) for d in draws] == [config.draw_plan(1, i) for i in range(4)]
    # each draw's options are its own family's: a quadratic draw has a condition, a regression draw a data seed
    for d in draws:
        assert set(d.options) == set(sample_config(d.suite, np.random.default_rng(0)))


def test_one_family_draws_as_before_mixtures() -> None:
    """A one-family run's draws are the stream's as they were (options, then seeds, from one generator): the
    shipped weights' runs (scripts/train_weights.py) draw the same games."""
    config = MetaTrainConfig(suite="regression", configs=3)
    rng = np.random.default_rng([config.seed, _STREAM_GAMES, 5])
    expected = []
    for _ in range(3):
        options = sample_config("regression", rng)
        expected.append((options, [int(s) for s in rng.integers(0, 2**39, size=8)]))
    got = _draws(config, 5, _STREAM_GAMES, 3, 8)
    assert [(d.options, d.seeds) for d in got] == expected
    assert {(d.suite, d.consensus) for d in got} == {("regression", "sum")}
    # a list (TOML) or a one-member tuple is the same config as the name
    assert MetaTrainConfig(suite=["regression"]) == MetaTrainConfig(suite="regression")  # type: ignore[arg-type]
    assert MetaTrainConfig(suite=["quadratic", "digits"]).suite == ("quadratic", "digits")  # type: ignore[arg-type]


def test_auto_dtype_plays_each_family_in_its_own_precision() -> None:
    config = tiny(consensus=("sum", "mgda"))
    dtypes = {}
    for options, _, family, consensus in _draws(config, 0, _STREAM_VALID, 4, 1):
        game, _, _ = _game(config, options, 4, family, consensus)
        dtypes[family] = game.suite.dtype
        assert rule_name(game.consensus) == consensus
    assert dtypes == {"quadratic": torch.float64, "regression": torch.float32}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"suite": ("quadratic", "toy2d")}, "suite: no game family 'toy2d'; available: ['digits', 'quadratic', 'regr"),
        ({"suite": ("quadratic", "quadratic")}, "suite lists a family twice"),
        ({"consensus": ("sum", "upgrad")}, "consensus 'upgrad' is not differentiable, and method 'tbptt'"),
        ({"consensus": ("sum", "average")}, "consensus must name rules of"),
        ({"consensus": ("sum", "sum")}, "consensus lists a rule twice"),
        ({"dtype": "float16"}, "dtype must be 'float32', 'float64' or 'auto'"),
        ({"suite": "no_such_module_xyz:FAMILY"}, "cannot import game family 'no_such_module_xyz:FAMILY'"),
        ({"suite": "numpy:pi"}, "'numpy:pi' is a float, not an agents.learned.family.Family"),
    ],
)
def test_bad_mixtures_are_refused_naming_the_member(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        tiny(**overrides)
    assert message in str(err.value)


def test_es_takes_a_non_differentiable_rule_in_the_mixture() -> None:
    config = tiny(method="es", es_pairs=1, consensus=("sum", "upgrad"), iterations=1, configs=2)
    assert {config.draw_plan(0, i)[1] for i in range(4)} == {"sum", "upgrad"}
    result = meta_train(config)
    assert np.isfinite(result.best_val)


def test_a_mixture_run_writes_a_rule_that_plays_every_family_and_resumes_exactly(tmp_path: Path) -> None:
    config = tiny(suite=MIX, consensus=("sum", "mean", "mgda"), iterations=3, configs=3, val_configs=3)
    whole = meta_train(config, out=tmp_path / "whole")
    meta_train(config, out=tmp_path / "split", stop_after=1)
    resumed = meta_train(config, out=tmp_path / "split", resume=True)
    assert resumed.best_val == whole.best_val
    for key, value in whole.rule.state_dict().items():
        assert torch.equal(value, resumed.rule.state_dict()[key]), key
    name, rule, meta = load_rule(tmp_path / "whole" / "best.pt")
    assert name == "learned_mlp" and meta["config"]["suite"] == list(MIX)
    assert meta["config"]["consensus"] == ["sum", "mean", "mgda"]
    # the file plays any family without allow_other_suite (it names no single suite)
    for family in MIX:
        agent = learned_agent("learned_mlp", suite=family, weights=tmp_path / "whole" / "best.pt")
        assert agent.rule.config == rule.config


USER_FAMILY = textwrap.dedent(
    """
    import torch
    from torch import nn

    from agents.learned.family import Family
    from mtg_env.suites import ModuleSuite


    def sample(rng, shifted):
        return {"width": int(rng.integers(3, 6)), "data_seed": int(rng.integers(0, 2**31))}


    def build(width, data_seed, dtype="float32", device="cpu"):
        gen = torch.Generator().manual_seed(data_seed)
        x = torch.randn(32, 4, generator=gen)
        ys = {"a": x @ torch.randn(4, 1, generator=gen), "b": x @ torch.randn(4, 1, generator=gen)}
        trunk = nn.Sequential(nn.Linear(4, width), nn.Tanh())
        heads = {t: nn.Linear(width, 1) for t in ys}
        losses = {t: nn.functional.mse_loss for t in ys}
        return ModuleSuite(trunk, heads, losses, (x, ys), dtype=dtype, device=device)


    FAMILY = Family("mine", sample, build, loss_lower_bound=0.0)
    """
)


def test_a_user_family_of_module_suites_trains_in_the_mixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ModuleSuite family named by import path trains beside the built-in ones (the path resolves in any process,
    a Ray worker's too), measured from its family's lower bound; registered by name it is the same family."""
    (tmp_path / "my_family.py").write_text(USER_FAMILY)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tiny(suite=("regression", "my_family:FAMILY"), iterations=2)
    families = {d.suite for d in _draws(config, 0, _STREAM_GAMES, 2, 1)}
    assert families == {"regression", "my_family:FAMILY"}
    suite = build_suite("my_family:FAMILY", {"width": 3, "data_seed": 1})
    assert suite.trunk_size == 4 * 3 + 3
    assert true_loss_floor(suite, get_family("my_family:FAMILY").loss_lower_bound).value == 0.0
    with pytest.raises(ValueError, match="give its Family a loss_lower_bound"):
        true_loss_floor(suite)
    result = meta_train(config)
    assert np.isfinite(result.best_val) and len(result.rows) == 2
    own = [d for d in _draws(config, 0, _STREAM_VALID, 2, 1) if d.suite == "my_family:FAMILY"]
    assert len(own) == 1 and np.isfinite(evaluate_rule(result.rule, config, own, 4))
    import my_family  # type: ignore[import-not-found]

    family = my_family.FAMILY
    renamed = Family("mine_registered", family.sample, family.suite, loss_lower_bound=0.0)
    register_family(renamed)
    try:
        assert get_family("mine_registered") is renamed
        with pytest.raises(ValueError, match="exists already"):
            register_family(renamed)
        counts = Counter(d.suite for d in _draws(tiny(suite=("quadratic", "mine_registered")), 0, _STREAM_GAMES, 4, 1))
        assert counts == {"quadratic": 2, "mine_registered": 2}
    finally:
        unregister_family("mine_registered")
    with pytest.raises(ValueError, match="built-in family"):
        unregister_family("quadratic")
    with pytest.raises(ValueError, match="exists already"):
        register_family(Family("digits", family.sample, "digits"))


def test_a_sweep_file_takes_a_mixture(tmp_path: Path) -> None:
    """A sweep's base run may be a mixture (TOML lists), and its trials meta-train on it."""
    from agents.learned.sweep import load_sweep

    path = tmp_path / "sweep.toml"
    path.write_text(
        '[meta_train]\nagent = "learned_mlp"\nsuite = ["quadratic", "regression"]\nconsensus = ["sum", "mgda"]\n'
        'dtype = "auto"\niterations = 4\n[search]\nmeta_lr = {grid = [1e-3, 3e-3]}\n[sweep]\nscheduler = "fifo"\n'
    )
    base = load_sweep(path).base
    assert base.suite == ("quadratic", "regression") and base.consensus == ("sum", "mgda") and base.dtype == "auto"
    path.write_text(path.read_text().replace('"regression"]', '"toy2d"]'))
    with pytest.raises(ValueError, match="suite: no game family 'toy2d'"):
        load_sweep(path)
