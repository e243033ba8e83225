"""What meta-training measures its meta-loss from (MetaTrainConfig.floor): ``true`` is the suite's exact L* of the
whole training objective where a solve gives it (else the suite's bound 0), ``legacy`` is the meta-loss the shipped
weights were trained with, unchanged; and L* itself lives with the suites (mtg_env/suites/floors.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import mtg_env.bench.floors
import mtg_env.suites.floors
from agents.learned.checkpoint import WEIGHTS_DIR
from agents.learned.family import FLOORS, build_suite, loss_floor, true_loss_floor
from agents.learned.meta_config import _config_dict
from agents.learned.meta_loss import _driver, _game, _step_log_ratio, _unroll
from agents.learned.rules import Rule
from agents.learned.train import MetaTrainConfig, meta_train
from mtg_env import engine
from mtg_env.suites import Floor, least_squares_floor, true_floor
from tests.conftest import load_script
from tests.test_learned import perturbed_rule
from tests.test_sealed import _direct_least_squares

#: Regression draws, one per kind of floor (a linear trunk with k ≥ min(M, d), one with a bottleneck, an MLP trunk).
LINEAR = {"num_tasks": 3, "input_dim": 6, "trunk": "linear", "trunk_width": 3, "relatedness": 0.4, "data_seed": 7}
BOTTLENECK = {"num_tasks": 4, "input_dim": 8, "trunk": "linear", "trunk_width": 2, "relatedness": 0.2}
MLP = {"num_tasks": 2, "input_dim": 5, "trunk": "mlp", "trunk_width": 3, "hidden": 8}


def _config(**kwargs: object) -> MetaTrainConfig:
    base = {"agent": "learned_mlp", "suite": "regression", "iterations": 2, "games": 3, "configs": 1,
            "horizons": (6,), "truncation": 3, "val_every": 2, "val_configs": 1, "val_games": 2}  # fmt: skip
    return MetaTrainConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_floors_live_with_the_suites_and_the_bench_re_exports_them() -> None:
    assert mtg_env.bench.floors.true_floor is mtg_env.suites.floors.true_floor is true_floor
    assert mtg_env.bench.floors.Floor is Floor
    assert mtg_env.suites.floors.exact_floor(build_suite("regression", MLP)) is None  # only a best run knows it


def test_each_kind_of_true_floor_on_regression() -> None:
    """Linear trunk without a bottleneck: a direct least-squares solve (numpy); with one: floors.py's ALS, above the
    least squares; an MLP trunk: the suite's bound 0, labelled (a best run costs seconds per drawn game)."""
    linear = build_suite("regression", LINEAR)
    floor = true_loss_floor(linear)
    assert floor.kind == "least squares" and floor.value == pytest.approx(_direct_least_squares(linear), rel=1e-7)
    assert floor.value > 0.01 * float(linear.losses(*linear.params_for_seed(0), linear.train_batch()).sum())
    bottleneck = build_suite("regression", BOTTLENECK)
    als = true_loss_floor(bottleneck)
    assert als == true_floor(bottleneck) and als.kind == "rank-constrained (ALS)"
    assert als.value > least_squares_floor(bottleneck)
    assert true_loss_floor(build_suite("regression", MLP)) == Floor(0.0, "lower bound")
    quadratic = build_suite("quadratic", {"num_tasks": 3}, dtype="float64")
    closed = true_loss_floor(quadratic)
    assert closed.kind == "closed form" and closed.value == pytest.approx(loss_floor(quadratic), rel=1e-8)


def _first_step(rule: Rule, config: MetaTrainConfig, options: dict, seeds: list[int]) -> tuple[float, float]:
    """(the meta-loss of the first step, its expected value computed here by hand from the engine's games)."""
    game, floor, whole = _game(config, options, 4)
    with torch.no_grad():
        got = float(_unroll(config, rule, game, seeds, floor, whole).advance(1))
        driver = _driver(rule, game)
        state, out = engine.reset(game, seeds)
        memory = driver.start(out)
        actions, _ = driver.act(state, out, memory)
        after, out1 = engine.step(game, state, actions)
        suite = game.suite
        if config.floor == "true":
            exact = _direct_least_squares(suite)  # float64, numpy: the L* meta-training must measure from
            start = suite.batched_losses(state.heads, state.trunk, suite.train_batch()).sum(-1).double()
            now = suite.batched_losses(after.heads, after.trunk, suite.train_batch()).sum(-1).double()
        else:
            exact, start, now = 0.0, out.losses.sum(1).double(), out1.losses.sum(1).double()
        expected = float(torch.log((now - exact) / (start - exact)).mean())
    return got, expected


