"""Noise models and regularisation toward equilibrium (mtg_env/engine/noise.py; issue 26, the paper's
Assumptions 7 and 6): the noise-free limit is today's game bit for bit, the closed forms on quadratics (the
noise floor of constant steps, the regulariser's fixed point and rate) hold in the engine, bad input is refused."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import mtg_env
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game, GameRNG, NoiseSpec, RegSpec, reset, step
from mtg_env.suites import make_suite

F64 = torch.float64


def _quadratic(**kwargs: Any) -> Any:
    return make_suite("quadratic", dtype="float64", **kwargs)


def _play(game: Game, seeds: list[int], steps: int, log_step: float = -3.0) -> list[dict[str, torch.Tensor]]:
    """Every state's tensors along a step_size rollout with a fixed log step."""
    state, _ = reset(game, seeds)
    shape = (len(seeds), game.num_tasks, 2)
    seen = [state.tensors()]
    for _ in range(steps):
        state, _ = step(game, state, torch.full(shape, log_step, dtype=game.dtype))
        seen.append(state.tensors())
    return seen


# ------------------------------------------------------------------------------------------- the noise-free limit
@pytest.mark.parametrize("suite", ["quadratic", "regression", "digits"])
def test_noise_free_limit_is_todays_game_bit_for_bit(suite: str) -> None:
    """Every option at its off value (level 0, no adversary, no delay, λ = 0) plays exactly the game without
    options: the same state tensors at every step, and no extra state entries."""
    s = make_suite(suite)
    rule = consensus_rule("mean")
    plain = Game(s, rule, action_mode="step_size", horizon=6)
    off = Game(
        s,
        rule,
        action_mode="step_size",
        horizon=6,
        noise_model=NoiseSpec(grad_std=0.0, label_noise=0.0, byzantine=None, delay=0, grad_dist="student_t"),
        regularisation=RegSpec(strength=0.0, target="ema"),
    )
    assert off.noise_model is None and off.regularisation is None
    for t, (a, b) in enumerate(zip(_play(plain, [3, 4], 6), _play(off, [3, 4], 6), strict=True)):
        assert a.keys() == b.keys(), f"step {t}"
        for k in a:
            assert torch.equal(a[k], b[k]), f"step {t}: {k} differs"


def test_env_noise_off_equals_env_without_options() -> None:
    """The env: dicts of off values give the same observations and rewards as no options."""
    kw: dict[str, Any] = {"suite": "quadratic", "action_mode": "step_size", "max_cycles": 5}
    a = mtg_env.parallel_env(**kw)
    b = mtg_env.parallel_env(**kw, noise_model={"grad_std": 0.0, "delay": 0}, regularisation={"strength": 0.0})
    assert b.noise_model is None and b.regularisation is None
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    for t in range(5):
        for k in oa:
            assert (oa[k] == ob[k]).all(), f"step {t}: {k}"
        act = {k: a.action_space(k).sample() * 0 for k in a.agents}
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        assert ra == rb, f"step {t}"


# ------------------------------------------------------------------------------------------------- the models
def test_noise_is_per_game_pure_and_seeded() -> None:
    """Game b of a batch equals the lone game of its seed (each draw keyed by its own seed), a state stepped twice
    plays the same step (the delay buffer and anchor are not modified in place), and another seed differs."""
    noise = NoiseSpec(grad_std=0.3, grad_dist="student_t", grad_df=4, byzantine=0, attack="random", delay=2)
    game = Game(_quadratic(), consensus_rule("sum"), action_mode="step_size", horizon=8, noise_model=noise,
                regularisation=RegSpec(0.5, "ema"))  # fmt: skip
    batch = _play(game, [5, 6, 7], 8)
    lone = _play(game, [6], 8)
    for t, (a, b) in enumerate(zip(batch, lone, strict=True)):
        for k in a:
            assert torch.equal(a[k][1:2], b[k]), f"step {t}: {k}"
    assert not torch.equal(batch[-1]["trunk"][0], batch[-1]["trunk"][1])
    state, _ = reset(game, [1, 2])
    act = torch.full((2, 3, 2), -3.0, dtype=F64)
    state, _ = step(game, state, act)
    before = {k: v.clone() for k, v in state.tensors().items()}
    s1, _ = step(game, state, act)
    s2, _ = step(game, state, act)
    for k, v in state.tensors().items():
        assert torch.equal(v, before[k]), f"{k} was modified in place"
        assert torch.equal(s1.tensors()[k], s2.tensors()[k]), k


