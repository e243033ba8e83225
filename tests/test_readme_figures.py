"""The README's deterministic figures are what the code prints now (``python docs/results.py --write`` redoes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


results = load_script("docs/results.py", "readme_results")


@pytest.mark.parametrize("name", ["main_job"])
def test_readme_figure_matches_what_the_command_prints(name: str) -> None:
    assert results.FIGURES[name].deterministic
    block, _ = results.run_figure(name)
    assert block == results.readme_block(name), (
        f"README figure {name!r} is stale: run `python docs/results.py --only {name} --write`"
    )


def test_every_figure_has_its_block_in_the_readme() -> None:
    text = (ROOT / "README.md").read_text()
    for name in results.FIGURES:
        assert results.readme_block(name, text).strip(), f"README block {name!r} is empty"


def test_timing_table_reports_median_and_range() -> None:
    runs = [
        "torch 2.13.0+cpu, 1 thread(s), 7 rounds x 300 steps (median)\n"
        "alpha                           100.0    10.000    0.900\n",
        "alpha                           100.0    10.000    0.950\n",
        "alpha                           100.0    10.000    0.800\n",
    ]
    table = results._timing_table(runs, 32, 2, "ratio")
    assert table.splitlines()[2:] == ["| alpha | 0.900 | 0.800 – 0.950 |"]  # the header line is not a row
