"""The stability audit (mtg_env/audit/stability.py, ``mtg-env audit --stability``): its findings on a tiny
configuration, and its closed forms."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mtg_env.audit import run_audit
from mtg_env.audit.regularisation import regularisation
from mtg_env.audit.stability import StabilityConfig, noise_models, regularisation_closed_form

TINY = StabilityConfig(
    steps=150,
    seeds=3,
    sigmas=(0.0, 0.3),
    delays=(0,),
    rules=("sum", "krum"),
    lambdas=(0.0, 1.0),
    reg_seeds=3,
    floor_alphas=(0.02,),
    floor_steps=100,
    label_levels=(0.0,),
    label_steps=20,
    label_seeds=2,
)


@pytest.mark.slow
def test_noise_section_measures_what_it_claims(tmp_path: Path) -> None:
    """Gradient noise raises the final Nash gap above the noise-free game's; a sign-flipped task drags `sum` away
    from the equilibrium while krum, which drops the outlier, stays closer; the figure is written."""
    section = noise_models(TINY, tmp_path, lambda: None)
    data = section.data
    gaussian = data["gaussian"]["sum"]
    assert gaussian[1]["gap"][0] > 100 * max(gaussian[0]["gap"][0], 1e-12)
    byz_sum = data["byzantine"]["sum"][1]["dist"][0]
    byz_krum = data["byzantine"]["krum"][1]["dist"][0]
    assert byz_sum > 0.1 and byz_krum < byz_sum
    assert (tmp_path / "stability_noise.png").stat().st_size > 10_000
    assert len(section.rows) == len(TINY.rules) * (2 * len(TINY.sigmas) + len(TINY.delays) + 4)


def test_regularisation_closed_form_limits() -> None:
    """At λ = 0 the closed form is plain gradient descent's (ρ(I − αK), the Lyapunov floor); a large λ makes the
    head steps overshoot (ρ > 1, no floor)."""
    from mtg_env.audit.stability import _suite

    suite = _suite(TINY)
    rho0, floor0 = regularisation_closed_form(suite, TINY.alpha, 0.0, 0.3)
    K = suite.joint_hessian()
    assert math.isclose(rho0, float((1 - TINY.alpha * torch.linalg.eigvalsh(K)).abs().max()), rel_tol=1e-12)
    assert 0 < floor0 < math.inf
    rho_big, floor_big = regularisation_closed_form(suite, TINY.alpha, 1000.0, 0.3)
    assert rho_big > 1 and floor_big == math.inf


def test_delay_closed_form_predicts_divergence() -> None:
    """Stale proposals under `sum`: the engine diverges exactly where the companion map's spectral radius exceeds 1
    (at α = 0.04: k = 0 only), and grows at that rate where it is above 1."""
    from mtg_env.audit.stability import _suite, delay_spectral_radius
    from mtg_env.consensus import consensus_rule
    from mtg_env.engine import Game, NoiseSpec, reset, step

    suite = _suite(TINY)
    theta, psi = suite.equilibrium()
    star = torch.cat([theta, psi])
    for k in (0, 1, 2):
        rho = delay_spectral_radius(suite, TINY.alpha, k)
        game = Game(suite, consensus_rule("sum"), action_mode="step_size", horizon=10**6, divergence_threshold=None,
                    noise_model=NoiseSpec(delay=k) if k else None)  # fmt: skip
        state, _ = reset(game, [0])
        act = torch.full((1, 5, 2), math.log(TINY.alpha), dtype=torch.float64)
        errs = []
        for _ in range(300):
            state, _ = step(game, state, act)
            errs.append(float((torch.cat([state.heads, state.trunk], 1)[0] - star).norm()))
        assert (rho < 1) == (k == 0), (k, rho)  # at α = 0.04 one step of staleness already destabilises
        if rho < 1:
            assert errs[-1] < 1e-3 * errs[0]
        else:
            measured = (errs[-1] / errs[-101]) ** (1 / 100)
            assert abs(measured - rho) < 2e-3, (k, measured, rho)


def test_regularisation_section_and_report(tmp_path: Path) -> None:
    """The λ table holds both targets with the closed-form columns for the best response; the report links the
    figures."""
    section = regularisation(TINY, tmp_path, lambda: None)
    assert [row[0] for row in section.rows] == ["best_response"] * 2 + ["ema"] * 2
    assert (tmp_path / "stability_regularisation.png").exists()
    assert "ρ closed form" in section.markdown()


@pytest.mark.slow
def test_cli_flag_runs_the_stability_experiments(tmp_path: Path, monkeypatch: object) -> None:
    """``run_audit(stability=True)`` writes the stability report (its command in the header)."""
    import mtg_env.audit.stability as stab

    monkeypatch.setattr(stab.StabilityConfig, "quick", classmethod(lambda cls: TINY))  # type: ignore[attr-defined]
    sections = run_audit(tmp_path, quick=True, stability=True)
    report = (tmp_path / "report.md").read_text()
    assert "--stability --quick" in report
    assert [s.title.split(":")[0] for s in sections] == ["Assumption 7"] * 3 + ["Assumption 6"]
