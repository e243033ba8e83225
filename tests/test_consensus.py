"""Consensus rules: each rule's proven property on random proposal matrices, and the convention layer."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

import mtg_env
from mtg_env.consensus import RULE_TABLE, AggregatorRule, consensus_rule, mean_rule, sum_rule
from mtg_env.consensus.loss_rules import LOSS_RULES
from mtg_env.metrics import min_norm_convex_combination, pareto_stationarity
from tests.conftest import steps_action

RANDOMIZED = {name for name, spec in RULE_TABLE.items() if spec.randomized}
DETERMINISTIC = [name for name in RULE_TABLE if name not in RANDOMIZED]
NEVER_CONFLICT = ["upgrad", "nash_mtl", "mgda", "imtl_g"]


def proposals(seed: int, m: int = 4, n: int = 7, conflict: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(m, n, generator=g, dtype=torch.float64)
    if conflict:  # make the first two rows clearly conflict
        p[1] = -0.7 * p[0] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return p * torch.rand(m, 1, generator=g, dtype=torch.float64).add(0.2)  # unequal norms


def rule(name: str, m: int = 4) -> mtg_env.ConsensusRule:
    return consensus_rule(name, num_tasks=m)


def test_registry_and_resolution() -> None:
    assert set(mtg_env.CONSENSUS_RULES) == {
        "sum", "mean", "mgda", "pcgrad", "cagrad", "nash_mtl", "upgrad", "imtl_g", "aligned_mtl",
        "dualproj", "graddrop", "random", "krum", "trimmed_mean",
        "uw", "dwa", "famo", "gradvac", "fairgrad", "db_mtl", "gls", "gradnorm",
    }  # fmt: skip
    assert consensus_rule("sum") is sum_rule and consensus_rule("mean") is mean_rule
    assert repr(consensus_rule("cagrad", num_tasks=3, c=0.3)) == "consensus_rule('cagrad', c=0.3)"
    custom = lambda p: p[0]  # noqa: E731
    assert consensus_rule(custom) is custom


def test_bad_names_and_options_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"unknown consensus rule 'median'; available: \['sum', 'mean', 'mgda'"):
        consensus_rule("median")
    with pytest.raises(
        ValueError,
        match=r"'cagrad' has no option\(s\) \['alpha'\] \(consensus_kwargs\); its options are \['c', 'norm_eps'\]",
    ):
        consensus_rule("cagrad", num_tasks=2, alpha=1)
    with pytest.raises(ValueError, match="'sum' takes no options"):
        consensus_rule("sum", c=1)
    with pytest.raises(ValueError, match="'krum' needs at least 3 tasks, got 2"):
        mtg_env.parallel_env(suite="toy2d", consensus="krum")
    with pytest.raises(ValueError, match="trimmed_mean with trim_number=2 needs more than 4 tasks, got 4"):
        consensus_rule("trimmed_mean", num_tasks=4, trim_number=2)
    with pytest.raises(TypeError, match="rule name or a callable"):
        consensus_rule(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_sum_and_mean_are_exact(seed: int) -> None:
    p = proposals(seed)
    torch.testing.assert_close(sum_rule(p), p[0] + p[1] + p[2] + p[3], rtol=0, atol=1e-14)
    torch.testing.assert_close(mean_rule(p), (p[0] + p[1] + p[2] + p[3]) / 4, rtol=0, atol=1e-14)


@pytest.mark.parametrize("seed", range(5))
def test_mgda_is_the_two_task_min_norm_point_of_the_segment(seed: int) -> None:
    p = proposals(seed, m=2)
    a, b = p[0], p[1]
    gamma = float(torch.clamp((b - a) @ b / (a - b).square().sum(), 0, 1))  # argmin ‖γa + (1−γ)b‖
    expected = gamma * a + (1 - gamma) * b
    torch.testing.assert_close(rule("mgda", 2)(p), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_mgda_is_the_exact_min_norm_point_of_the_hull(seed: int) -> None:
    p = proposals(seed, m=6)
    d = rule("mgda", 6)(p)
    # Non-negative weights reproducing d with Σw = 1 (a heavily weighted row enforces the sum).
    a = np.vstack([p.numpy().T, 1e3 * np.ones((1, 6))])
    target = np.concatenate([d.numpy(), [1e3]])
    _w, residual = nnls(a, target)
    assert residual < 1e-9, f"mgda output is {residual:.3g} away from the hull"
    # and no point of the hull is shorter: ⟨p_m, d⟩ ≥ ‖d‖² for every row (the optimality condition)
    assert (p @ d >= d @ d - 1e-12).all()
    with pytest.raises(ValueError, match="'mgda' is solved exactly and takes no options, got \\['epsilon'\\]"):
        consensus_rule("mgda", num_tasks=4, epsilon=1e-9)


@pytest.mark.parametrize(("name", "seed"), list(itertools.product(NEVER_CONFLICT, range(5))))
def test_rule_never_conflicts_with_a_proposal(name: str, seed: int) -> None:
    p = proposals(seed, conflict=name != "nash_mtl")  # Nash-MTL: matrices its solver handles
    options = {}
    if name == "upgrad":
        # torchjd regularises the Gram matrix (reg_eps 1e-4) before its dual-cone QP, which can leave a
        # conflict of a few 1e-3 on nearly opposed rows; the exact projection never conflicts.
        from torchjd.linalg import QuadprogProjector

        options["projector"] = QuadprogProjector(norm_eps=0.0, reg_eps=0.0)
    d = consensus_rule(name, num_tasks=4, **options)(p)
    dots = p @ d
    assert (dots >= -1e-9 * p.norm(dim=1) * d.norm()).all(), f"{name}: <p_m, d> = {dots.tolist()}"
    assert d.norm() > 0


@pytest.mark.parametrize("seed", range(5))
def test_upgrad_default_conflicts_at_most_by_its_regularisation(seed: int) -> None:
    p = proposals(seed)
    d = rule("upgrad")(p)
    assert (p @ d >= -1e-2 * p.norm(dim=1) * d.norm()).all()


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_task_closed_form(seed: int) -> None:
    p = proposals(seed, m=2)
    a, b = p[0], p[1]
    dot = a @ b
    assert dot < 0  # the rows were built to conflict
    a_proj = a - dot / (b @ b) * b
    b_proj = b - dot / (a @ a) * a
    torch.testing.assert_close(rule("pcgrad", 2)(p), a_proj + b_proj, rtol=1e-10, atol=1e-10)
    q = proposals(seed, m=2, conflict=False).abs()  # no conflict: PCGrad is the plain sum
    torch.testing.assert_close(rule("pcgrad", 2)(q), q.sum(0), rtol=1e-12, atol=1e-12)


HOMOGENEOUS = [name for name, spec in RULE_TABLE.items() if spec.homogeneous]
SCALES = [1e-8, 1e-5, 1e-3, 1e-2, 3.7, 1e3, 1e8]


@pytest.mark.parametrize(("name", "seed"), list(itertools.product(HOMOGENEOUS, range(3))))
def test_homogeneous_rules_are_equivariant_to_every_positive_scale(name: str, seed: int) -> None:
    # C(s·P) = s·C(P) from s = 1e-8 to 1e8: proposals carry the agents' step sizes, and torchjd's absolute
    # cut-offs (a squared norm below 1e-4) once made cagrad return 0 and upgrad the mean at small s. For
    # Nash-MTL, matrices its solver handles (its failures are tested separately); a randomized rule gets the
    # same seed for both calls.
    p = proposals(seed, m=3, n=40, conflict=name != "nash_mtl")
    kwargs = {"seed": seed} if RULE_TABLE[name].randomized else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)  # ECOS's remark
        base = consensus_rule(name, num_tasks=3, **kwargs)(p)  # fresh instances: no shared history
        assert base.norm() > 0
        for s in SCALES:
            scaled = consensus_rule(name, num_tasks=3, **kwargs)(s * p)
            torch.testing.assert_close(scaled, s * base, rtol=1e-7, atol=0.0, msg=lambda m, s=s: f"s={s}: {m}")
        assert torch.equal(consensus_rule(name, num_tasks=3, **kwargs)(0 * p), torch.zeros(40, dtype=p.dtype))


@pytest.mark.parametrize("name", ["cagrad", "upgrad", "dualproj"])
def test_small_proposals_are_not_rounded_to_zero_or_the_mean(name: str) -> None:
    # AdamAgent(lr=1e-3)-sized proposals on conflicting tasks: the rule must act as it does at unit scale
    # (before the fix cagrad returned exactly 0 and upgrad / dualproj fell back to the mean).
    p = proposals(0, m=3, n=40) * 1e-3
    d = rule(name, 3)(p)
    assert d.norm() > 0.1 * p.norm(dim=1).min()
    assert (d - mean_rule(p)).norm() > 1e-3 * d.norm(), f"{name} fell back to the mean"


def test_nash_mtl_step_is_its_unit_direction_times_the_mean_proposal_norm() -> None:
    p = proposals(1, m=3, n=10, conflict=False) * 1e-3
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        d = rule("nash_mtl", 3)(p)
        capped = consensus_rule("nash_mtl", num_tasks=3, max_norm=1e-4)(p)
    torch.testing.assert_close(d.norm(), p.norm(dim=1).mean(), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(capped, d * (1e-4 / d.norm()), rtol=1e-12, atol=0.0)
    with pytest.raises(ValueError, match=r"consensus_kwargs\['max_norm'\] of 'nash_mtl' must be a finite number >= 0"):
        consensus_rule("nash_mtl", num_tasks=3, max_norm=-1.0)
    with pytest.raises(TypeError, match=r"consensus_kwargs\['max_norm'\] of 'nash_mtl' must be a finite number >= 0"):
        consensus_rule("nash_mtl", num_tasks=3, max_norm=True)


def test_fairgrad_is_scale_invariant_at_alpha_1() -> None:
    # FairGrad with α = 1 solves G Gᵀ w = 1/w unnormalised: C(s·P) = C(P) (its RULE_TABLE line says so).
    p = proposals(0, conflict=False) * 1e-2
    torch.testing.assert_close(rule("fairgrad")(3.7 * p), rule("fairgrad")(p), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nash_mtl_really_solves_the_bargaining_problem(seed: int) -> None:
    # The Nash bargaining weights satisfy G α = 1/α (G the normalised Gram), i.e. ⟨g_m, d⟩ ∝ 1/α_m with
    # d = Σ α_m g_m. Recover α from d and check that d is that combination, and that it is not the
    # equal-weights fallback a failing solver gives (cvxpy without ECOS, or an ECOS failure).
    import ecos  # noqa: F401 - the solver torchjd's Nash-MTL uses; a missing one is a failing test

    p = proposals(seed, m=3, n=10, conflict=False) * 1e-2
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)  # ECOS's own remark
        r = rule("nash_mtl", 3)
        d = r(p)
    assert r.failures == 0
    alpha = 1.0 / (p @ d)
    assert (alpha > 0).all()
    combination = alpha @ p
    assert combination @ d / (combination.norm() * d.norm()) > 1 - 1e-4
    equal = p.sum(0)
    assert equal @ d / (equal.norm() * d.norm()) < 0.99, "Nash-MTL returned the equal-weights direction"


def test_an_ecos_miss_is_refined_to_the_bargaining_solution_and_counted() -> None:
    p = proposals(3, m=3, n=10, conflict=False) * 1e-2  # torchjd's ECOS solve misses on this one
    r = rule("nash_mtl", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a repaired step is not a failure: no warning
        d = r(p)
    assert (r.refinements, r.failures) == (1, 0)
    dots = p @ d
    assert (dots > 0).all()
    combination = (1.0 / dots) @ p
    assert float(combination @ d / (combination.norm() * d.norm())) > 1 - 1e-12
    r.reset()
    assert (r.refinements, r.failures) == (0, 0)


def test_nash_mtl_names_a_missing_bargaining_solution() -> None:
    g = torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=torch.float64) * 1e-2  # opposed: no common descent
    r = rule("nash_mtl", 2)
    # (numpy inside cvxpy evaluates 1 / (G α) = 1 / 0 and then inf · 0 on this degenerate problem: the rule keeps
    # those warnings to its solve, and says what failed in its own)
    with pytest.warns(mtg_env.ConsensusWarning, match="no common descent direction"):
        r(g)
    assert r.failures == 1


def test_cagrad_stops_the_trunk_where_one_proposal_is_1e4_times_shorter_than_the_others() -> None:
    # torchjd's CAGrad returns 0 where its solve's combination of the Gram-normalised proposals is under norm_eps
    # (1e-4) long, its reading of the Pareto front: a task near its own optimum then stops every task's trunk move
    # (what let the learned rules' unplayed proposals grow on the stiff quadratics, docs/results/learned.md,
    # thirty-third session)
    # (the combination's length is 0.27 k here: at 1e-3 and 1e-4 it is 2.7 and 3.8 times from norm_eps)
    p = proposals(0, m=3, n=8, conflict=False)
    r = rule("cagrad", 3)
    for k, moves in ((1e-2, True), (1e-3, True), (1e-4, False), (1e-5, False)):
        q = p.clone()
        q[0] = q[0] * (k * float(p[1].norm()) / float(p[0].norm()))
        assert (float(r(q).norm()) > 0.1 * float(q[1:].mean(0).norm())) == moves, k


def test_nash_mtl_steps_from_a_zero_previous_weight_under_warnings_as_errors() -> None:
    # torchjd's solve can return a weight of 0 (the stiff quadratic of tests/test_learned_stability.py under nash_mtl,
    # condition 1e4, game 1001, near step 950); warm-started from it, cvxpy evaluates 1/0 in its problem's data and
    # numpy warned, which under -W error (this suite's setting) stopped the game. The step is the fresh solve's.
    p = proposals(0, m=3, n=8, conflict=False)
    r = rule("nash_mtl", 3)
    fresh = r.init_state(3, 8, torch.float64, "cpu")
    move, state = r.step(fresh, p, 0)
    warm = state | {"nash_alpha": torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, after = r.step(warm, p, 1)
    assert int(after["failures"]) == 0
    torch.testing.assert_close(again, move, rtol=1e-12, atol=0.0)


def test_randomized_rules_follow_the_bound_generator_and_leave_the_global_rng_alone() -> None:
    p = proposals(1)
    for name in sorted(RANDOMIZED):
        r1, r2 = rule(name), rule(name)
        assert isinstance(r1, AggregatorRule) or name in LOSS_RULES
        r1.bind(torch.Generator().manual_seed(5))  # type: ignore[union-attr]
        r2.bind(torch.Generator().manual_seed(5))  # type: ignore[union-attr]
        state = torch.get_rng_state()
        out1 = [r1(p) for _ in range(3)]
        assert torch.equal(torch.get_rng_state(), state), f"{name} moved the global RNG"
        out2 = [r2(p) for _ in range(3)]
        assert all(torch.equal(a, b) for a, b in zip(out1, out2, strict=True)), name
    r3 = rule("random")
    r3.bind(torch.Generator().manual_seed(6))  # another seed, other weights
    assert not torch.equal(r3(p), rule("random")(p))


def test_random_rule_is_a_convex_combination() -> None:
    p = proposals(2)
    d = rule("random")(p)
    w, residual = nnls(np.vstack([p.numpy().T, 1e3 * np.ones((1, 4))]), np.concatenate([d.numpy(), [1e3]]))
    assert residual < 1e-6 and (w > 0).all()


def test_trimmed_mean_and_krum_resist_a_broken_task() -> None:
    p = proposals(3, m=5, conflict=False) * 0.01
    honest_mean = p[:4].mean(0)
    p[4] = 1e6  # a broken (or selfish) task proposes a huge step
    assert (rule("trimmed_mean", 5)(p) - honest_mean).abs().max() < 0.05
    assert rule("krum", 5)(p).abs().max() < 1.0  # Krum picks one of the honest proposals
    assert rule("mean", 5)(p).abs().max() > 1e5


def test_a_stateful_callable_is_copied_per_game_reset_by_env_reset_and_never_moved_in_place() -> None:
    class Counting:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, p: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return p.mean(0)

        def reset(self) -> None:
            self.calls = 0

    counting = Counting()
    counting.calls = 7  # the object given: copied (and reset) per game, never moved itself
    env = mtg_env.parallel_env(suite="quadratic", consensus=counting, action_mode="step_size")
    env.reset(seed=0)
    for _ in range(3):
        before = env.engine_state
        env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})
        assert before.rule_objects[0].calls == env.engine_state.t[0] - 1  # the engine is pure: a copy moved
    assert env.engine_state.rule_objects[0].calls == 3 and counting.calls == 7
    env.reset(seed=0)
    assert env.engine_state.rule_objects[0].calls == 0


def test_nash_mtl_state_is_reset_by_env_reset() -> None:
    env = mtg_env.parallel_env(suite="quadratic", consensus="nash_mtl", action_mode="step_size", max_cycles=4)
    first = []
    for _ in range(2):
        env.reset(seed=0)
        rewards = []
        while env.agents:
            rewards.append(env.step({a: steps_action(env, 0.05, 0.05) for a in env.agents})[1])
        first.append(rewards)
    assert first[0] == first[1]  # the warm start from the first episode does not leak into the second


# krum and trimmed_mean need at least 3 tasks; toy2d has 2 (their refusal is tested above). The rules that take
# logs or ratios of the losses need positive losses, which toy2d's are not (their refusal: tests/test_loss_rules.py).
_POSITIVE = {n for n, cls in LOSS_RULES.items() if getattr(cls, "positive_losses", False)}
EPISODES = [
    (n, s)
    for s in ("digits", "toy2d")
    for n in RULE_TABLE
    if s == "digits" or (RULE_TABLE[n].min_tasks <= 2 and n not in _POSITIVE)
]


@pytest.mark.parametrize(("name", "suite"), EPISODES, ids=[f"{n}-{s}" for n, s in EPISODES])
def test_every_rule_plays_a_full_episode(name: str, suite: str) -> None:
    config = {"hidden": (16, 8), "batch_size": 32} if suite == "digits" else {"start": 1}
    env = mtg_env.parallel_env(suite=suite, consensus=name, action_mode="step_size", max_cycles=15, **config)
    env.reset(seed=0)
    steps = 0
    with warnings.catch_warnings():
        # The Nash-MTL solver (cvxpy/ECOS) may report inaccurate solves on degenerate Gram matrices;
        # the rule then keeps its previous weights. Those are the solver's diagnostics, not ours.
        warnings.filterwarnings("ignore", "Solution may be inaccurate", UserWarning)
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        # ... and on those steps our rule says so instead of silently using equal weights.
        warnings.filterwarnings("ignore", "nash_mtl: ", mtg_env.ConsensusWarning)
        while env.agents:
            _, rewards, term, trunc, _ = env.step({a: steps_action(env, 0.02, 0.02) for a in env.agents})
            steps += 1
    assert steps == 15 and not any(term.values()) and all(trunc.values())
    assert all(np.isfinite(r) for r in rewards.values())


def test_pareto_stationarity_metric() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert pareto_stationarity(g) == pytest.approx(0.0, abs=1e-12)  # opposite gradients: Pareto stationary
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert pareto_stationarity(g) == pytest.approx(2**-0.5)
    p = proposals(4, m=5)
    w = min_norm_convex_combination(p)
    assert w.min() >= 0 and w.sum().item() == pytest.approx(1.0)
    for _ in range(20):  # no other convex combination is shorter
        v = torch.rand(5, dtype=torch.float64)
        assert (v / v.sum() @ p).norm() >= (w @ p).norm() - 1e-9