def test_gradient_noise_is_added_to_what_players_observe() -> None:
    """The observed head gradients and Jacobian rows are the exact ones plus σ·z; Student-t's variance is
    σ²ν/(ν − 2) (checked within a 5-standard-error band on 20 000 draws)."""
    s = _quadratic()
    for dist, df, var in (("gaussian", 3, 1.0), ("student_t", 6, 6 / 4)):
        game = Game(s, consensus_rule("sum"), action_mode="step_size", horizon=2,
                    noise_model=NoiseSpec(grad_std=0.5, grad_dist=dist, grad_df=df))  # type: ignore[arg-type]  # fmt: skip
        state, _ = reset(game, list(range(2500)))
        _, hg, jac = s.closed_form(state.heads, state.trunk)
        z = torch.cat([state.head_grads - hg, (state.jacobian - jac).flatten(1)], 1) / 0.5
        n = z.numel()
        measured = float(z.square().mean())
        # The variance of z² is E z⁴ − var²; for Student-t with ν = 6, E z⁴ = 3ν²/((ν−2)(ν−4)) = 13.5.
        fourth = 3.0 if dist == "gaussian" else 3 * 36 / (4 * 2)
        se = math.sqrt((fourth - var**2) / n)
        assert abs(measured - var) < 5 * se, (dist, measured, var)


def test_byzantine_attacks_replace_one_proposal() -> None:
    """Under `sum` the trunk moves by the proposals' sum with the Byzantine row replaced: −p (sign flip), c·p
    (scale); a random attack keeps the other rows."""
    s = _quadratic()
    state0, _ = reset(Game(s, consensus_rule("sum")), [0])
    props = -0.1 * state0.jacobian
    for attack, expect in (("sign_flip", -1.0), ("scale", 4.0)):
        game = Game(s, consensus_rule("sum"),
                    noise_model=NoiseSpec(byzantine=2, attack=attack, attack_scale=4.0))  # type: ignore[arg-type]  # fmt: skip
        state, _ = reset(game, [0])
        new, _ = step(game, state, (torch.zeros_like(state.heads), props))
        want = props[:, 0] + props[:, 1] + expect * props[:, 2]
        torch.testing.assert_close(new.trunk - state.trunk, want, rtol=1e-14, atol=1e-15)
    game = Game(s, consensus_rule("sum"), noise_model=NoiseSpec(byzantine=2, attack="random"))
    state, _ = reset(game, [0])
    new, _ = step(game, state, (torch.zeros_like(state.heads), props))
    bad = new.trunk - state.trunk - props[:, 0] - props[:, 1]
    assert not torch.allclose(bad, props[:, 2]) and not torch.allclose(bad, -props[:, 2])


def test_delay_uses_proposals_of_k_steps_ago() -> None:
    """With delay k the trunk's move at step t is the rule on step max(t − k, 0)'s proposals."""
    s = _quadratic()
    k = 2
    game = Game(s, consensus_rule("sum"), action_mode="update", noise_model=NoiseSpec(delay=k))
    state, _ = reset(game, [0])
    sent = [torch.full((1, 3, 2), float(t + 1), dtype=F64) for t in range(6)]
    for t, p in enumerate(sent):
        new, _ = step(game, state, (torch.zeros_like(state.heads), p))
        used = sent[max(t - k, 0)]
        torch.testing.assert_close(new.trunk - state.trunk, used.sum(1), rtol=0, atol=1e-12, msg=f"step {t}")
        state = new


def test_label_noise_flips_the_asked_fraction() -> None:
    """Digits: a fraction p_m of task m's labels move to another class (never the same, always in range); the
    ink target and regression targets get σ·N(0, 1) noise."""
    s = make_suite("digits", batch_size=256)
    rng = GameRNG.from_seeds(list(range(40)))
    batch = s.sample_batch(rng)
    levels = (0.3, 0.1, 0.0, 0.2)
    _, noisy, ink = s.perturb_labels(batch, rng, levels)
    changed = (noisy != batch[1]).double().mean((0, 1))
    for m, p in enumerate(levels[:3]):
        se = math.sqrt(max(p * (1 - p), 1e-12) / (40 * 256))
        assert abs(float(changed[m]) - p) < 5 * se + 1e-12, (m, float(changed[m]))
    assert int(noisy[..., 0].max()) <= 9 and int(noisy[..., 1:].max()) <= 1 and int(noisy.min()) >= 0
    assert abs(float((ink - batch[2]).std()) - 0.2) < 0.01
    r = make_suite("regression", dtype="float64")
    rb = r.sample_batch(rng)
    _, y, _ = r.perturb_labels(rb, rng, (0.0, 0.5, 1.0))
    diff = y - rb[1]
    assert float(diff[:, 0].abs().max()) == 0.0
    assert abs(float(diff[:, 2].std()) - 1.0) < 0.1


