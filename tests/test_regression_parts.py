"""docs/sealed/regression/parts.py, the diagnostic that plays a learned rule's heads and trunk apart: what its tables
rest on. A pair (X, X) is baseline X as a sealed cell plays it, (learned, learned) the learned rule as a cell plays it,
and a pair mixes the halves it names."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.learned.checkpoint import load_rule
from agents.learned.family import draw_games
from mtg_env.bench.sealed_search import play_candidates, play_rule
from tests.conftest import ROOT, load_script

RULE = ROOT / "docs/sealed/regression/moves/moves_heads_s3.pt"
HORIZON = 10  # 10 steps: the last 10 % of the horizon is the final iterate alone


@pytest.fixture(scope="module")
def played() -> tuple[object, dict, dict, list[int], dict]:
    parts = load_script("docs/sealed/regression/parts.py", "regression_parts")
    rule = load_rule(RULE)[1]
    options, seeds = draw_games("regression", "tuning", 1, 2)[0]
    _, knobs = parts._cell("sum", 1)
    return parts, knobs, options, list(seeds), parts._play_parts(rule, options, HORIZON, list(seeds), "sum", knobs)


def test_a_baseline_paired_with_itself_is_the_cells_baseline(played: tuple) -> None:
    parts, knobs, options, seeds, out = played
    game = parts._game("regression", options, HORIZON, consensus="sum")
    for name, knob in knobs.items():
        start, final = play_candidates(game, [knob] * len(seeds), seeds)
        np.testing.assert_array_equal(out[f"{name}/{name}"][0], start.numpy())
        np.testing.assert_array_equal(out[f"{name}/{name}"][1], final.numpy(), err_msg=name)


def test_the_learned_rule_paired_with_itself_is_play_rule(played: tuple) -> None:
    _, _, options, seeds, out = played
    start, final = play_rule(load_rule(RULE)[1], "regression", options, HORIZON, seeds)
    np.testing.assert_array_equal(out["learned/learned"][0], start.numpy())
    np.testing.assert_array_equal(out["learned/learned"][1], final.numpy())
    # the last 10 % of 10 steps is the final iterate: averaging it changes nothing
    np.testing.assert_array_equal(out["learned, heads averaged over the last 10%"][1], final.numpy())
    assert not np.array_equal(out["learned, heads averaged over the last 50%"][1], final.numpy())


def test_a_mixed_pair_plays_the_heads_of_the_first_and_the_trunk_of_the_second(played: tuple) -> None:
    """With a baseline that moves only the heads (trunk ratio 0) and one that moves nothing (step 0): the pair (heads
    mover, still) moves the heads alone, the pair (still, heads mover) nothing; swapped halves would show."""
    parts, knobs, options, seeds, _ = played
    gradient = knobs["gradient"]
    pair = {"mover": {**gradient, "trunk_ratio": 0.0}, "still": {**gradient, "lr": 0.0}}
    out = parts._play_parts(load_rule(RULE)[1], options, HORIZON, seeds, "sum", pair)
    assert len(out) == (len(pair) + 1) ** 2 + 3  # every pair, and the learned rule's three tail averages
    np.testing.assert_array_equal(out["mover/still"][1], out["mover/mover"][1])
    assert np.all(out["mover/mover"][1] < out["mover/mover"][0])  # the heads alone lower the loss
    np.testing.assert_array_equal(out["still/mover"][1], out["still/mover"][0])  # nothing moved
    np.testing.assert_array_equal(out["still/still"][1], out["still/still"][0])
    # the learned rule's trunk with still heads is neither the learned rule nor the still game
    assert not np.array_equal(out["still/learned"][1], out["learned/learned"][1])
    assert not np.array_equal(out["still/learned"][1], out["still/still"][1])


def _scale_output(path: Path, values: dict[str, tuple[float, float, float]]) -> None:
    """A ``scale`` output with one group: each scaling's mean ratio, median ratio and geometric mean."""
    rows = [f"| linear | {k} | {m:.3f} [0.1, 9.0] | {md:.3f} [0.1, 9.0] | {g:.3f} | 0 / 0 | no |"
            for k, (m, md, g) in values.items()]  # fmt: skip
    head = ["| games | entrant | mean | median | geo | div | bar |", "|---|---|---|---|---|---|---|"]
    path.write_text(
        "\n".join([*head, "| linear (3) | best tuned: a/a by mean, a/a by median | | | | | |", *rows]) + "\n"
    )


