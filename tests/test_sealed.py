"""The sealed protocol (mtg_env.bench.sealed): its test stream is no other stream, its L* is the true minimum, its
search space covers the learned rules' controls, its players are the baselines, and `mtg-env bench` runs it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from agents.learned.family import (
    DEFAULT_TEST_KEY,
    FAMILIES,
    SEED_BASES,
    build_suite,
    check_key,
    draw_games,
    loss_floor,
    sample_config,
)
from agents.learned.meta_loss import _STREAM_GAMES, _STREAM_SEARCH, _STREAM_VALID, _draws
from agents.learned.train import MetaTrainConfig
from mtg_env import engine
from mtg_env._platform import cpu_model
from mtg_env.bench.floors import Floor, least_squares_floor, true_floor
from mtg_env.bench.sealed import (
    BASELINE_CONTROLS,
    SealedConfig,
    SearchPlayers,
    SearchSpace,
    _game,
    _mean,
    draw_groups,
    paired_ratio_ci,
    play_candidates,
    sealed_config_from_dict,
)
from mtg_env.tuning import Baseline, TuningProtocol, Workload, play
from tests.conftest import ROOT, load_script

#: The meta-training runs' sizes (scripts/train_weights.py): iterations, configs and seeds per iteration.
_TRAINING = {"quadratic": (120, 2, 8), "regression": (240, 2, 8), "digits": (90, 2, 4)}


def _game_key(suite: str, config: dict[str, Any], seed: int) -> tuple[Any, ...]:
    return (suite, tuple(sorted((k, str(v)) for k, v in config.items())), seed)


def _other_streams(suite: str) -> tuple[set[tuple[Any, ...]], set[int], list[dict[str, Any]]]:
    """Every game (config, seed) another stream of the package draws for ``suite``: meta-training (games, validation,
    trunk search), the old learned tables (evaluation and tuning streams, seeds 0.. and the tuning seeds), and the
    sealed protocol's own tuning and validation streams. Returns the games, their seeds and their configs."""
    games: set[tuple[Any, ...]] = set()
    configs: list[dict[str, Any]] = []
    iterations, per, seeds = _TRAINING[suite]
    config = MetaTrainConfig(agent="learned_mlp", suite=suite, iterations=iterations, configs=per, games=seeds)
    ours = [d for it in range(iterations) for d in _draws(config, it, _STREAM_GAMES, per, seeds)]
    ours += _draws(config, 0, _STREAM_VALID, config.val_configs, config.val_games)
    ours += _draws(config, 0, _STREAM_SEARCH, config.val_configs, config.games)
    draws = [(d.options, d.seeds) for d in ours]
    results = load_script("scripts/learned_results.py", "learned_results_streams")
    index = list(FAMILIES).index(suite)
    tuning_seeds = list(results.PROTOCOL.tuning_seeds) + list(TuningProtocol().tuning_seeds)
    for stream in (results.EVAL_STREAM, results.TUNE_STREAM):
        rng = np.random.default_rng([*stream, index])
        draws += [(sample_config(suite, rng), list(range(10)) + tuning_seeds) for _ in range(32)]
    for stream in ("tuning", "validation"):
        draws += draw_games(suite, stream, 16, 3)
    for options, seeds_ in draws:
        configs.append(options)
        games.update(_game_key(suite, options, s) for s in seeds_)
    return games, {key[2] for key in games}, configs


@pytest.mark.parametrize("suite", FAMILIES)
def test_sealed_stream_differs_from_every_other_stream(suite: str) -> None:
    games, seeds, configs = _other_streams(suite)
    sealed = draw_games(suite, "test", 24, 3)
    sealed_seeds = [s for _, ss in sealed for s in ss]
    # By construction: the sealed games' seeds lie in a range no other stream reaches.
    assert all(SEED_BASES["test"] <= s < SEED_BASES["test"] + 2**60 for s in sealed_seeds)
    assert not seeds & set(sealed_seeds)
    assert max(seeds) < SEED_BASES["test"]
    assert not games & {_game_key(suite, c, s) for c, ss in sealed for s in ss}
    if suite != "digits":  # digits' family has 3 widths × 1000 splits: its configs may repeat, its games cannot
        seed_key = "game_seed" if suite == "quadratic" else "data_seed"
        assert not {c[seed_key] for c in configs} & {c[seed_key] for c, _ in sealed}


def test_test_key_draws_a_disjoint_reproducible_set() -> None:
    first = draw_games("regression", "test", 16, 3)
    assert first == draw_games("regression", "test", 16, 3, key=DEFAULT_TEST_KEY)  # the same key: the same games
    fresh = draw_games("regression", "test", 16, 3, key="0123456789abcdef0123456789abcdef")
    assert not {s for _, ss in first for s in ss} & {s for _, ss in fresh for s in ss}
    assert not {c["data_seed"] for c, _ in first} & {c["data_seed"] for c, _ in fresh}
    # The stream, not just the key, decides the draws: the same key on the validation stream gives other games.
    val = draw_games("regression", "validation", 16, 3, key=DEFAULT_TEST_KEY)
    assert not {s for _, ss in first for s in ss} & {s for _, ss in val for s in ss}
    with pytest.raises(ValueError, match="32 hex digits"):
        check_key("not-a-key")


def _direct_least_squares(suite: Any) -> float:
    """Σ_m the MSE of task m's own affine least-squares fit on its n_m training samples (numpy, unweighted)."""
    x, y, w = (t.detach().double().numpy() for t in suite.train_batch())
    total = 0.0
    for m in range(x.shape[0]):
        n = int(np.count_nonzero(w[m]))
        design = np.hstack([x[m, :n], np.ones((n, 1))])
        coef, *_ = np.linalg.lstsq(design, y[m, :n], rcond=None)
        total += float(np.mean((design @ coef - y[m, :n]) ** 2))
    return total


def test_regression_floor_is_a_direct_least_squares_solve() -> None:
    suite = build_suite("regression", {"num_tasks": 3, "input_dim": 6, "trunk": "linear", "trunk_width": 3})
    floor = true_floor(suite)
    assert floor.kind == "least squares" and floor.exact
    # rel 1e-7: the suite keeps its per-sample weights 1/n_m in float32
    assert floor.value == pytest.approx(_direct_least_squares(suite), rel=1e-7)
    assert loss_floor(suite) == 0.0  # the old floor was 0: ratios were pulled toward 1
    # The floor is reached by the game's own parametrisation: heads at their exact best response to a trunk that
    # spans the task slopes (W = the stacked least-squares slopes).
    x, y, w = (t.double() for t in suite.train_batch())
    design = torch.cat([x, torch.ones_like(x[..., :1])], -1) * w.sqrt().unsqueeze(-1)
    slopes = torch.linalg.lstsq(design, (y * w.sqrt()).unsqueeze(-1)).solution.squeeze(-1)[:, :-1]
    trunk = torch.cat([slopes.reshape(-1), torch.zeros(3, dtype=torch.float64)]).float()
    heads = suite.best_response(torch.zeros(suite.head_offsets[-1]), trunk)
    reached = float(suite.losses(heads, trunk, suite.train_batch()).sum())
    assert reached == pytest.approx(floor.value, rel=1e-4)


