"""The quick audit runs, and its findings hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtg_env import cli
from mtg_env.audit import AuditConfig, Section, contraction_product, run_audit


class _CountingBar:
    """Stands in for tqdm: records the total it was given and every update."""

    made: list[_CountingBar] = []  # noqa: RUF012 - a test double's log

    def __init__(self, total: int, **_: object) -> None:
        self.total, self.n, self.closed = total, 0, False
        _CountingBar.made.append(self)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, _: str) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Section]]:
    out = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("tqdm.auto.tqdm", _CountingBar)
        sections = run_audit(out, quick=True, progress=True)
    return out, {s.title.split(":")[0]: s for s in sections}


def test_progress_bar_counts_every_episode(audit: tuple[Path, dict[str, Section]]) -> None:
    (bar,) = _CountingBar.made
    assert bar.total == AuditConfig.quick().episodes() == bar.n and bar.closed


def test_report_and_figures_are_written(audit: tuple[Path, dict[str, Section]]) -> None:
    out, sections = audit
    report = (out / "report.md").read_text()
    for title in sections:
        assert f"## {title}" in report
    for section in sections.values():
        for figure in section.figures:
            assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({figure})" in report  # each figure sits beside its table
    data = json.loads((out / "audit.json").read_text())
    assert data["quick"] is True and len(data["sections"]) == len(sections)


def test_summable_stops_short_where_robbins_monro_converges(audit: tuple[Path, dict[str, Section]]) -> None:
    data = audit[1]["Assumption 2 as printed"].data
    assert data["rm_final"] < 0.1
    assert data["summable_final"] > 100 * data["rm_final"]
    assert data["summable_final"] >= data["summable_limit"] > 1.0  # it can never get closer than the limit
    assert data["summable_final"] == pytest.approx(data["summable_predicted"], rel=1e-9)  # the exact product


def test_two_different_trunks_both_have_zero_head_nash_gap(audit: tuple[Path, dict[str, Section]]) -> None:
    section = audit[1]["Definition 1 and Proposition 2"]
    gaps = [row[2] for row in section.rows]
    l_mt = [row[3] for row in section.rows]
    assert len(section.rows) >= 3 and max(gaps) < 1e-20
    assert len({round(v, 6) for v in l_mt}) == len(l_mt)  # different points, different L_MT
    assert l_mt[0] == min(l_mt)  # the sum dynamics' end point Ψ* minimises L_MT ...
    assert section.data["selected_distance"] < 1e-10  # ... and the dynamics reach it


def test_theorem3_constant_step_converges_and_summable_stalls(audit: tuple[Path, dict[str, Section]]) -> None:
    rows = audit[1]["Theorem 3"].rows
    by_schedule = {row[1]: row for row in rows}
    assert by_schedule["constant"][4] < 1e-20 and by_schedule["constant"][7] < 1
    assert by_schedule["robbins_monro"][4] < by_schedule["summable"][4]
    assert by_schedule["robbins_monro"][8] < -1  # polynomial decay
    assert all(row[9] < row[3] for row in rows)  # V_T / T below V_0: V_t / t → 0


def test_single_task_contracts_at_least_at_the_textbook_rate(audit: tuple[Path, dict[str, Section]]) -> None:
    for row in audit[1]["Theorem 1 / Proposition 1"].rows:
        assert row[3] < 1e-20 and row[4] <= row[5] + 1e-9


def test_non_convex_end_points_spread(audit: tuple[Path, dict[str, Section]]) -> None:
    rows = audit[1]["Remarks 10 and 13"].rows
    assert {(r[0], r[1]) for r in rows} == {
        (s, c) for s in ("digits", "regression (MLP trunk)") for c in ("sum", "mean")
    }
    assert all(r[4] > 0 for r in rows)  # seeds end at different losses
    assert all(r[8] >= 0 for r in rows)


def test_cli_audit_passes_its_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake(out: Path, quick: bool, progress: bool, stability: bool) -> list[Section]:
        seen.update(out=out, quick=quick, progress=progress, stability=stability)
        return [Section("T", "finding", ["a"], [[1]])]

    monkeypatch.setattr("mtg_env.audit.run_audit", fake)
    assert cli.main(["audit", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert seen == {"out": tmp_path, "quick": True, "progress": False, "stability": False}
    assert cli.main(["audit", "--stability", "--no-progress", "--out", str(tmp_path)]) == 0
    assert seen == {"out": tmp_path, "quick": False, "progress": False, "stability": True}


@pytest.mark.parametrize("first", [1.0 - 2**-52, 1.0, 1.0 + 2**-52, 1.0 + 1e-12, 0.5, 1.5, 2.0, 2.5])
def test_contraction_product_is_finite_and_exact_at_the_stability_boundary(first: float) -> None:
    # α_0 λ = 1 ± round-off is what a step 1/λ_max gives; the product must be the plain product, not NaN.
    lam = torch.tensor([first, 0.3, 1e-3], dtype=torch.float64)
    steps = 1.0 / (1.0 + torch.arange(50, dtype=torch.float64)) ** 1.5
    got = contraction_product(steps, lam)
    expected = torch.prod(1 - steps[:, None] * lam[None, :], dim=0)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-300)
    assert (torch.sign(got) == torch.sign(expected)).all()


def test_contraction_product_of_a_long_schedule_has_no_underflow_surprise() -> None:
    # 2e6 factors: the plain product of the slow directions stays well inside float range.
    steps = 0.5 / (1.0 + torch.arange(2_000_000, dtype=torch.float64)) ** 1.5
    lam = torch.tensor([2.0 * (1 + 2**-52), 1.0, 0.01], dtype=torch.float64)  # α_0 λ_0 a hair above 1
    got = contraction_product(steps, lam)
    assert torch.isfinite(got).all() and abs(float(got[0])) < 1e-14 and 0 < float(got[2]) < 1