def test_true_floor_meta_loss_measures_the_whole_objective_from_the_exact_floor() -> None:
    """floor="true" on a linear-trunk regression draw: the first step's meta-loss is the mean over the games of
    log((L_1 − L*) / (L_0 − L*)), L the whole training objective and L* the exact least-squares minimum; legacy's is
    log(L_1 / L_0) of the batch losses. The two differ: the floor is 4 % of the start here."""
    rule = perturbed_rule("learned_mlp")
    seeds = [3, 4, 5]
    got, expected = _first_step(rule, _config(floor="true"), LINEAR, seeds)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    legacy, legacy_expected = _first_step(rule, _config(floor="legacy"), LINEAR, seeds)
    assert legacy == pytest.approx(legacy_expected, rel=1e-5, abs=1e-6)
    assert abs(got - legacy) > 1e-3


def test_a_bound_floor_measures_the_batch_loss_as_legacy_does() -> None:
    """Where no solve gives L* (an MLP trunk), ``true`` measures the step's batch loss from the bound 0: legacy."""
    config = _config(floor="true")
    game, floor, whole = _game(config, MLP, 4)
    assert (floor, whole) == (0.0, False)
    rule = perturbed_rule("learned_mlp")
    with torch.no_grad():
        a = float(_unroll(config, rule, game, [1, 2], floor, whole).advance(3))
        game, floor, whole = _game(_config(floor="legacy"), MLP, 4)
        b = float(_unroll(config, rule, game, [1, 2], floor, whole).advance(3))
    assert a == b


def test_the_best_floor_is_the_sealed_protocols_and_is_computed_once_per_game() -> None:
    """``best`` measures the whole objective from the L* the sealed protocol scores with: exact where a solve gives it
    (the same as ``true``), a best run for an MLP trunk (where ``true`` has only the bound 0), once per drawn game."""
    from agents.learned import family

    config = _config(floor="best")
    with torch.no_grad():  # as validation asks (the best run differentiates all the same)
        _, floor, whole = _game(config, MLP, 4)
    assert whole and floor == true_floor(build_suite("regression", MLP)).value > 0.0
    key = next(k for k in family._BEST_FLOORS if '"mlp"' in k)
    family._BEST_FLOORS[key] = Floor(0.125, "best run")  # a second draw of the same game reads the kept value
    assert _game(config, MLP, 4)[1] == 0.125
    del family._BEST_FLOORS[key]
    assert _game(config, LINEAR, 4)[1:] == _game(_config(floor="true"), LINEAR, 4)[1:]


def test_a_batch_loss_below_the_floor_counts_as_the_lower_clamp() -> None:
    start = torch.tensor([2.0, 2.0, 2.0])
    ratio = _step_log_ratio(torch.tensor([1.5, 0.9, math.nan]), start, 1.0)
    assert ratio.tolist() == pytest.approx([math.log(0.5), math.log(1e-12), math.log(1e3)])


#: The meta-loss rows of two-iteration runs on main before ``floor`` existed (float.hex; CPU, one thread): legacy
#: must stay bit for bit the meta-training the shipped weights were trained with.
LEGACY_PINS = {
    ("regression", "tbptt"): [("-0x1.3b24098000000p-3", "nan"), ("-0x1.07447e8000000p-4", "-0x1.eeb902aaaaaabp-4")],
    ("quadratic", "tbptt"): [("-0x1.53e2860000000p+0", "nan"), ("-0x1.6c8efe0000000p+0", "-0x1.356a92aaaaaabp+0")],
    ("regression", "pes"): [("-0x1.3b00510000000p-3", "nan"), ("-0x1.0652e10000000p-4", "-0x1.ecb4caaaaaaabp-4")],
}


@pytest.mark.parametrize(("suite", "method"), list(LEGACY_PINS))
def test_legacy_meta_training_is_unchanged(suite: str, method: str) -> None:
    config = _config(suite=suite, method=method, games=2, es_pairs=2, floor="legacy")
    rows = meta_train(config).rows
    got = [(row["meta_loss"], row["val_loss"]) for row in rows]
    pins = [(float.fromhex(a), float.fromhex(b)) for a, b in LEGACY_PINS[(suite, method)]]
    for (loss, val), (pin_loss, pin_val) in zip(got, pins, strict=True):
        assert loss == pytest.approx(pin_loss, rel=1e-6)
        assert (math.isnan(val) and math.isnan(pin_val)) or val == pytest.approx(pin_val, rel=1e-6)
    if suite == "regression":  # the true floor moves regression's meta-loss (the quadratic's floor is the same)
        true_rows = meta_train(_config(suite=suite, method=method, games=2, es_pairs=2, floor="true")).rows
        assert abs(true_rows[0]["meta_loss"] - rows[0]["meta_loss"]) > 1e-3