def test_bottleneck_floor_is_labelled_and_bounded() -> None:
    suite = build_suite("regression", {"num_tasks": 4, "input_dim": 8, "trunk": "linear", "trunk_width": 2,
                                       "relatedness": 0.2})  # fmt: skip
    floor = true_floor(suite)
    assert floor.kind == "rank-constrained (ALS)" and not floor.exact
    assert floor.lower == pytest.approx(least_squares_floor(suite))
    assert floor.lower is not None and floor.lower < floor.value  # the bottleneck costs loss


def test_floor_kinds_per_suite() -> None:
    quadratic = build_suite("quadratic", {"num_tasks": 3}, dtype="float64")
    floor = true_floor(quadratic)
    assert floor.kind == "closed form" and floor.value == pytest.approx(loss_floor(quadratic), rel=1e-8)
    mlp = build_suite("regression", {"trunk": "mlp", "hidden": 4, "num_tasks": 2, "input_dim": 3})
    best = true_floor(mlp)
    assert best.kind == "best run, polished" and not best.exact and best.value > 0
    start = float(mlp.losses(*mlp.params_for_seed(0), mlp.train_batch()).sum())
    assert best.value < start
    unpolished = true_floor(mlp, polish=0)  # the Adam runs alone: the floors before the polish
    assert unpolished.kind == "best run" and best.value <= unpolished.value
    for bad in (-1, 2.5, True, None):
        with pytest.raises(ValueError, match="polish must be an int >= 0"):
            true_floor(mlp, polish=bad)  # type: ignore[arg-type]
    assert best.lowered(best.value / 2) == Floor(best.value / 2, "best known")
    assert floor.lowered(floor.value - 1.0) == floor  # an exact floor is never lowered


def test_a_floors_file_of_the_other_recipe_is_refused(tmp_path: Any) -> None:
    """A directory's floors.json made by the unpolished recipe (every key before the polish) is not topped up with
    polished floors: a cell would mix the two. It loads with polish=0, and a polished file loads as it is."""
    import mtg_env.bench.sealed as sealed

    path = tmp_path / "floors.json"
    old = {json.dumps(["regression", {"trunk": "mlp"}]): {"value": 0.1, "kind": "best run", "lower": None}}
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"holds unpolished best-run floors .*\(polish=0 for"):
        sealed._Floors(path)
    assert sealed._Floors(path, polish=0).table == old and path.read_text() == json.dumps(old)
    polished = tmp_path / "polished.json"
    polished.write_text(json.dumps({"k": {"value": 0.1, "kind": "best run, polished", "lower": None}}))
    with pytest.raises(ValueError, match="holds polished best-run floors"):
        sealed._Floors(polished, polish=0)
    assert sealed._Floors(polished).polish == sealed.BEST_RUN_POLISH


def test_a_digits_floor_is_near_the_minimum_no_played_game_reaches() -> None:
    """Digits' MLPs fit their training split almost exactly, so L* is near 0. The Adam runs alone stopped two orders
    of magnitude above it, above what tuned Adam reaches in 500 minibatch steps, and a gap then measured the distance
    to the game's best player; the polished floor is below the unpolished one by that much, and above the suite's
    bound (0)."""
    suite = build_suite("digits", {"hidden": (16,), "batch_size": 64, "split_seed": 3})
    polished, unpolished = true_floor(suite), true_floor(suite, polish=0)
    assert polished.kind == "best run, polished" and unpolished.kind == "best run"
    assert 0.0 <= polished.value < unpolished.value / 50


def test_search_space_covers_every_control_of_the_learned_rules() -> None:
    space = SearchSpace()
    lrs = space.step_sizes()
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(10.0) and len(lrs) == 16  # 3 per decade
    adam = space.candidates("adam")
    assert {c["beta1"] for c in adam} == {0.5, 0.9} and {c["beta2"] for c in adam} == {0.99, 0.999}
    assert {c["momentum"] for c in space.candidates("momentum")} == {0.5, 0.9, 0.99}
    for baseline in BASELINE_CONTROLS:
        cands = space.candidates(baseline)
        assert {c["schedule"] for c in cands} == {"constant", "cosine", "warmup"}
        assert {c["trunk_ratio"] for c in cands} == {0.1, 0.3, 1.0, 3.0, 10.0}
        assert {c["lr"] for c in cands} == set(lrs)
    with pytest.raises(ValueError, match="points_per_decade"):
        SearchSpace(points_per_decade=2)


@pytest.mark.parametrize(
    ("name", "knobs", "kwargs"),
    [
        ("gradient", {}, {}),
        ("momentum", {"momentum": 0.9}, {"momentum": 0.9}),
        ("adam", {"beta1": 0.9, "beta2": 0.999}, {"betas": (0.9, 0.999)}),
        ("rmsprop", {"beta2": 0.99}, {"alpha": 0.99}),
    ],
)
def test_search_players_play_the_baselines(name: str, knobs: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """At a constant schedule, candidate (lr, knobs, ratio r) is the baseline with trunk_lr = r · lr."""
    options = {"num_tasks": 2, "input_dim": 4, "trunk": "mlp", "hidden": 8, "trunk_width": 2}
    game = _game("regression", options, 15)
    cands = [{"baseline": name, "lr": lr, "trunk_ratio": 3.0, "schedule": "constant", **knobs} for lr in (1e-3, 1e-2)]
    _, final = play_candidates(game, cands, [5, 6])
    workload = Workload("regression", "sum", 15, tuple(sorted(options.items())))
    results = play(workload, Baseline(name, trunk_ratio=3.0, **kwargs), [1e-3, 1e-2], [5, 6])
    expected = [sum(r.final_train_loss or [math.inf]) for r in results]
    assert final.tolist() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("suite", "options"),
    [("quadratic", {"num_tasks": 3}), ("regression", {"num_tasks": 2, "input_dim": 4, "trunk": "mlp", "hidden": 8})],
)
def test_grouped_players_are_the_one_formula_to_the_bit(suite: str, options: dict[str, Any]) -> None:
    """Tuning's players update each run of one baseline on its own (no buffer a baseline lacks, no branch it does not
    take): every action equals the one formula's over every game to the bit (``torch.equal``: a last-bit difference
    fails; +0 and −0 are equal, the one way the two may differ), at every step, in float64 (quadratics) and float32
    games, with the baselines interleaved (runs of one game) and in blocks (as tuning batches them), and with games
    that diverge on the way."""
    space = SearchSpace()
    pool = [c for b in BASELINE_CONTROLS for c in space.candidates(b)]
    rng = np.random.default_rng(0)
    mixed = [pool[i] for i in rng.choice(len(pool), 40, replace=False)]
    cands = mixed + sorted(mixed, key=lambda c: c["baseline"])
    assert {c["baseline"] for c in mixed} == set(BASELINE_CONTROLS)
    game = _game(suite, options, 40, consensus="upgrad")  # 40 steps: β^t meets both power kernels (t = 25, 32, ...)
    grouped, reference = SearchPlayers(game, cands), SearchPlayers(game, cands, grouped=False)
    assert len(grouped.runs) > 8 and min(hi - lo for lo, hi, _ in grouped.runs) == 1
    with torch.no_grad():
        state, _ = engine.reset(game, list(range(len(cands))))
        alive = torch.ones(len(cands), dtype=torch.bool)
        for _ in range(game.horizon):
            heads, props = grouped.act(state.head_grads, state.jacobian)
            expected = reference.act(state.head_grads, state.jacobian)
            ok = alive[:, None]
            assert torch.equal(heads[alive], expected[0][alive]) and torch.equal(props[alive], expected[1][alive])
            heads, props = torch.where(ok, heads, 0.0), torch.where(ok[..., None], props, 0.0)
            state, out = engine.step(game, state, (heads, props))
            alive &= ~out.diverged
    assert 0 < int(alive.sum()) < len(cands)  # some diverged, most played on


