"""Coalitions (Example 1): v(S) from one engine batch equals each coalition's own sub-game; on a game of known
structure the best partition, Shapley values, TAG affinities and network selection find it; the core's LP on
games whose core is known; bad input is refused by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtg_env import QuadraticSuite
from mtg_env.cli import main
from mtg_env.coalitions import (
    COALITION_RULES,
    CoalitionConfig,
    CoalitionRule,
    analyse,
    best_partition,
    block_quadratic,
    coalition_mask,
    core,
    greedy_partition,
    in_core,
    loss_floors,
    members,
    play_coalitions,
    rand_index,
    select_networks,
    set_partitions,
    shapley_values,
    tag_affinities,
)
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game, reset, step

PNG = b"\x89PNG\r\n\x1a\n"


def game_from(table: dict[tuple[int, ...], float], m: int) -> np.ndarray:
    """A characteristic function over every bitmask from {coalition: v}; coalitions not listed are worth 0."""
    v = np.zeros(1 << m)
    for coalition, worth in table.items():
        v[coalition_mask(coalition)] = worth
    return v


@pytest.fixture(scope="module")
def blocks22() -> object:
    """The two-block game {0, 1} | {2, 3}, analysed once (deterministic, float64)."""
    return analyse(block_quadratic((2, 2)), horizon=10)


@pytest.fixture(scope="module")
def blocks32() -> object:
    """Unequal blocks {0, 1, 2} | {3, 4}."""
    return analyse(block_quadratic((3, 2)), horizon=10)


# ------------------------------------------------------------------------------------- the batch is exact
def random_user_game(seed: int = 3) -> QuadraticSuite:
    """Four heterogeneous tasks (unequal heads: the engine's non-uniform path), a random start."""
    g = torch.Generator().manual_seed(seed)
    n, heads = 3, (1, 2, 2, 3)
    mats, vecs = [], []
    for h in heads:
        q = torch.randn(h + n, h + n, generator=g, dtype=torch.float64)
        mats.append(q @ q.T / (h + n) + torch.eye(h + n, dtype=torch.float64))
        vecs.append(torch.randn(h + n, generator=g, dtype=torch.float64))
    return QuadraticSuite(mats, vecs, n, dtype="float64")


@pytest.mark.parametrize("rule", ["sum", "mean", "upgrad"])
def test_each_game_of_the_batch_is_its_coalitions_own_sub_game(rule: str) -> None:
    """ℓ_m^S read from the one batch of all 15 coalitions equals the loss of a game whose tasks are S only, played
    on its own by the engine with the same start and steps: the membership mask makes game b the sub-game of
    S_b (non-members' proposals never reach the trunk, their heads never move, other games never leak in)."""
    suite = random_user_game()
    config = CoalitionConfig(horizon=25, lr=0.05, rule=rule, seeds=(4, 9))
    masks = tuple(range(1, 16))
    played = play_coalitions(suite, masks, config)
    assert played.games == 30 and played.losses.shape == (2, 15, 4)
    for r, seed in enumerate(config.seeds):
        heads0, trunk0 = suite.params_for_seed(seed)
        for c, mask in enumerate(masks):
            team = members(mask)
            sub = QuadraticSuite([suite._A64[k] for k in team], [suite._b64[k] for k in team], 3, dtype="float64")
            game = Game(sub, consensus_rule(rule), horizon=25)
            mine = torch.cat([heads0[suite.head_offsets[k] : suite.head_offsets[k + 1]] for k in team])
            state, _ = reset(game, [seed], heads=mine[None], trunk=trunk0[None])
            for _ in range(25):
                state, _ = step(game, state, (-0.05 * state.head_grads, -0.05 * state.jacobian))
            expected = sub.batched_losses(state.heads, state.trunk)[0].numpy()
            got = played.losses[r, c, list(team)]
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=f"seed {seed}, S={team}")
            outside = [k for k in range(4) if k not in team]
            assert np.isnan(played.losses[r, c, outside]).all()  # non-members never count