# ----------------------------------------------------------------------------------------- the noise floor
def _floor_closed_form(s: Any, alpha: float, sigma: float) -> tuple[float, float]:
    """E‖z − z*‖² at stationarity of z ← z − α(Kz − c + η), Cov η = Q: tr Σ with Σ = (I − αK)Σ(I − αK)ᵀ + α²Q
    (solved exactly), and the small-α approximation α tr(K⁻¹Q)/2. Under `sum` consensus the trunk's noise is the
    sum of the M rows' noises: Q = diag(σ² I_H, Mσ² I_n)."""
    K = s.joint_hessian()
    h, n, m = s.head_offsets[-1], s.trunk_size, s.num_tasks
    q = torch.diag(torch.cat([torch.full((h,), sigma**2), torch.full((n,), m * sigma**2)]).to(F64))
    a = torch.eye(h + n, dtype=F64) - alpha * K
    d = h + n
    sol = torch.linalg.solve(torch.eye(d * d, dtype=F64) - torch.kron(a, a), (alpha**2 * q).reshape(-1))
    return float(sol.reshape(d, d).trace()), float(alpha * torch.linalg.solve(K, q).trace() / 2)


def test_constant_steps_stall_at_the_closed_form_noise_floor() -> None:
    """Gaussian gradient noise, constant steps: the engine's stationary E‖z − z*‖² (mean over 100 games of each
    game's time average) matches the Lyapunov equation's tr Σ within its 99.9% CI, for two step sizes, and the
    floor scales ∝ α (the small-α formula α tr(K⁻¹Q)/2 within 10%)."""
    s = _quadratic()
    sigma = 0.2
    theta, psi = s.equilibrium()
    star = torch.cat([theta, psi])
    floors = []
    for alpha in (0.01, 0.03):
        game = Game(
            s, consensus_rule("sum"), action_mode="step_size", horizon=10**6, noise_model=NoiseSpec(grad_std=sigma)
        )
        bsz = 100
        state, _ = reset(game, list(range(bsz)), heads=theta.expand(bsz, -1), trunk=psi.expand(bsz, -1))
        act = torch.full((bsz, 3, 2), math.log(alpha), dtype=F64)
        total = torch.zeros(bsz, dtype=F64)
        burn, keep = 300, 1000
        for t in range(burn + keep):
            state, _ = step(game, state, act)
            if t >= burn:
                total += (torch.cat([state.heads, state.trunk], 1) - star).square().sum(1)
        per_game = total / keep
        mean, se = float(per_game.mean()), float(per_game.std() / math.sqrt(bsz))
        exact, small = _floor_closed_form(s, alpha, sigma)
        assert abs(mean - exact) < 3.3 * se, (alpha, mean, exact, se)
        assert abs(exact - small) / small < 0.1 * alpha / 0.01, (alpha, exact, small)
        floors.append(mean)
    assert 2.5 < floors[1] / floors[0] < 3.5  # ∝ α


def test_robbins_monro_steps_converge_under_noise() -> None:
    """With α_t = c/(t + t0) (Σα = ∞, Σα² < ∞) the mean squared distance to the equilibrium keeps falling, far
    below the constant step's floor at α_0 = c/t0."""
    s = _quadratic()
    sigma, c, t0 = 0.2, 5.0, 100.0
    theta, psi = s.equilibrium()
    star = torch.cat([theta, psi])
    game = Game(s, consensus_rule("sum"), action_mode="step_size", horizon=10**6, noise_model=NoiseSpec(grad_std=sigma))
    bsz = 100
    state, _ = reset(game, list(range(bsz)))
    err = []
    for t in range(2000):
        act = torch.full((bsz, 3, 2), math.log(c / (t + t0)), dtype=F64)
        state, _ = step(game, state, act)
        err.append(float((torch.cat([state.heads, state.trunk], 1) - star).square().sum(1).mean()))
    floor, _ = _floor_closed_form(s, c / t0, sigma)
    assert err[-1] < 0.1 * floor, (err[-1], floor)
    assert err[-1] < 0.7 * err[1000]  # still falling (≈ 1/t)