def test_search_players_refuse_an_unknown_baseline() -> None:
    game = _game("quadratic", {"num_tasks": 2}, 5)
    with pytest.raises(ValueError, match=r"no player for baseline 'lion'.*gradient"):
        SearchPlayers(game, [{"baseline": "lion", "lr": 0.1, "trunk_ratio": 1.0, "schedule": "constant"}])
    with pytest.raises(ValueError, match=r"candidates is empty: give one candidate per game"):
        SearchPlayers(game, [])
    with pytest.raises(ValueError, match=r"baselines is empty: name at least one of \['gradient'"):
        SealedConfig(name="t", families=("quadratic",), entrants=(), baselines=())
    with pytest.raises(ValueError, match="head_grads holds 2 games; these players play 1"):
        players = SearchPlayers(game, [{"baseline": "gradient", "lr": 0.1, "trunk_ratio": 1.0, "schedule": "constant"}])
        state, _ = engine.reset(game, [0, 1])
        players.act(state.head_grads, state.jacobian)


def test_schedules_and_divergence() -> None:
    game = _game("quadratic", {"num_tasks": 2}, 20)
    base = {"baseline": "gradient", "lr": 0.01, "trunk_ratio": 1.0}
    cands = [{**base, "schedule": s} for s in ("constant", "cosine", "warmup")]
    cands.append({**base, "lr": 1e3, "schedule": "constant"})
    start, final = play_candidates(game, cands, [1] * 4)
    assert math.isinf(final[3])  # a step of 1000 diverges, and scores +inf
    assert final[0] < final[1] and final[0] < final[2] < start[2]  # the decayed schedules move less in 20 steps


def test_budget_is_declared_and_enforced() -> None:
    config = SealedConfig(name="t", families=("quadratic",), entrants=())
    adam = config.tuning_cost("adam", 1)
    assert adam == (960 + 240 * config.tuning_seeds) * config.tuning_draws * config.train_horizon
    assert all(config.tuning_cost(b, 1) <= adam for b in BASELINE_CONTROLS)  # the same cap fits every baseline
    with pytest.raises(ValueError, match="budget_game_steps"):
        replace(config, budget_game_steps=adam - 1).check()


def test_paired_ratio_ci() -> None:
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 8.0])
    point, low, high = paired_ratio_ci(a, b, lambda x: x.mean(-1), 200)
    assert point == low == high == pytest.approx(0.5)  # paired: every resample keeps the ratio
    point, _, high = paired_ratio_ci(np.array([1.0, math.inf]), b[:2], lambda x: x.mean(-1), 200)
    assert math.isinf(point) and math.isinf(high)


def test_the_cluster_bootstrap_resamples_draws() -> None:
    """With ``groups`` a replicate resamples whole draws: seeds that copy their draw's gap add nothing, so three copies
    of each of 8 draws give exactly the CI of the 8 draws alone, where resampling the 24 games one by one gives a
    narrower one. Games move with their label wherever they sit, and draws of different sizes stay paired."""
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(size=8), rng.lognormal(size=8)
    for statistic in (lambda x: x.mean(-1), lambda x: np.median(x, axis=-1)):
        alone = paired_ratio_ci(a, b, statistic, 500)
        copies = paired_ratio_ci(np.repeat(a, 3), np.repeat(b, 3), statistic, 500, groups=np.repeat(np.arange(8), 3))
        assert copies == pytest.approx(alone, rel=1e-12)
        games = paired_ratio_ci(np.repeat(a, 3), np.repeat(b, 3), statistic, 500)
        assert games[2] - games[1] < 0.8 * (alone[2] - alone[1])  # as if there were 24 draws
    labels = np.repeat(np.arange(8), 3)
    order = np.argsort(np.tile(np.arange(3), 8), kind="stable")  # the same draws, first seeds first
    x, y = rng.lognormal(size=24), rng.lognormal(size=24)
    mean = lambda v: v.mean(-1)  # noqa: E731
    assert paired_ratio_ci(x[order], y[order], mean, 300, groups=labels[order]) == pytest.approx(
        paired_ratio_ci(x, y, mean, 300, groups=labels), rel=1e-12
    )
    uneven = np.array([3, 1, 3, 0, 2, 1, 3, 2, 3, 1])  # units of 1 to 4 games, interleaved; first seen: 3, 1, 0, 2
    x, y = rng.lognormal(size=10), rng.lognormal(size=10)
    members = [np.flatnonzero(uneven == u) for u in (3, 1, 0, 2)]
    picks = np.random.default_rng(7).integers(0, 4, size=(300, 4))
    reference = []
    for row in picks:  # one replicate: the picked units' games, all of each
        games = np.concatenate([members[u] for u in row])
        reference.append(x[games].mean() / y[games].mean())
    point, low, high = paired_ratio_ci(x, y, mean, 300, seed=7, groups=uneven)
    assert point == pytest.approx(x.mean() / y.mean(), rel=1e-12)
    assert (low, high) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])), rel=1e-12)
    with pytest.raises(ValueError, match="groups must give one label per game"):
        paired_ratio_ci(a, b, mean, 10, groups=np.arange(7))
    with pytest.raises(ValueError, match="the same games"):
        paired_ratio_ci(a, b[:7], mean, 10)


