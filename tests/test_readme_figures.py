"""The results pages' figures (``docs/results/*.md``, once the README's) are what the code prints now
(``python scripts/results.py --write`` redoes them).

Every deterministic figure is checked against a fresh run of its command: in the default run when it takes
under a minute, else in a ``slow`` test. The comparison is to the printed precision (``results.same_figure``):
on another CPU the same sums run in another order, which can move the last printed digit, never more.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent


results = load_script("scripts/results.py", "readme_results")

#: Deterministic figures whose command runs in under a minute on this 2-core machine.
QUICK = ["main_job", "quadratic"]
SLOW = [name for name, figure in results.FIGURES.items() if figure.deterministic and name not in QUICK]


def check_figure(name: str) -> None:
    figure = results.FIGURES[name]
    assert figure.deterministic
    block, _ = results.run_figure(name)
    page = results.figure_block(name)
    # A chaotic figure (a training run) is exact only on the CPU model that produced it; elsewhere within its spreads.
    elsewhere = results.produced_on(page) != results.cpu_model()
    difference = results.same_figure(results.figure_body(page), block, figure.chaotic if elsewhere else None)
    assert difference is None, (
        f"figure {name!r} in {results.page_path(name).relative_to(ROOT)} is stale ({difference}): run "
        f"`python scripts/results.py --only {name} --write`"
    )


@pytest.mark.parametrize("name", QUICK)
def test_readme_figure_matches_what_the_command_prints(name: str) -> None:
    check_figure(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_long_readme_figure_matches_what_the_command_prints(name: str) -> None:
    check_figure(name)


@pytest.mark.parametrize("name", list(results.FIGURES))
def test_every_figure_has_its_block_with_its_command_and_commit(name: str) -> None:
    # The slow figures' blocks are found here in the default run: a block moved without its FIGURES entry fails
    # now, not an hour into the slow run.
    page = results.page_path(name)
    assert page.parent == ROOT / "docs" / "results" and page.is_file(), page
    block = results.figure_block(name)
    first = block.splitlines()[0]
    assert first.startswith(f"<!-- produced by `python scripts/results.py --only {name} --write` at commit "), (
        f"block {name!r} in {page.name} does not say which command and commit produced it"
    )
    assert results.figure_body(block).strip(), f"block {name!r} in {page.name} is empty"


def test_each_block_appears_once_in_the_docs_and_never_in_the_readme() -> None:
    pages = {path: path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
    for name in results.FIGURES:
        holders = [path for path, text in pages.items() if f"<!-- results:{name} -->" in text]
        assert holders == [results.page_path(name)], f"block {name!r} is in {holders}"


def test_a_chaotic_figure_elsewhere_is_compared_within_its_spreads() -> None:
    page = "PPO   0.3674 ± 0.0078    9.16e-03 ± 5.2e-03  0.1652, 0.0944\nsteps 100"
    chaotic = results.FIGURES["ppo"].chaotic
    # another CPU trained another policy: the means within their spreads (the per-task losses are not compared)
    other = "PPO   0.3700 ± 0.0081    8.82e-03 ± 5.0e-03  0.1650, 0.0940\nsteps 100"
    assert results.same_figure(page, other, chaotic) is None
    assert results.same_figure(page, other) is not None
    moved = results.same_figure(page, other.replace("0.3700", "0.3900"), chaotic)
    assert moved is not None and "page 0.3674 ± 0.0078, printed 0.3900 ± 0.0081" in moved
    assert results.same_figure(page, other.replace("PPO", "TRPO"), chaotic) is not None
    # a line the pattern does not match is compared to the printed precision
    assert results.same_figure(page, other.replace("steps 100", "steps 102"), chaotic) is not None


def test_a_chaotic_figure_names_the_cpu_it_was_produced_on() -> None:
    line = results.provenance("ppo", "abc1234")
    assert line.endswith(f" at commit abc1234 on {results.cpu_model()} -->")
    assert results.produced_on(line + "\nbody") == results.cpu_model()
    assert results.produced_on(results.provenance("quadratic", "abc1234")) is None
    assert results.FIGURES["quadratic"].chaotic is None


def test_a_missing_block_is_reported_with_its_page() -> None:
    with pytest.raises(KeyError, match=r"docs/results/games.md has no block <!-- results:main_job -->"):
        results.figure_block("main_job", "# a page without the block\n")


def test_the_sealed_block_is_what_its_render_prints_from_the_stored_table() -> None:
    # scripts/sealed_vs_old.py --render prints the table of its table.json; the block in the learned results page
    # holds that table (the hour-long run that wrote table.json is not repeated here).
    import json
    import re

    sealed = load_script("scripts/sealed_vs_old.py", "readme_sealed")
    table = sealed.render(json.loads((ROOT / "docs" / "sealed" / "table.json").read_text()))
    text = (ROOT / "docs" / "results" / "learned.md").read_text()
    match = re.search(r"<!-- sealed:results -->\n(.*?)<!-- /sealed:results -->", text, flags=re.S)
    assert match is not None, "docs/results/learned.md has no <!-- sealed:results --> block"
    assert match.group(1).splitlines()[0].startswith("<!-- produced by `python scripts/sealed_vs_old.py ")
    assert table.strip() in match.group(1)


def test_same_figure_allows_one_unit_in_the_last_digit_and_round_off_and_nothing_else() -> None:
    readme = "task  loss 0.0167  acc 0.9777\ndistance 8.445e-16  gap 3.813e-01"
    assert results.same_figure(readme, readme) is None
    assert results.same_figure(readme, readme.replace("0.9777", "0.9778")) is None  # a rounding boundary
    assert results.same_figure(readme, readme.replace("8.445e-16", "1.2e-15")) is None  # both round-off
    assert results.same_figure(readme, readme.replace("0.9777", "0.9779")) is not None  # two units: a change
    assert results.same_figure(readme, readme.replace("3.813e-01", "3.815e-01")) is not None
    assert results.same_figure(readme, readme.replace("8.445e-16", "2.0e-09")) is not None  # no longer round-off
    assert results.same_figure(readme, readme.replace("task", "tasks")) is not None  # text is exact
    assert results.same_figure(readme, readme + "\nextra") is not None


def test_timing_table_reports_median_and_range() -> None:
    runs = [
        "torch 2.13.0+cpu, 1 thread(s), 7 rounds x 300 steps (median)\n"
        "alpha                           100.0    10.000    0.900\n",
        "alpha                           100.0    10.000    0.950\n",
        "alpha                           100.0    10.000    0.800\n",
    ]
    table = results._timing_table(runs, 32, 2, "ratio")
    assert table.splitlines()[2:] == ["| alpha | 0.900 | 0.800 – 0.950 |"]  # the header line is not a row