def test_the_rule_ignores_non_members_rows_even_when_not_finite() -> None:
    rule = CoalitionRule(torch.tensor([[True, False, True], [False, True, False]]))
    nan, inf = math.nan, math.inf
    proposals = torch.tensor([[[1.0, 2.0], [inf, nan], [3.0, 4.0]], [[nan, 0.0], [5.0, 6.0], [1.0, 1.0]]])
    assert torch.equal(rule(proposals), torch.tensor([[4.0, 6.0], [5.0, 6.0]]))
    mean = CoalitionRule(torch.tensor([[True, False, True]]), "mean")
    assert torch.equal(mean(proposals[:1]), torch.tensor([[2.0, 3.0]]))
    assert repr(mean) == "CoalitionRule(members=<bool tensor (1, 3)>, rule='mean')"


# ----------------------------------------------------------------------------- the game of known structure
def test_the_best_partition_is_the_two_blocks(blocks22: object, blocks32: object) -> None:
    """Trunk optima agree within a block and conflict across: the best coalition structure is the blocks, uniquely
    (no tie), and greedy merging on the same v finds it too."""
    for result, blocks in ((blocks22, (0b0011, 0b1100)), (blocks32, (0b00111, 0b11000))):
        assert result.best.blocks == blocks and result.best.ties == 1
        v = result.characteristic()
        assert greedy_partition(lambda b, v=v: [v[s] for s in b], result.num_players).blocks == blocks
        # why: a coalition within a block trains its trunk faster (gradients add under `sum`) and saves loss;
        # every coalition across blocks pulls the trunk to a compromise and loses
        for s in range(1, len(v)):
            within = any(s & ~b == 0 for b in blocks)
            if within and bin(s).count("1") > 1:
                assert v[s] > 0, f"coalition {members(s)}"
            elif not within:
                assert v[s] < 0, f"coalition {members(s)}"


def test_shapley_values_sum_to_the_grand_coalition_and_are_equal_within_a_block(blocks32: object) -> None:
    phi = blocks32.shapley
    grand = blocks32.value(0b11111)
    assert phi.sum() == pytest.approx(grand, rel=1e-12, abs=1e-12)
    assert phi[0] == pytest.approx(phi[1], rel=1e-12) and phi[1] == pytest.approx(phi[2], rel=1e-12)
    assert phi[3] == pytest.approx(phi[4], rel=1e-12)
    assert phi[0] != pytest.approx(phi[3], rel=1e-6)  # the blocks differ in size: not symmetric across


def test_the_grand_core_is_empty_and_the_blocks_core_is_not(blocks22: object) -> None:
    """Sharing one trunk across conflicting blocks destroys value (v(N) < 0 < v(blocks)), so no split of v(N) keeps
    the blocks together: the classical core is empty; the core of the best partition is not, and its point gives
    each block its worth (equal shares by symmetry)."""
    v = blocks22.characteristic()
    assert not blocks22.core.nonempty and blocks22.core.epsilon < 0
    structure = blocks22.structure_core
    assert structure.nonempty and structure.structure == (0b0011, 0b1100)
    assert in_core(v, structure.point, tol=1e-12, structure=structure.structure)
    np.testing.assert_allclose(structure.point, [v[0b0011] / 2] * 2 + [v[0b1100] / 2] * 2, rtol=1e-9)


def test_tag_affinities_group_the_blocks(blocks22: object) -> None:
    z = blocks22.tag_affinity
    within = [(0, 1), (1, 0), (2, 3), (3, 2)]
    across = [(i, j) for i in (0, 1) for j in (2, 3)] + [(j, i) for i in (0, 1) for j in (2, 3)]
    assert all(z[i, j] > 0 for i, j in within) and all(z[i, j] < 0 for i, j in across)
    assert blocks22.tag_partition.blocks == blocks22.best.blocks
    assert blocks22.summary()["tag"]["agrees_with_best_partition"] is True
    assert blocks22.standley.networks == blocks22.best.blocks  # Standley's selection, budget 2