def test_the_bootstrap_unit_is_a_checked_key() -> None:
    config = sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"], "bootstrap_unit": "game"})
    assert config.bootstrap_unit == "game"
    assert sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"]}).bootstrap_unit == "draw"
    with pytest.raises(ValueError, match="bootstrap_unit must be one of"):
        sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"], "bootstrap_unit": "seed"})


def test_the_learned_config_parses() -> None:
    import tomllib

    config = sealed_config_from_dict(tomllib.loads((ROOT / "examples" / "bench_learned.toml").read_text()))
    config.check()
    assert config.families == ("quadratic", "regression", "digits") and config.multiples == (1, 2, 5)
    assert ("learned_mlp", "digits") in config.entrants and config.test_draws * config.test_seeds >= 24
    with pytest.raises(ValueError, match="unknown sealed-protocol key"):
        sealed_config_from_dict({"protocol": "sealed", "familes": ["quadratic"]})


def test_cli_runs_the_quick_sealed_bench(tmp_path: Any, capsys: Any) -> None:
    from mtg_env.cli import CLIError, main

    config = str(ROOT / "examples" / "bench_learned.toml")
    key = "00112233445566778899aabbccddeeff"
    assert main(["bench", config, "--quick", "--out", str(tmp_path), "--no-progress", "--test-key", key]) == 0
    report = (tmp_path / "report.md").read_text()
    assert key in report and "learned_mlp" in report and "closed form" in report
    assert "CI over the drawn games, each resampled with all its seeds" in report  # bootstrap_unit "draw"
    with pytest.raises(CLIError, match="32 hex digits"):
        main(["bench", config, "--quick", "--out", str(tmp_path / "b"), "--test-key", "xyz"])
    with pytest.raises(SystemExit):
        main(["bench", "--quick", "--test-key", key])  # the built-in benchmark has no sealed stream
    assert main(["bench", config, "--quick", "--out", str(tmp_path / "v"), "--no-progress", "--validation"]) == 0
    assert "DEVELOPMENT RUN on the validation stream" in (tmp_path / "v" / "report.md").read_text()


def test_a_gap_at_the_floor_is_round_off_not_a_win() -> None:
    from mtg_env.bench.sealed import _gaps

    start, final = torch.tensor([10.0, 10.0, 10.0]), torch.tensor([-2.0 + 1e-16, -2.0 + 1e-15, math.inf])
    gaps = _gaps(start, final, -2.0, "float64")
    assert gaps[0] == gaps[1] == pytest.approx(2e-12 / 12)  # both at the floor: tied at the resolution
    assert math.isinf(gaps[2])


def test_the_report_marks_a_median_ratio_at_the_floor_a_tie() -> None:
    """Where both medians are at the floor the median ratio compares round-off: the report's row says it is a tie."""
    from mtg_env.bench.sealed_report import cell_rows

    def row(baseline_median: float) -> str:
        cell = {
            "family": "quadratic", "multiple": 1, "horizon": 8, "consensus": "sum", "best_mean": "adam",
            "best_median": "adam", "tuned": {"adam": {}}, "diverged": {"adam": 0, "rule": 0},
            "mean": {"adam": 1e-3, "rule": 1e-4}, "median": {"adam": baseline_median, "rule": 1e-14},
            "at_floor": {"adam": 30, "rule": 33}, "floor_kinds": ["closed form"],
            "entrants": {"rule": {"ratio_mean": [0.1, 0.05, 0.2], "ratio_median": [1e-3, 1e-5, 0.02]}},
        }  # fmt: skip
        return cell_rows(cell)

    assert "(a tie: both medians at the floor)" in row(1e-11)
    assert "tie" not in row(1e-6)  # the baseline's median above the floor: the ratio stands
    assert "| 1.0e-03 [1.0e-05, 0.02] (a tie" in row(1e-11)  # a tie is not bold, whatever its value
    assert "| **1.0e-03** [1.0e-05, 0.02] |" in row(1e-6)


def test_the_report_bolds_only_the_ratios_whose_ci_is_below_one() -> None:
    """A bold ratio reads as a win: the row bolds a ratio only where its CI's upper end is below 1, not a loss nor a
    win its CI does not settle."""
    from mtg_env.bench.sealed_report import cell_rows

    cell = {
        "family": "digits", "multiple": 5, "horizon": 500, "consensus": "mgda", "best_mean": "adam",
        "best_median": "adam", "tuned": {"adam": {}}, "diverged": {"adam": 0, "win": 0, "unsettled": 0, "loss": 0},
        "mean": {"adam": 1e-2, "win": 5e-3, "unsettled": 8e-3, "loss": 2e-2},
        "median": {"adam": 1e-2, "win": 6e-3, "unsettled": 9e-3, "loss": 3e-2},
        "at_floor": {"adam": 0, "win": 0, "unsettled": 0, "loss": 0}, "floor_kinds": ["best run"],
        "entrants": {
            "win": {"ratio_mean": [0.5, 0.4, 0.6], "ratio_median": [0.6, 0.5, 0.9]},
            "unsettled": {"ratio_mean": [0.8, 0.6, 1.1], "ratio_median": [0.9, 0.7, 1.0]},
            "loss": {"ratio_mean": [2.0, 1.5, 2.5], "ratio_median": [3.0, 2.0, 4.0]},
        },
    }  # fmt: skip
    rows = dict(zip(cell["entrants"], cell_rows(cell).splitlines(), strict=True))
    assert "| **0.50** [0.40, 0.60] |" in rows["win"] and "| **0.60** [0.50, 0.90] |" in rows["win"]
    assert "**" not in rows["unsettled"] and "**" not in rows["loss"]
    assert "| 0.80 [0.60, 1.10] |" in rows["unsettled"] and "| 3.00 [2.00, 4.00] |" in rows["loss"]


# ------------------------------------------------------------------------------------------ the device
_TINY_SPACE = SearchSpace(low=1e-2, high=1.0, points_per_decade=3, momentum=(0.9,), beta1=(0.9,), beta2=(0.999,),
                          trunk_ratios=(1.0,), schedules=("constant",))  # fmt: skip


def _tiny_cell_config(suite: str, **kwargs: Any) -> SealedConfig:
    return SealedConfig(name="t", families=(suite,), entrants=(("learned_mlp", suite),), baselines=("gradient", "adam"),
                        multiples=(1,), train_horizon=8, search=_TINY_SPACE, tuning_draws=1, tuning_seeds=1,
                        test_draws=2, test_seeds=2, bootstrap_reps=20, **kwargs)  # fmt: skip