# ------------------------------------------------------------------------------------------ regularisation
@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_regulariser_fixed_point_and_rate_match_closed_forms(lam: float) -> None:
    """Toward the best response the head's gradient is (I + λA_ΘΘ⁻¹)g: the dynamics are z ← z − αP_λK(z − z*),
    P_λ = diag(I + λA_ΘΘ,m⁻¹, I_n), rate ρ(I − αP_λK). Toward the EMA anchor a ← d·a + (1 − d)Θ the state is
    (z, a) with the linear map built below. The engine's trajectory equals each map's to 1e-11 for 200 steps and
    ends at the closed-form fixed point (the equilibrium: Θ_m = Θ̂_m, resp. Θ = a, makes the penalty vanish)."""
    s = _quadratic()
    alpha = 0.05
    theta, psi = s.equilibrium()
    star = torch.cat([theta, psi])
    K = s.joint_hessian()
    h, n = s.head_offsets[-1], s.trunk_size
    d = h + n
    inv = torch.block_diag(*s._inv_hh)
    P = torch.block_diag(torch.eye(h, dtype=F64) + lam * inv, torch.eye(n, dtype=F64))
    rho_br = float(torch.linalg.eigvals(torch.eye(d, dtype=F64) - alpha * P @ K).abs().max())
    decay = 0.8
    # w = (Θ, Ψ, a): z' = z − α(Kz − c + λ[Θ − a; 0]); a' = d·a + (1 − d)Θ'.
    A = torch.zeros(d + h, d + h, dtype=F64)
    A[:d, :d] = torch.eye(d, dtype=F64) - alpha * K
    A[:h, :h] -= alpha * lam * torch.eye(h, dtype=F64)
    A[:h, d:] = alpha * lam * torch.eye(h, dtype=F64)
    A[d:, :] = (1 - decay) * A[:h, :]
    A[d:, d:] += decay * torch.eye(h, dtype=F64)
    rho_ema = float(torch.linalg.eigvals(A).abs().max())
    rho_plain = float(torch.linalg.eigvals(torch.eye(d, dtype=F64) - alpha * K).abs().max())
    assert abs(rho_br - rho_plain) > 1e-3  # the regulariser changes the rate measurably
    lin_br = torch.eye(d, dtype=F64) - alpha * P @ K
    for target, rho, lin in (("best_response", rho_br, lin_br), ("ema", rho_ema, A)):
        game = Game(s, consensus_rule("sum"), action_mode="step_size", horizon=10**6,
                    regularisation=RegSpec(lam, target, decay=decay))  # type: ignore[arg-type]  # fmt: skip
        seen = [torch.cat([x["heads"][0], x["trunk"][0]]) for x in _play(game, [0], 1500, math.log(alpha))]
        torch.testing.assert_close(seen[-1], star, rtol=0, atol=1e-10, msg=target)
        # The whole trajectory is the linear map's (in deviations from the fixed point; the anchor starts at Θ_0).
        w = seen[0] - star if target == "best_response" else torch.cat([seen[0] - star, seen[0][:h] - theta])
        for t in range(1, 200):
            w = lin @ w
            torch.testing.assert_close(seen[t] - star, w[:d], rtol=0, atol=1e-11, msg=f"{target} step {t}")
        assert rho < 1.0  # so the map contracts at rate ρ (its spectral radius) toward the fixed point


def test_regulariser_penalty_in_loss_and_gradient() -> None:
    """The player's loss is ℓ_m + λ/2‖Θ_m − Θ̂_m(Ψ)‖² and its head gradient g_m + λ(Θ_m − Θ̂_m); the trunk's
    rows are the plain ones (no gradient through Θ̂(Ψ))."""
    s = _quadratic()
    lam = 2.0
    game = Game(s, consensus_rule("sum"), action_mode="step_size", regularisation=RegSpec(lam))
    state, _ = reset(game, [4])
    loss, hg, jac = s.closed_form(state.heads, state.trunk)
    diff = state.heads - s.best_response_batch(state.trunk)
    pen = 0.5 * lam * diff.square().view(1, 3, 2).sum(2)
    torch.testing.assert_close(state.losses, loss + pen)
    torch.testing.assert_close(state.head_grads, hg + lam * diff)
    assert torch.equal(state.jacobian, jac)
    br = s.best_response(state.heads[0], state.trunk[0])
    torch.testing.assert_close(s.best_response_batch(state.trunk)[0], br)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grad_std": float("nan")}, "noise_model.grad_std must be a finite number >= 0"),
        ({"grad_std": -0.1}, "noise_model.grad_std must be a finite number >= 0"),
        ({"grad_std": float("inf")}, "noise_model.grad_std"),
        ({"label_noise": -1.0}, "noise_model.label_noise"),
        ({"label_noise": (0.1, float("nan"))}, r"noise_model.label_noise\[1\]"),
        ({"grad_dist": "cauchy"}, "noise_model.grad_dist"),
        ({"grad_df": 0}, "noise_model.grad_df"),
        ({"byzantine": -1}, "noise_model.byzantine"),
        ({"attack": "flip"}, "noise_model.attack"),
        ({"attack_scale": float("nan")}, "noise_model.attack_scale"),
        ({"delay": -2}, "noise_model.delay"),
    ],
)
def test_bad_noise_is_refused_naming_the_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NoiseSpec(**kwargs)
    with pytest.raises(ValueError, match=match):
        mtg_env.parallel_env(suite="quadratic", noise_model=kwargs)


