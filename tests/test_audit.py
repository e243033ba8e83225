"""The quick audit runs, and its findings hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtg_env import cli
from mtg_env.audit import Section, run_audit


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Section]]:
    out = tmp_path_factory.mktemp("audit")
    sections = run_audit(out, quick=True)
    return out, {s.title.split(":")[0]: s for s in sections}


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
    assert data["seconds"] < 60


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

    def fake(out: Path, quick: bool) -> list[Section]:
        seen.update(out=out, quick=quick)
        return [Section("T", "finding", ["a"], [[1]])]

    monkeypatch.setattr("mtg_env.audit.run_audit", fake)
    assert cli.main(["audit", "--quick", "--out", str(tmp_path)]) == 0
    assert seen == {"out": tmp_path, "quick": True}