def test_a_stopped_tuning_resumes_from_its_progress_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tuning stopped after its first batch keeps that draw's gaps in its progress file; run again, it plays only
    the batches it lacks and chooses exactly what an unbroken tuning chooses. A file of another tuning is refused,
    naming what differs, and left as it was."""
    import mtg_env.bench.sealed as sealed

    config = replace(_tiny_cell_config("quadratic"), tuning_draws=2)
    unbroken = sealed.tune_baselines(config, "quadratic", 8, sealed._Floors(None))
    real, calls = sealed.play_candidates, []

    def stops_after_one(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine stops during the second batch
        return real(*args)

    monkeypatch.setattr(sealed, "play_candidates", stops_after_one)
    path = tmp_path / "progress.json"
    with pytest.raises(KeyboardInterrupt):
        sealed.tune_baselines(config, "quadratic", 8, sealed._Floors(None), progress=path)
    assert list(json.loads(path.read_text())["gaps"]) == ["rung0 0"]
    calls.clear()
    monkeypatch.setattr(sealed, "play_candidates", lambda *args: calls.append(args) or real(*args))
    assert sealed.tune_baselines(config, "quadratic", 8, sealed._Floors(None), progress=path) == unbroken
    assert len(calls) == 3  # rung 0 of draw 1, rung 1 of both draws
    record = json.loads(path.read_text())
    assert list(record["gaps"]) == ["rung0 0", "rung0 1", "rung1 0", "rung1 1"]
    assert set(record["where"].values()) == {f"{cpu_model()}; torch {torch.__version__}"}  # where each batch ran
    calls.clear()
    assert sealed.tune_baselines(config, "quadratic", 8, sealed._Floors(None), progress=path) == unbroken
    assert not calls  # every batch read back
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"progress\.json holds another tuning's draws \(it differs in consensus: "):
        sealed.tune_baselines(config, "quadratic", 8, sealed._Floors(None), "mean", progress=path)
    with pytest.raises(
        ValueError, match=r"differs in horizon: \{'horizon': 8\} against \{'horizon': 16\}.*another --out"
    ):
        sealed.tune_baselines(config, "quadratic", 8 * 2, sealed._Floors(None), progress=path)
    other_draws = replace(config, tuning_seeds=2)
    with pytest.raises(ValueError, match=r"differs in draws, tuning_seeds"):
        sealed.tune_baselines(other_draws, "quadratic", 8, sealed._Floors(None), progress=path)
    assert path.read_bytes() == before and not calls
    # mtg-env bench's run refuses a stale file before any cell plays (here the second cell's)
    run = replace(config, multiples=(1, 2))  # the second cell plays 16 steps, the file holds 8
    (tmp_path / "out" / "tuning").mkdir(parents=True)
    (tmp_path / "out" / "tuning" / "quadratic_sum_2.json").write_bytes(before)
    with pytest.raises(ValueError, match=r"quadratic_sum_2\.json holds another tuning's draws"):
        sealed.run_sealed(run, tmp_path / "out", test_key="0" * 32, progress=False, stream="validation")
    assert not calls and not (tmp_path / "out" / "report.json").exists()


def test_a_tuning_rescored_to_the_polished_floors_chooses_what_it_would_have_chosen(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/rescore_tuning.py: a tuning played from the unpolished floors (every tuning before the polish),
    re-scored to the polished ones without playing, gives the gaps and the choice a tuning played from the polished
    floors gives; where candidates reached the old floor (clamped gaps) it says so and bounds them."""
    import mtg_env.bench.sealed as sealed

    module = load_script("scripts/rescore_tuning.py", "rescore_tuning")
    config = replace(_tiny_cell_config("regression"), tuning_draws=2, tuning_seeds=2)
    played_new = sealed.tune_baselines(config, "regression", 8, sealed._Floors(None))
    path = tmp_path / "progress.json"
    played_old = sealed.tune_baselines(config, "regression", 8, sealed._Floors(None, polish=0), progress=path)
    assert json.loads(path.read_text())["tuning"]["floor_polish"] == 0
    with pytest.raises(ValueError, match=r"differs in floor_polish.*scripts/rescore_tuning\.py"):
        sealed.tune_baselines(config, "regression", 8, sealed._Floors(None), progress=path)  # not resumed: refused
    with pytest.raises(ValueError, match="differs from config's in draws, tuning_draws"):
        module.rescore(json.loads(path.read_text()), replace(config, tuning_draws=3))
    result = module.rescore(json.loads(path.read_text()), config)
    assert result["clamped"] == {"rung0": 0, "rung1": 0} and result["same_kept"]
    for b, r in result["baselines"].items():
        assert r["committed"] == played_old[b]["knobs"] and r["gap_committed"] == played_old[b]["tuning_gap"]
        assert r["upper"] == r["lower"] == played_new[b]["knobs"], b
        assert r["gap_new"] == pytest.approx(played_new[b]["tuning_gap"], rel=1e-9), b
    assert any(played_new[b]["tuning_gap"] != played_old[b]["tuning_gap"] for b in played_new)  # the floors moved
    # a candidate that reached the old floor: its gap was clamped, its final loss is bounded, not known
    record = json.loads(path.read_text())
    kept = len(record["gaps"]["rung1 0"]) // config.tuning_seeds
    record["gaps"]["rung1 0"][kept] = 1e-300  # the second seed's block: its first candidate
    clamped = module.rescore(record, config)
    assert clamped["clamped"] == {"rung0": 0, "rung1": 1} and not clamped["replayed"]
    # rung 0's kept set must hold for every value of the bounded entries, not only at both ends: A in [0.1, 0.5] is kept
    # at either end against B in [0.3, 0.6], but not where A is 0.5 and B 0.3
    pools, one = {"adam": ["A", "B"]}, replace(config, baselines=("adam",), eta=2)
    bounded = [(None, np.array([0.5, 0.6]), np.array([0.1, 0.3]), None)]
    assert not module._kept_settled(bounded, [0], one, pools)
    assert module._kept_settled([(None, np.array([0.2, 0.6]), np.array([0.1, 0.3]), None)], [0], one, pools)
    # played again, the entry's final loss is known: the re-score is the unclamped one's, to the replay's round-off
    replayed = module.rescore(record, config, replay=2)
    assert replayed["replayed"] and replayed["replay_deviation"] < 1e-5
    for b, r in replayed["baselines"].items():
        assert r["upper"] == r["lower"] == result["baselines"][b]["upper"] and r["robust"], b
        assert r["gap_new"] == pytest.approx(result["baselines"][b]["gap_new"], rel=1e-5), b
    # old floors that half the candidates reached: rung 0 kept other candidates than it would have, and the replay
    # plays rung 1 of the ones it now keeps, so the re-score chooses what a tuning from the polished floors chooses
    real = module.true_floor

    def reached(suite: Any, polish: int = 500) -> Any:
        floor = real(suite)
        if polish:
            return floor
        start = float(suite.losses(*suite.params_for_seed(0), suite.train_batch()).sum())
        return Floor(floor.value + 0.5 * (start - floor.value), "best run")

    monkeypatch.setattr(sealed, "true_floor", reached)
    high = tmp_path / "high.json"
    played_high = sealed.tune_baselines(config, "regression", 8, sealed._Floors(None, polish=0), progress=high)
    monkeypatch.setattr(module, "true_floor", reached)
    settled = module.rescore(json.loads(high.read_text()), config, replay=2)
    assert not settled["same_kept"] and settled["added"] > 0 and settled["clamped"]["rung0"] > 0
    assert any(played_high[b]["knobs"] != played_new[b]["knobs"] for b in played_new)  # the old floors chose others
    for b, r in settled["baselines"].items():
        assert r["committed"] == played_high[b]["knobs"] and r["upper"] == r["lower"] == played_new[b]["knobs"], b
        assert r["robust"] == (played_high[b]["knobs"] == played_new[b]["knobs"]), b
        assert r["gap_new"] == pytest.approx(played_new[b]["tuning_gap"], rel=1e-5), b