def test_tag_affinity_is_the_lookahead_loss_ratio_of_fifty_et_al() -> None:
    """At the start (tag_every = horizon: one lookahead), Z_{i→j} = 1 − ℓ̃_j(Ψ − β g_i)/ℓ̃_j(Ψ), computed here by
    hand from the quadratic losses (ℓ̃ = ℓ − min ℓ)."""
    suite = random_user_game()
    config = CoalitionConfig(horizon=3, lr=0.07, tag_every=3, seeds=(5,))
    z = tag_affinities(suite, config)
    heads, trunk = suite.params_for_seed(5)
    floors = loss_floors(suite)
    _, _, jac = suite.closed_form(heads[None], trunk[None])
    now = suite.batched_losses(heads[None], trunk[None])[0].numpy() - floors
    for i in range(4):
        ahead = suite.batched_losses(heads[None], (trunk - 0.07 * jac[0, i])[None])[0].numpy() - floors
        np.testing.assert_allclose(z[i], 1 - ahead / now, rtol=1e-10)


# ------------------------------------------------------------------------------------------ what v measures
def test_in_a_convex_game_sharing_never_beats_training_alone_at_convergence() -> None:
    """A shared trunk is a constraint: once every coalition has converged, v(S) ≤ 0 for every S (up to
    round-off) on a random quadratic game, so the grand partition into singletons is (weakly) best."""
    result = analyse(QuadraticSuite(num_tasks=3, dtype="float64", game_seed=2), horizon=3000)
    assert result.values.max() <= 1e-9
    assert result.values.min() < -1e-3  # and some coalitions lose for real


def test_under_mean_consensus_identical_tasks_gain_nothing_and_ties_go_to_fewer_trunks() -> None:
    """`mean` moves a coalition of identical tasks exactly as one of them alone, so v(block) = 0: four partitions
    tie at 0 (blocks whole or split), and the one with fewest blocks is reported."""
    result = analyse(block_quadratic((2, 2)), horizon=10, rule="mean")
    assert result.value(0b0011) == 0.0 and result.value(0b1100) == 0.0
    assert result.best.blocks == (0b0011, 0b1100) and result.best.ties == 4


def test_greedy_method_finds_the_blocks_beyond_the_exhaustive_limit() -> None:
    """14 tasks (16383 coalitions): greedy merging plays a batch per round and finds the two blocks."""
    result = analyse(block_quadratic((7, 7)), horizon=10, method="greedy")
    assert result.best.blocks == (0b00000001111111, 0b11111110000000)
    assert len(result.masks) < 500 and result.shapley is None and result.core is None
    assert result.tag_partition.blocks == result.best.blocks


# ------------------------------------------------------------------------------- cooperative game theory
def test_shapley_values_of_the_glove_game_and_its_single_point_core() -> None:
    """One left glove (player 0), two right gloves: φ = (2/3, 1/6, 1/6); the core is the one point (1, 0, 0)."""
    v = game_from({(0, 1): 1, (0, 2): 1, (0, 1, 2): 1}, 3)
    np.testing.assert_allclose(shapley_values(v), [2 / 3, 1 / 6, 1 / 6], rtol=1e-12)
    result = core(v)
    assert result.nonempty and result.epsilon == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(result.point, [1.0, 0.0, 0.0], atol=1e-9)
    assert not in_core(v, shapley_values(v))  # the Shapley value lies outside this core


def test_the_majority_game_has_an_empty_core() -> None:
    """v(S) = 1 for |S| ≥ 2 of three players: any split of 1 leaves a pair with less than 1. Least core ε = −1/3,
    at the equal split."""
    v = game_from({(0, 1): 1, (0, 2): 1, (1, 2): 1, (0, 1, 2): 1}, 3)
    result = core(v)
    assert not result.nonempty
    assert result.epsilon == pytest.approx(-1 / 3, abs=1e-9)
    np.testing.assert_allclose(result.point, [1 / 3] * 3, atol=1e-9)


def test_the_core_of_a_coalition_structure() -> None:
    """Two pairs worth 1 each and a grand coalition worth 0: the classical core is empty, the core of the
    structure {0, 1} | {2, 3} is not (least core ε = 1/2 at (1/2, 1/2, 1/2, 1/2))."""
    table = {s: float(sum(p <= set(s) for p in ({0, 1}, {2, 3}))) for r in range(1, 4) for s in _subsets(4, r)}
    v = game_from({**table, (0, 1, 2, 3): 0.0}, 4)
    assert not core(v).nonempty
    split = core(v, structure=[0b0011, 0b1100])
    assert split.nonempty and split.epsilon == pytest.approx(0.5, abs=1e-9)
    np.testing.assert_allclose(split.point, [0.5] * 4, atol=1e-9)
    with pytest.raises(ValueError, match="structure must be a partition"):
        core(v, structure=[0b0011, 0b0110])