def test_the_shipped_weights_recipes_pin_the_legacy_floor() -> None:
    """scripts/train_weights.py reproduces the shipped weights: each recipe is the config its file was trained with
    (fields a file predates at the value that reproduces its run: floor legacy, no trunk or head search, mean)."""
    script = load_script("scripts/train_weights.py", "train_weights_floor")
    recipes = script.RUNS
    predates = {"floor": "legacy", "trunk_search": [], "head_search": [], "val_metric": "mean", "search_metric": "mean",
                "init": None}  # fmt: skip
    assert recipes and all(config.init is None for config in recipes.values())  # every shipped rule trained from zero
    for name, config in recipes.items():
        file_meta = torch.load(Path(WEIGHTS_DIR) / f"{name}.pt", weights_only=True)["meta"]
        assert file_meta.get("added_options") == script.ADDED_OPTIONS.get(name), name  # added after training
        meta = file_meta["config"]
        if name.endswith("_general"):  # trained after the floor existed: its file holds every field but the guard's
            train_rule = {"guard_secant": "shorter", **meta["train_rule"]}  # secant (trained with the first one)
            later = {"head_search": [], "search_metric": "mean", "init": None}  # fields after its training
            assert _config_dict(config) == {**later, **meta, "train_rule": train_rule}, name
            continue
        if name == "learned_mlp_regression":  # trained after every field but init existed (twentieth session)
            assert _config_dict(config) == {"init": None, **meta}, name
            assert meta["floor"] == "true" and meta["seed"] == 3 and meta["rule"]["trunk_reads_moves"], name
            continue
        assert config.floor == "legacy", name
        assert _config_dict(config) == {**predates, **meta}, name


def test_floor_is_checked_and_resume_refuses_another(tmp_path: Path) -> None:
    assert FLOORS == ("true", "best", "legacy")
    with pytest.raises(ValueError, match=r"floor must be one of \['true', 'best', 'legacy'\], got 'exact'"):
        _config(floor="exact")
    meta_train(_config(floor="true"), out=tmp_path, stop_after=1)
    with pytest.raises(ValueError, match=r"differs from this run's in \['floor'\]"):
        meta_train(_config(floor="legacy"), out=tmp_path, resume=True)


def test_a_checkpoint_from_before_the_floor_resumes_as_legacy(tmp_path: Path) -> None:
    meta_train(_config(iterations=2), out=tmp_path, stop_after=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    del ckpt["config"]["floor"]
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"differs from this run's in \['floor'\]"):
        meta_train(_config(iterations=2, floor="true"), out=tmp_path, resume=True)
    assert len(meta_train(_config(iterations=2, floor="legacy"), out=tmp_path, resume=True).rows) == 2


def test_a_checkpoint_from_before_the_head_search_resumes_as_none_by_the_meta_loss(tmp_path: Path) -> None:
    meta_train(_config(iterations=2), out=tmp_path, stop_after=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    del ckpt["config"]["head_search"], ckpt["config"]["search_metric"]
    torch.save(ckpt, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"differs from this run's in \['head_search'\]"):
        meta_train(_config(iterations=2, head_search=(1.0, 2.0)), out=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"differs from this run's in \['search_metric'\]"):
        meta_train(_config(iterations=2, search_metric="final"), out=tmp_path, resume=True)
    assert len(meta_train(_config(iterations=2), out=tmp_path, resume=True).rows) == 2


def test_the_cli_sets_the_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtg_env.cli import main

    argv = ["meta-train", "--agent", "learned_step", "--suite", "regression", "--iterations", "1", "--horizons", "4",
            "--games", "2", "--configs", "1", "--val-every", "1", "--no-progress"]  # fmt: skip
    for floor in ("true", "legacy"):
        assert main([*argv, "--floor", floor, "--out", str(tmp_path / floor)]) == 0
        meta = torch.load(tmp_path / floor / "best.pt", weights_only=True)["meta"]
        assert meta["config"]["floor"] == floor
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--floor", "exact", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "--floor: invalid choice: 'exact'" in capsys.readouterr().err


def test_the_cli_searches_the_trunk_and_head_steps(tmp_path: Path) -> None:
    from mtg_env.cli import CLIError, main

    argv = ["meta-train", "--agent", "learned_mlp", "--suite", "regression", "--iterations", "1", "--horizons", "4",
            "--games", "2", "--configs", "1", "--val-every", "1", "--no-progress"]  # fmt: skip
    search = ["--trunk-search", "1,2", "--head-search", "0.5,1,3", "--search-metric", "final"]
    assert main([*argv, *search, "--out", str(tmp_path / "a")]) == 0
    meta = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["meta"]
    config = meta["config"]
    assert (config["trunk_search"], config["head_search"], config["search_metric"]) == (
        [1.0, 2.0],
        [0.5, 1.0, 3.0],
        "final",
    )
    assert len(meta["step_search"]["scores"]) == 2 and meta["head_search"]["kept"] in (0.5, 1.0, 3.0)
    with pytest.raises(CLIError, match="--head-search must be comma-separated floats"):
        main([*argv, "--head-search", "1,x", "--out", str(tmp_path / "b")])
    with pytest.raises(CLIError, match="search_metric must be 'mean' or 'final', got 'last'"):
        main([*argv, "--search-metric", "last", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