def test_bad_input_that_depends_on_the_suite() -> None:
    with pytest.raises(ValueError, match=r"noise_model.byzantine must be a task index in \[0, 2\] \(3 tasks\), got 3"):
        mtg_env.parallel_env(suite="quadratic", noise_model={"byzantine": 3})
    with pytest.raises(ValueError, match=r"noise_model\.label_noise needs a suite with labels"):
        mtg_env.parallel_env(suite="quadratic", noise_model={"label_noise": 0.1})
    with pytest.raises(ValueError, match="one level per task"):
        mtg_env.parallel_env(suite="regression", noise_model={"label_noise": (0.1, 0.2)})
    with pytest.raises(ValueError, match="target='ema'"):
        mtg_env.parallel_env(suite="regression", regularisation={"strength": 1.0})
    with pytest.raises(ValueError, match="unknown fields"):
        mtg_env.parallel_env(suite="quadratic", noise_model={"sigma": 1.0})
    with pytest.raises(ValueError, match=r"regularisation\.strength"):
        RegSpec(strength=float("nan"))
    with pytest.raises(ValueError, match=r"regularisation\.decay"):
        RegSpec(strength=1.0, decay=1.0)
    with pytest.raises(TypeError, match="noise_model must be a NoiseSpec"):
        mtg_env.parallel_env(suite="quadratic", noise_model=0.1)  # type: ignore[arg-type]


def test_repr_echoes_the_constructor() -> None:
    assert repr(NoiseSpec(grad_std=0.1, byzantine=1)) == "NoiseSpec(grad_std=0.1, byzantine=1)"
    assert repr(RegSpec(1.0, "ema")) == "RegSpec(strength=1.0, target='ema', decay=0.9)"


def test_checkpoint_of_a_noisy_regularised_game_resumes_exactly(tmp_path: Any) -> None:
    """A checkpoint holds the delay buffer and the proximal anchor, verifies the stored (noisy, penalised)
    gradients against a recomputation, resumes the same trajectory, and is refused by an env without the noise."""
    kw: dict[str, Any] = {
        "suite": "quadratic",
        "action_mode": "step_size",
        "max_cycles": 20,
        "noise_model": {"grad_std": 0.2, "delay": 2, "byzantine": 1, "attack": "random"},
        "regularisation": {"strength": 0.5, "target": "ema"},
    }
    a = mtg_env.parallel_env(**kw)
    a.reset(seed=3)
    act = {k: a.action_space(k).sample() * 0 for k in a.agents}
    for _ in range(4):
        a.step(act)
    a.save(tmp_path / "c.pt")
    b = mtg_env.parallel_env(**kw)
    b.load(tmp_path / "c.pt")
    for t in range(3):
        oa, ra, *_ = a.step(act)
        ob, rb, *_ = b.step(act)
        assert ra == rb, f"step {t}"
        for k in oa:
            assert (oa[k] == ob[k]).all(), f"step {t}: {k}"
    plain = mtg_env.parallel_env(suite="quadratic", action_mode="step_size", max_cycles=20)
    with pytest.raises(ValueError, match="another configuration"):
        plain.load(tmp_path / "c.pt")


def test_noise_model_leaves_the_regression_suites_own_noise_option() -> None:
    """The regression suite's ``noise=`` (its per-task target noise, a suite option) still reaches the suite beside
    the game's ``noise_model``."""
    env = mtg_env.parallel_env(suite="regression", noise=[0.1, 0.2, 0.4], noise_model={"label_noise": 0.1})
    assert env.suite.describe()["noise"] == [0.1, 0.2, 0.4]
    assert env.noise_model is not None and env.noise_model.label_noise == 0.1