def _subsets(m: int, r: int) -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.combinations(range(m), r))


def test_shapley_axioms_on_random_games() -> None:
    """Efficiency, symmetry, the null player and additivity, on random games of 5 players."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.normal(size=32)
        v[0] = 0.0
        w = rng.normal(size=32)
        w[0] = 0.0
        phi = shapley_values(v)
        assert phi.sum() == pytest.approx(v[-1], abs=1e-12)
        np.testing.assert_allclose(shapley_values(v + w), phi + shapley_values(w), atol=1e-12)
        # make player 4 null (adds nothing to any coalition) and players 0 and 1 substitutes
        null = v.copy()
        for s in range(32):
            if s >> 4 & 1:
                null[s] = null[s & ~16]
        sym = null.copy()
        for s in range(32):
            swapped = (s & ~3) | (s & 1) << 1 | (s >> 1 & 1)
            sym[s] = sym[swapped] = (null[s] + null[swapped]) / 2
        phi = shapley_values(sym)
        assert phi[4] == pytest.approx(0.0, abs=1e-12) and phi[0] == pytest.approx(phi[1], abs=1e-12)


def test_set_partitions_count_bell_numbers_and_best_partition_beats_all() -> None:
    assert [len(set_partitions(m)) for m in range(1, 9)] == [1, 2, 5, 15, 52, 203, 877, 4140]
    for part in set_partitions(5):
        assert sum(part) == 31 and len(set(part)) == len(part)
    rng = np.random.default_rng(1)
    v = rng.normal(size=64)
    v[0] = 0.0
    best = best_partition(v)
    assert best.value == pytest.approx(max(sum(v[b] for b in p) for p in set_partitions(6)))
    assert best_partition(v, num_blocks=2).blocks in [p for p in set_partitions(6) if len(p) == 2]


def test_network_selection_may_overlap() -> None:
    """Standley et al. serve each task from the best chosen network containing it: with a budget of 2 networks the
    best pick shares task 1 between {0, 1} and {1, 2}, which no partition can."""
    nan = math.nan
    losses = np.array(
        [[nan] * 3, [1, nan, nan], [nan, 1, nan], [0.5, 0.5, nan], [nan, nan, 1], [0.9, nan, 0.9], [nan, 0.6, 0.5],
         [0.8, 0.8, 0.8]]
    )  # fmt: skip
    selection = select_networks(losses, 2)
    assert selection is not None and selection.networks == (0b011, 0b110)
    assert selection.value == pytest.approx(3.0 - 1.5)
    single = select_networks(losses, 1)
    assert single is not None and single.networks == (0b111,)


def test_rand_index() -> None:
    assert rand_index((3, 12), (3, 12), 4) == 1.0
    assert rand_index((15,), (1, 2, 4, 8), 4) == 0.0
    assert rand_index((3, 4, 8), (3, 12), 4) == pytest.approx(5 / 6)


# -------------------------------------------------------------------------------------------- the outputs
def test_write_makes_the_table_json_and_labelled_figures(blocks22: object, tmp_path: Path) -> None:
    paths = blocks22.write(tmp_path)
    names = {p.name for p in paths}
    assert {"coalitions.json", "coalitions.md", "values.png", "shapley.png", "tag_affinity.png"} <= names
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    data = json.loads((tmp_path / "coalitions.json").read_text())
    assert len(data["coalitions"]) == 15 and data["best_partition"]["labels"] == [
        "{quadratic_0, quadratic_1}",
        "{quadratic_2, quadratic_3}",
    ]
    assert data["shapley_sum"] == pytest.approx(data["v_grand"])
    assert data["core"]["nonempty"] is False and data["structure_core"]["nonempty"] is True
    table = (tmp_path / "coalitions.md").read_text()
    assert "## Best partition" in table and "| {0, 1} | 2 |" in table and "![values.png](values.png)" in table


def test_cli_writes_the_analysis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "co"
    assert main(["coalitions", "--blocks", "2,2", "--steps", "10", "--out", str(out)]) == 0
    data = json.loads((out / "coalitions.json").read_text())
    assert data["best_partition"]["blocks"] == [3, 12] and data["tag"]["agrees_with_best_partition"]
    printed = capsys.readouterr().out
    assert "best partition (exhaustive): {0, 1} | {2, 3}" in printed and "quadratic blocks 2,2" in printed
    options = ["--option", "num_tasks=3", "--option", "trunk=mlp", "--option", "task_sizes=[20, 30, 40]"]
    args = ["coalitions", "--suite", "regression", *options, "--steps", "5", "--lr", "0.05", "--out", str(out)]
    assert main(args) == 0
    suite = json.loads((out / "coalitions.json").read_text())["suite"]
    assert (suite["num_tasks"], suite["trunk"], suite["task_sizes"]) == (3, "mlp", [20, 30, 40])


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"suite": "quadratic", "num_tasks": 13}, ValueError, r"13 tasks: .*limited to M <= 12.*method='greedy'"),
        ({"tasks": []}, ValueError, r"tasks is empty"),
        ({"tasks": [0, 0]}, ValueError, r"tasks must not repeat"),
        ({"tasks": [5]}, ValueError, r"tasks\[0\] must be an int in \[0, 2\]"),
        ({"horizon": 0}, ValueError, r"horizon must be an int >= 1"),
        ({"horizon": 2.5}, TypeError, r"horizon must be an int"),
        ({"lr": -0.1}, ValueError, r"lr must be a finite number > 0"),
        ({"trunk_lr": math.nan}, ValueError, r"trunk_lr must be a finite number > 0"),
        ({"seeds": []}, ValueError, r"seeds must be a non-empty list"),
        ({"seeds": [-1]}, ValueError, r"seeds\[0\]"),
        ({"rule": "pcgrad"}, ValueError, r"rule must be one of \['sum', 'mean'"),
        ({"split": "test"}, ValueError, r"split must be one of \['eval', 'train'\]"),
        ({"method": "fast"}, ValueError, r"method must be one of \['exhaustive', 'greedy'\]"),
        ({"tag_every": 0}, ValueError, r"tag_every must be an int >= 1"),
        ({"lr": 5.0, "horizon": 50}, ValueError, r"diverged.*lower lr \(5.0\) or trunk_lr"),
    ],
)
def test_bad_input_is_refused_by_name(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        analyse(**{"suite": "quadratic", "dtype": "float64", "horizon": 5, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shapley_values([0.0, 1.0, 2.0]), r"values must list v\(S\) for every coalition bitmask"),
        (lambda: shapley_values([1.0, 1.0]), r"values\[0\] is v\(empty set\) and must be 0"),
        (lambda: core([0.0, math.nan]), r"values must be finite"),
        (lambda: best_partition(np.zeros(1 << 9)), r"limited to M <= 8 players, got M = 9; use greedy_partition"),
        (lambda: block_quadratic(()), r"blocks must be a non-empty list"),
        (lambda: block_quadratic((2, 2), coupling=1.0), r"coupling must be a finite number in \[0.0, 1.0\)"),
        (lambda: block_quadratic((1, 1, 1), trunk_dim=1), r"3 blocks need trunk_dim >= 2"),
        (lambda: CoalitionRule(torch.tensor([[False, False]])), r"every game's coalition must have at least one"),
    ],
)
def test_bad_game_input_is_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_cli_refuses_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for args, message in (
        (["--suite", "digits", "--blocks", "2,2"], "--blocks builds a quadratic game"),
        (["--blocks", "2,x"], "--blocks must be comma-separated integers"),
        (["--steps", "0"], "horizon must be an int >= 1"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--option", "num_tasks"], "--option must look like KEY=VALUE"),
        (["--suite", "regression", "--option", "bogus=1"], r"suite 'regression' has no option\(s\) \['bogus'\]"),
        (["--blocks", "2,2", "--option", "num_tasks=3"], "--option does not apply to the --blocks game"),
    ):
        with pytest.raises(SystemExit, match=message):
            main(["coalitions", *args, "--out", str(tmp_path / "x")])
    assert set(COALITION_RULES) >= {"sum", "mean"}