def test_the_by_draw_table_leaves_out_the_validation_streams_cells() -> None:
    """docs/sealed/by_draw.py lists the sealed cells (played on a key), not the development runs of
    scripts/validation_cell.py on the validation stream, marked or known by their draws."""
    module = load_script("docs/sealed/by_draw.py", "by_draw")
    sealed_dir = ROOT / "docs/sealed"
    validation = json.loads((sealed_dir / "digits/polished_floor/digits_mgda_5.json").read_text())
    keyed = json.loads((sealed_dir / "general/k23/digits_mgda_5.json").read_text())
    assert "stream" not in validation and module.is_validation(validation)  # an older file: known by its draws
    assert module.is_validation({**keyed, "stream": "validation"}) and not module.is_validation(keyed)
    listed = {where for where, _, _ in module.cells()}
    assert "general/k23/digits_mgda_5.json" in listed
    assert not any(w.startswith(("digits/polished_floor/", "digits/long_horizons/")) for w in listed)


#: A tiny cell's gaps per player on the validation stream, from main before the sealed protocol had a device
#: (float.hex): quadratic (closed-form floors) and regression (two MLP-trunk draws: best-run floors).
#: The learned_mlp rows play with the curvature guard (on by default, agents/learned/guard.py). Its first secant
#: (guard_secant "shorter") moved them from the unguarded pins by at most 5e-6 (quadratic) and 3 % (regression, game
#: 4's gap 0.133 -> 0.129); the bounded secant (the default since) plays quadratic game 4 as unguarded again and moved
#: the regression rows by at most 2.3 % from the first guard's (game 4: 0.129 -> 0.132). The regression specialist's
#: trunk AMSGrad share (added after training, sixth session) moved its row from 0.415, 0.479, 0.294, 0.132. The
#: regression specialist shipped since K16 (twentieth session) plays 0.446, 0.553, 0.209, 0.138; the one before it
#: (docs/sealed/general/k16/learned_mlp_regression_before.pt) played 0x1.9bff983abb46bp-2, 0x1.0d2b875a6c2b6p-1,
#: 0x1.1ffb5de66a88cp-2, 0x1.4f1b4b0bf8d5dp-4 (0.402, 0.526, 0.281, 0.082): four games, not a comparison.
_CELL_PINS = {
    "quadratic": {
        "gradient": ["0x1.68cc6d8b85c4ap-7", "0x1.2a6b1f5aeb068p-5", "0x1.30ccc5d70fd46p-8", "0x1.25388ddfe9726p-8"],
        "adam": ["0x1.6bad57dbcaaa3p-4", "0x1.b912143d4dac5p-4", "0x1.4cf9c79365ea2p-4", "0x1.997a020d56ad3p-4"],
        # with the trunk boost the shipped file adds (tenth session); before it 0x1.ceb11db6b3ba7p-2,
        # 0x1.36f899b91cfd3p-2, 0x1.4463b3a27d5c1p-1, 0x1.2d3b2cd81eb04p-1
        "learned_mlp": ["0x1.bdd14515857c5p-2", "0x1.326edebf7fea3p-2", "0x1.23cf114d61d34p-1", "0x1.13238aed6fc9cp-1"],
    },
    # the polished best-run floors (twenty-eighth session); before them 0x1.1adcf9a2a01c0p-1, 0x1.dee7716965093p-1,
    # 0x1.5e74d796450d1p-1, 0x1.bd7a061ea02bdp-1 / 0x1.13c93e97b1577p-1, 0x1.228c0f4c84d38p-1, 0x1.39ff905b3b90bp-2,
    # 0x1.1065f620e566cp-3 / 0x1.c8b42d48296aap-2, 0x1.1ae7be2ce1e88p-1, 0x1.abe73ca9f9562p-3, 0x1.1b26ffa84fa3dp-3
    # (every gap up by 0–0.55 %: the floors fell)
    "regression": {
        "gradient": ["0x1.1bdf802b5705ep-1", "0x1.df0c5c2519e84p-1", "0x1.5e764f7dfe428p-1", "0x1.bd7a8cdbfe642p-1"],
        "adam": ["0x1.14d3bfe58afe7p-1", "0x1.238305f012a0dp-1", "0x1.3a0568ef614e1p-2", "0x1.107490f6e63a2p-3"],
        "learned_mlp": ["0x1.cb3438970fb74p-2", "0x1.1be738fe7a33dp-1", "0x1.abf49c5ec95dbp-3", "0x1.1b35812e39e61p-3"],
    },
}


#: How far a pinned gap may move with MKL's code branch (the pins are this machine's AVX-512 one, bit for bit): the
#: quadratic family plays in float64 (measured under COMPATIBLE, AVX, AVX2: ≤ 5e-9); regression's MLP games in
#: float32, whose matmuls round by branch and compound over the steps: 128 float32 ulps (measured: ≤ 1.4e-6).
_PIN_RTOL = {"quadratic": 1e-6, "regression": 128 * float(np.finfo(np.float32).eps)}