def test_transfer_ranks_the_scalings_on_both_streams(tmp_path: Path) -> None:
    """Each statistic is read from its own column; ties share their average rank; a diverged scaling ranks last."""
    parts = load_script("docs/sealed/regression/parts.py", "regression_parts_transfer")
    names = ["trunk x1, heads x1", "trunk x2, heads x1", "trunk x0.5, heads x1", "trunk x1, heads x2"]
    tuning = [(0.9, 2.0, 5.0), (0.8, 1.0, 6.0), (1.2, 3.0, 7.0), (1.0, 4.0, 8.0)]
    validation = [(0.7, 3.0, 2.0), (0.5, 1.5, 2.0), (1.5, 4.5, 1.0), (0.9, math.inf, 0.5)]
    _scale_output(tmp_path / "t.txt", dict(zip(names, tuning, strict=True)))
    _scale_output(tmp_path / "v.txt", dict(zip(names, validation, strict=True)))
    rows = parts.transfer(str(tmp_path / "t.txt"), str(tmp_path / "v.txt")).splitlines()[4:]
    # mean: the same order (rho 1); the tuning pick x2 (0.8) is validation's best (0.5); the file (x1, x1) at 0.7
    assert rows[0].startswith(
        "| linear | mean ratio | 1.00 (4) | trunk x2, heads x1 | 0.500 | trunk x2, heads x1: 0.500 |"
    )
    assert rows[0].endswith("| 0.700 |")
    # median: x1 heads x2 is last on both streams, on validation by its divergence (inf): the same order again
    assert rows[1].startswith("| linear | median ratio | 1.00 (4) | trunk x2, heads x1 | 1.500 |")
    assert rows[1].endswith("| 3.000 |")  # the file's median on validation
    # geometric mean: tuning 1 2 3 4, validation 3.5 3.5 2 1 (a tie): rho = -0.95
    assert rows[2].startswith("| linear | geometric mean | -0.95 (4) | trunk x1, heads x1 | 2.000 | trunk x1, heads x2")


def test_ratio_rows_score_against_the_best_baseline_of_each_statistic() -> None:
    """moves.py's table, which parts.py writes too: the mean ratio against the least mean, the median ratio and the
    geometric mean against the least median, diverged games counted and left out of the geometric mean."""
    moves = load_script("docs/sealed/regression/moves.py", "regression_moves_rows")
    arrays = {
        "a": np.array([0.5, 0.5, 0.5, 0.5]),  # mean 0.5 (the least), median 0.5
        "b": np.array([0.1, 0.1, 0.2, 3.0]),  # mean 0.85, median 0.15 (the least)
        "c": np.array([2.0, 2.0, 2.0, 0.1]),  # mean 1.525, median 2.0
        "e": np.array([0.1, 0.2, 0.2, np.inf]),  # the entrant: median 0.2, one game diverged
    }
    rows = moves.ratio_rows(arrays, [("all", np.ones(4, bool))], ["a", "b", "c"], ["e"], name_best=True)
    assert rows[0] == "| all (4) | best tuned: a by mean, b by median | | | | | |"
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    assert cells[2].startswith("inf")  # a diverged game: the mean is infinite
    assert cells[3].startswith(f"{0.2 / 0.15:.3f}")  # median 0.2 against b's 0.15
    assert cells[4] == f"{math.exp(np.mean(np.log([1.0, 2.0, 1.0]))):.3f}"  # over the 3 games e did not diverge in
    assert cells[5:] == ["1 / 0", "no"]


def test_games_are_grouped_by_trunk_kind(played: tuple) -> None:
    parts = played[0]
    groups = parts._groups(["mlp", "linear", "mlp"])
    assert [g for g, _ in groups] == ["linear", "mlp"]
    np.testing.assert_array_equal(groups[0][1], [False, True, False])
    np.testing.assert_array_equal(groups[1][1], [True, False, True])
    assert [(g, m.tolist()) for g, m in parts._groups(["all", "all"])] == [("all", [True, True])]


def test_play_scaled_plays_the_rule_at_each_scaling(played: tuple) -> None:
    parts, knobs, options, seeds, _ = played
    out = parts._play_scaled(load_rule(RULE)[1], options, HORIZON, seeds, "sum", knobs)
    assert len(out) == len(knobs) + 25
    rule = load_rule(RULE)[1]
    rule.scale_trunk_step(2.0)
    rule.scale_head_step(0.5)
    np.testing.assert_array_equal(out["trunk x2, heads x0.5"][1], play_rule(rule, "regression", options, HORIZON,
                                                                           seeds)[1].numpy())  # fmt: skip
    assert not np.array_equal(out["trunk x2, heads x0.5"][1], out["trunk x0.5, heads x2"][1])
    gradient = parts._play_parts(load_rule(RULE)[1], options, HORIZON, seeds, "sum", knobs)["gradient/gradient"]
    np.testing.assert_array_equal(out["gradient/gradient"][1], gradient[1])


def test_scaled_writes_the_file_with_its_steps_scaled(tmp_path: Path) -> None:
    out = tmp_path / "scaled.pt"
    subprocess.run(
        [sys.executable, str(ROOT / "docs/sealed/regression/parts.py"), "scaled", str(RULE), "0.5", "0.25", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    before, after = load_rule(RULE)[1], load_rule(out)[1]
    torch.testing.assert_close(after.trunk_log_lr, before.trunk_log_lr + math.log(0.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(after.log_lr, before.log_lr + math.log(0.25), rtol=0, atol=1e-6)
    torch.testing.assert_close(after.log_eta0, before.log_eta0 + math.log(0.25), rtol=0, atol=1e-6)
    torch.testing.assert_close(after.net[0].weight, before.net[0].weight, rtol=0, atol=0)
    assert load_rule(out)[2]["scaled"] == {"from": str(RULE), "trunk": 0.5, "heads": 0.25}