@pytest.mark.parametrize("suite", list(_CELL_PINS))
def test_a_cell_on_the_cpu_device_is_unchanged(suite: str) -> None:
    from agents.learned import learned_agent
    from mtg_env.bench.sealed import _Floors, run_cell

    config = _tiny_cell_config(suite, device="cpu")
    assert _tiny_cell_config(suite).device == "cpu"  # the default
    rules = {"learned_mlp": learned_agent("learned_mlp", suite=suite).rule}
    cell = run_cell(config, suite, 1, _Floors(None, config.device), rules, "0" * 32, "validation")
    for name, pins in _CELL_PINS[suite].items():
        assert cell["gaps"][name] == pytest.approx([float.fromhex(p) for p in pins], rel=_PIN_RTOL[suite]), name
    # the cell records its draws, in the order of its gaps (scripts/cell_groups.py splits a cell by them)
    from agents.learned.family import draw_games
    from mtg_env.bench.sealed import _plain

    drawn = draw_games(suite, "validation", config.test_draws, config.test_seeds)
    assert cell["draws"] == [{"options": _plain(options), "seeds": list(seeds)} for options, seeds in drawn]
    redrawn = load_script("scripts/cell_groups.py", "cell_groups").redraw(cell, "validation", config.test_seeds)
    assert [_plain(d) for d in redrawn] == cell["draws"]  # a cell without draws is split by drawing them again
    assert sum(len(d["seeds"]) for d in cell["draws"]) == cell["games"]
    # its CIs resample the draws, each with its seeds (bootstrap_unit "draw", the default)
    groups = draw_groups(drawn)
    assert cell["bootstrap_unit"] == "draw" and list(groups) == [d for d in range(len(drawn)) for _ in drawn[d][1]]
    gaps = {k: np.asarray(v) for k, v in cell["gaps"].items()}
    mean = lambda v: v.mean(-1)  # noqa: E731
    for stat, fn in (("mean", mean), ("median", lambda v: np.median(v, axis=-1))):
        best = gaps[cell[f"best_{stat}"]]
        expected = paired_ratio_ci(gaps["learned_mlp"], best, fn, config.bootstrap_reps, groups=groups)
        assert cell["entrants"]["learned_mlp"][f"ratio_{stat}"] == pytest.approx(expected, rel=1e-12), stat
    if suite == "quadratic":  # bootstrap_unit "game": every game resampled on its own, the same games
        games = run_cell(replace(config, bootstrap_unit="game"), suite, 1, _Floors(None), rules, "0" * 32, "validation")
        assert games["bootstrap_unit"] == "game" and games["gaps"] == cell["gaps"]
        for stat, fn in (("mean", mean), ("median", lambda v: np.median(v, axis=-1))):
            best = gaps[cell[f"best_{stat}"]]
            expected = paired_ratio_ci(gaps["learned_mlp"], best, fn, config.bootstrap_reps)
            assert games["entrants"]["learned_mlp"][f"ratio_{stat}"] == pytest.approx(expected, rel=1e-12), stat
            assert expected != pytest.approx(cell["entrants"]["learned_mlp"][f"ratio_{stat}"], rel=1e-12), stat


def test_a_cells_games_split_by_a_drawn_option() -> None:
    """scripts/cell_groups.py: per value of the option, the games, the median gaps (a diverged game infinite) and the
    entrant's geometric mean ratio to the best baseline, game by game where both are finite (the rest counted); a
    player that is neither (here gradient descent) leaves out no game."""
    groups = load_script("scripts/cell_groups.py", "cell_groups").groups
    cell = {
        "best_median": "adam", "entrants": {"rule": {}},
        "draws": [{"options": {"trunk": "linear"}, "seeds": [0, 1]}, {"options": {"trunk": "mlp"}, "seeds": [0, 1]},
                  {"options": {"trunk": "linear"}, "seeds": [0, 1]}],
        "gaps": {"adam": [1.0, 2.0, 10.0, 20.0, 4.0, 1.0], "rule": [2.0, 8.0, 5.0, "inf", 4.0, 0.5],
                 "gradient": ["inf", "inf", 1.0, 1.0, 1.0, 1.0]},
    }  # fmt: skip
    split = groups(cell, "trunk")
    linear, mlp = split['"linear"'], split['"mlp"']
    assert linear["games"] == 4 and linear["not_finite"] == {"rule": 0}
    assert linear["geo_ratio"]["rule"] == pytest.approx((2 * 4 * 1 * 0.5) ** 0.25)
    assert linear["median"] == {"adam": 1.5, "rule": 3.0, "gradient": float("inf")}
    assert mlp["median"] == {"adam": 15.0, "rule": float("inf"), "gradient": 1.0}
    assert mlp["not_finite"] == {"rule": 1} and mlp["geo_ratio"] == {"rule": 0.5}
    with pytest.raises(SystemExit, match=r"'width'.*pick one"):
        groups(cell, "width")
    with pytest.raises(SystemExit, match="records no draws"):
        groups({k: v for k, v in cell.items() if k != "draws"}, "trunk")


def test_a_validation_cells_entrant_variants() -> None:
    """scripts/validation_cell.py: ``FILE:OPTION=VALUE,...`` is the file's rule with those options, ``head_step`` and
    ``trunk_step`` scale its trained steps and nothing else; a malformed entrant, a label that is taken and another
    cell's tuned knobs are refused, naming the fault."""
    module = load_script("scripts/validation_cell.py", "validation_cell")
    entrant = module._entrant
    path = str(ROOT / "agents/learned/weights/learned_mlp_digits.pt")
    _, plain = entrant(f"dig={path}")
    label, scaled = entrant(f"x={path}:head_step=2,trunk_step=0.5,anneal=0.25")
    assert label == "x" and scaled.config.anneal == 0.25 and plain.config.anneal == 0.0
    for name, factor in (("log_lr", 2.0), ("log_eta0", 2.0), ("trunk_log_lr", 0.5)):
        moved = float(getattr(scaled, name).detach()) - float(getattr(plain, name).detach())
        assert moved == pytest.approx(math.log(factor), abs=1e-6)
    same = {k: v for k, v in scaled.state_dict().items() if k not in ("log_lr", "log_eta0", "trunk_log_lr")}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in same.items())
    refused = {
        path: "expected LABEL=FILE",
        f"x={path}:anneal": "not OPTION=VALUE",
        f"x={path}:head_step=-1": "positive finite number",
        f"x={path}:head_step=True": "positive finite number",
        f"x={path}:trunk_step=1e999": "positive finite number",
        f"x={path}:anneal=half": "Python literal",
        f"x={path}:head_stpe=2": r"'x': options \['head_stpe'\]",
    }
    for bad, match in refused.items():
        with pytest.raises(SystemExit, match=match):
            entrant(bad)
    # labels: a baseline's would replace its gaps in the cell, a repeated one would drop an entrant
    with pytest.raises(SystemExit, match="'adam' is a tuned baseline's"):
        module.entrants([f"adam={path}"], ("gradient", "adam"))
    with pytest.raises(SystemExit, match="'x' is another entrant's"):
        module.entrants([f"x={path}", f"x={path}:head_step=2"], ("adam",))
    # the tuned knobs must be this cell's, by a cell file's fields or a tuned_FAMILY_RULE_MULTIPLE.json name
    k21 = ROOT / "docs/sealed/general/k21"
    baselines = ("gradient", "momentum", "adam", "rmsprop")
    assert module.tuned_knobs(k21 / "tuned/tuned_digits_mean_5.json", "digits", "mean", 5, baselines)["adam"]
    assert module.tuned_knobs(k21 / "digits_upgrad_2.json", "digits", "upgrad", 2, baselines)["adam"]
    for where, cell in (("tuned/tuned_digits_mean_5.json", ("digits", "mean", 2)), ("digits_upgrad_2.json",
                        ("digits", "mgda", 2))):  # fmt: skip
        with pytest.raises(SystemExit, match="give this cell's tuned knobs"):
            module.tuned_knobs(k21 / where, *cell, baselines)
    with pytest.raises(SystemExit, match="lacks the baselines"):
        module.tuned_knobs(k21 / "tuned/tuned_digits_mean_5.json", "digits", "mean", 5, (*baselines, "lion"))


def test_the_bar_within_each_group_of_a_cell() -> None:
    """scripts/cell_groups.py --bar: one group of all the games gives the cell's own recorded CIs bit for bit (K17's
    sum 1x: every draw has hidden=16); each group picks its own best baselines and resamples its own draws; a group
    whose entrant and best baseline are both at the floor is a tie."""
    module = load_script("scripts/cell_groups.py", "cell_groups_bar")
    cell = json.loads((ROOT / "docs/sealed/general/k17/regression_sum_1.json").read_text())
    (whole,) = module.group_bars(cell, "hidden").values()
    assert whole["games"] == cell["games"] and whole["best_mean"] == cell["best_mean"]
    assert list(whole["shipped"]["ratio_mean"]) == cell["entrants"]["shipped"]["ratio_mean"]
    assert list(whole["shipped"]["ratio_median"]) == cell["entrants"]["shipped"]["ratio_median"]
    toy = {
        "best_median": "adam", "tuned": {"adam": {}, "gradient": {}}, "entrants": {"rule": {}},
        "bootstrap_unit": "draw",
        "draws": [{"options": {"trunk": "linear"}, "seeds": [0, 1]}, {"options": {"trunk": "mlp"}, "seeds": [0, 1]},
                  {"options": {"trunk": "linear"}, "seeds": [0, 1]}, {"options": {"trunk": "mlp"}, "seeds": [0]}],
        "gaps": {"adam": [1.0, 2.0, 10.0, 20.0, 4.0, 1.0, 30.0], "gradient": [5.0, 5.0, 1.0, 1.0, 5.0, 5.0, 2.0],
                 "rule": [1e-10, 2e-10, 0.2, 0.9, 1e-10, 1e-10, 0.5]},
    }  # fmt: skip
    split = module.group_bars(toy, "trunk")
    linear, mlp = split['"linear"'], split['"mlp"']
    assert (linear["games"], mlp["games"]) == (4, 3)
    assert (linear["best_mean"], linear["best_median"]) == ("adam", "adam")
    assert (mlp["best_mean"], mlp["best_median"]) == ("gradient", "gradient")  # the group's own, not the cell's adam
    assert mlp["rule"]["ratio_mean"][0] == pytest.approx((1.6 / 3.0) / (4.0 / 3.0))
    assert not linear["rule"]["tie"] and not mlp["rule"]["tie"]  # adam's linear median (1.5) is not at the floor
    toy["gaps"]["adam"][:2] = toy["gaps"]["adam"][4:6] = [1e-10, 1e-10]
    assert module.group_bars(toy, "trunk")['"linear"']["rule"]["tie"]
    # the mlp group's units: its draws 1 and 3, of 2 and 1 games (by game: 3 units of 1)
    rule, gradient = np.array([0.2, 0.9, 0.5]), np.array([1.0, 1.0, 2.0])
    drawn = module.group_bars(toy, "trunk", reps=200)['"mlp"']["rule"]["ratio_mean"]
    assert drawn == paired_ratio_ci(rule, gradient, _mean, 200, groups=[1, 1, 3])
    by_game = module.group_bars({**toy, "bootstrap_unit": "game"}, "trunk", reps=200)['"mlp"']["rule"]["ratio_mean"]
    assert by_game == paired_ratio_ci(rule, gradient, _mean, 200) != drawn


def test_every_game_and_floor_of_a_cell_is_built_on_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a GPU: CUDA faked as present, and every suite a cell builds (the tuning and test games, the learned
    rule's games, the floors' games) recorded, then built on the CPU: each asked for the config's device."""
    import agents.learned.family as family
    from agents.learned import learned_agent
    from mtg_env.bench.sealed import _Floors, run_cell

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = _tiny_cell_config("quadratic", device="cuda")
    asked: list[str] = []
    real = family.build_suite

    def spy(suite: str, options: dict[str, Any], device: Any = "cpu", dtype: str = "float32") -> Any:
        asked.append(str(device))
        return real(suite, options, device="cpu", dtype=dtype)

    monkeypatch.setattr(family, "build_suite", spy)
    rules = {"learned_mlp": learned_agent("learned_mlp", suite="quadratic").rule}
    floors = _Floors(None, config.device)
    run_cell(config, "quadratic", 1, floors, rules, "0" * 32, "validation")
    # tuning rungs 0 and 1, one floor per tuning and test draw, and per test draw the baselines' game and the rule's
    assert len(asked) == 2 + 1 + 2 + 2 * 2 and set(asked) == {"cuda"}


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_cuda_device_without_a_gpu_is_refused_naming_it(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = f"device={device!r} asks for CUDA, but this torch build has no usable GPU; use device='cpu'"
    with pytest.raises(ValueError, match=re.escape(message)):
        SealedConfig(name="t", families=("quadratic",), entrants=(), device=device)
    with pytest.raises(ValueError, match=re.escape(message)):
        sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"], "device": device})
    with pytest.raises(ValueError, match="device must be a CPU or CUDA device, got 'meta'"):
        SealedConfig(name="t", families=("quadratic",), entrants=(), device="meta")
    assert sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"], "device": "cpu"}).device == "cpu"


def test_a_portfolio_entrant_plays_each_game_with_its_pick(tmp_path: Any) -> None:
    """The bench gives the driver the portfolio itself, not the agent's first expert: on regression it plays the
    regression specialist's gaps exactly."""
    from mtg_env.bench.sealed import run_sealed

    config = replace(
        _tiny_cell_config("regression"), entrants=(("learned_mlp", "regression"), ("learned_portfolio", "regression"))
    )
    report = run_sealed(config, tmp_path, progress=False, stream="validation")
    gaps = report["cells"][0]["gaps"]
    assert gaps["learned_portfolio"] == gaps["learned_mlp"]
    assert report["weights"]["learned_portfolio (regression)"]["weights"].endswith("learned_portfolio_general.pt")
