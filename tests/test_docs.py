"""The docs' code runs as written and does what the prose says; their links lead somewhere; the changelog follows
the env's versions.

Each page's Python blocks run in order in one namespace (a page is read top to bottom, as a notebook), so a guide's
code cannot rot without a failing test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mtg_env

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "docs" / "guides"
#: Every page with runnable Python blocks, beside the README (tests/test_readme.py).
PAGES = [
    "docs/guides/add_a_suite.md",
    "docs/guides/add_a_consensus_rule.md",
    "docs/guides/add_an_agent.md",
    "docs/guides/enter_the_bench.md",
    "docs/env.md",
    "docs/engine.md",
    "docs/learned_agents.md",
]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), flags=re.S)


def run_page(page: str) -> dict[str, Any]:
    """Run every Python block of ``page`` in order in one namespace; the namespace after the last."""
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python block"
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page} (python block {i + 1})", "exec"), namespace)
    return namespace


def test_every_guide_is_listed_and_has_code() -> None:
    listed = {page for page in PAGES if page.startswith("docs/guides/")}
    assert listed == {str(p.relative_to(ROOT)) for p in GUIDES.glob("*.md")}, "a guide without a test of its code"
    for page in PAGES:
        assert python_blocks(page), f"{page} has no python block"


def final_total(history: Any) -> float:
    return float(np.sum(history.losses[-1]))


def initial_total(history: Any) -> float:
    return float(np.sum(history.losses[0]))


# ------------------------------------------------------------------------------------------------ the guides
def test_add_a_suite_guide_runs_and_both_suites_learn(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_page("docs/guides/add_a_suite.md")
    # The TaskSuite of the guide: both regressions fall to the noise floor (noise 0.1: MSE ~0.01).
    history, env = ns["history"], ns["env"]
    assert history.steps == 200 and not history.terminated
    assert all(loss < 0.05 for loss in history.losses[-1]), history.losses[-1]
    assert all(v["test_mse"] < 0.05 for v in env.evaluate().values())
    # Its games are the engine's: game b of a batch is the lone game with its seed, bit for bit.
    suite = ns["SharedFeatures"]()
    game = mtg_env.Game(suite, mtg_env.consensus_rule("sum"), action_mode="step_size", horizon=5)
    from mtg_env.engine import reset

    batch, _ = reset(game, seeds=[3, 7])
    alone, _ = reset(game, seeds=[7])
    assert bool((batch.trunk[1] == alone.trunk[0]).all()) and bool((batch.heads[1] == alone.heads[0]).all())
    assert not bool((batch.trunk[0] == batch.trunk[1]).all())  # and other seeds start elsewhere
    assert "test_mse" in capsys.readouterr().out


def test_add_a_consensus_rule_guide_runs_and_every_rule_trains() -> None:
    ns = run_page("docs/guides/add_a_consensus_rule.md")
    env = ns["env"]  # the loop's last game: HeavyBall's
    assert env.engine_state.rule_state is not None and "velocity" in env.engine_state.rule_state  # HeavyBall's state
    history = ns["history"]
    assert final_total(history) < 0.1 * initial_total(history)
    # The dictator's trunk serves task 0 alone: its loss falls furthest, as the guide says.
    env = mtg_env.parallel_env(suite="regression", consensus=ns["dictator"], max_cycles=100)
    from agents import make_agents, run_episode

    dictated = run_episode(env, make_agents("gradient", env, lr=0.05), seed=0)
    assert int(np.argmin(dictated.losses[-1])) == 0


def test_add_an_agent_guide_runs_and_both_agents_learn() -> None:
    ns = run_page("docs/guides/add_an_agent.md")
    history = ns["history"]  # NormalisedGradient on the quadratic game
    assert history.steps == 200 and not history.terminated and sum(history.clipped_steps.values()) == 0
    assert final_total(history) < initial_total(history) - 10.0
    rewards, env = ns["rewards"], ns["env"]  # DecayingSteps, the plain PettingZoo loop, to its horizon
    assert env.agents == [] and all(-r < 0.3 for r in rewards.values()), rewards


def test_enter_the_bench_guide_runs_and_its_policy_is_the_example_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtg_env.tuning import Workload, play

    ns = run_page("docs/guides/enter_the_bench.md")
    tuned = ns["tuned"]
    assert not tuned.all_diverged and tuned.best_lr in tuned.step_sizes
    assert all(game.score < sum(game.initial_train_loss) for game in ns["held_out"])
    # The guide's SignDescent plays exactly as the example file the benchmark file names.
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from bench_policy import sign_descent

    workload = Workload("quadratic", "sum", horizon=6)
    ours = play(workload, ns["sign_descent"], [0.05], [0])[0]
    example = play(workload, sign_descent, [0.05], [0])[0]
    assert ours.to_dict() == example.to_dict() and ours.score < sum(ours.initial_train_loss)


def test_enter_the_bench_guide_shows_the_benchmark_file_and_its_commands() -> None:
    text = (GUIDES / "enter_the_bench.md").read_text()
    toml = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert toml == [(ROOT / "examples" / "bench_sign_descent.toml").read_text()]
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S))
    assert "mtg-env bench examples/bench_sign_descent.toml" in commands and "mtg-env bench --quick" in commands


# ------------------------------------------------------------------------------------------ reference pages
def test_the_engine_page_example_runs() -> None:
    ns = run_page("docs/engine.md")
    state, out = ns["state"], ns["out"]
    assert state.heads.shape[0] == 1024 and out.losses.shape == (1024, 3) and not out.diverged.any()
    assert out.features.shape == (1024, 3, len(mtg_env.FEATURES))  # the page says [B, M, 8]
    assert "`[B, M, 8]`" in (ROOT / "docs" / "engine.md").read_text()


def test_the_env_page_optimizer_after_the_rule_example_runs_and_learns() -> None:
    blocks = [b for b in python_blocks("docs/env.md") if "trunk_optimizer=" in b]
    assert len(blocks) == 1, "the trunk_optimizer example is missing from docs/env.md"
    ns: dict[str, Any] = {}
    exec(compile(blocks[0], "docs/env.md", "exec"), ns)
    env, infos = ns["env"], ns["infos"]
    assert env.agents == [] and env.engine_state.t.item() == 200
    first = env._loss_history[0]
    assert all(infos[a]["loss"] < 0.5 * first[m] for m, a in enumerate(env.possible_agents)), (first, infos)


def test_the_learned_agents_page_example_plays_the_shipped_weights() -> None:
    ns = run_page("docs/learned_agents.md")
    history = ns["history"]
    assert history.steps == 100 and not history.terminated
    assert final_total(history) < initial_total(history)


# ------------------------------------------------------------------------------------------------ the links
#: [text](target): a relative target is a file of the repository, with an optional #anchor.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of ``page``'s headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code are code
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.relative_to(ROOT)}: link {target!r} leads nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no heading for {target!r}"


def test_the_readme_links_every_guide_and_results_page() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in [*GUIDES.glob("*.md"), *(ROOT / "docs" / "results").glob("*.md")]:
        assert str(page.relative_to(ROOT)) in readme, f"the README does not link {page.relative_to(ROOT)}"
    for page in ("docs/architecture.md", "docs/env.md", "docs/engine.md", "docs/conventions.md", "CHANGELOG.md"):
        assert f"]({page})" in readme, page


# --------------------------------------------------------------------------------------------- the changelog
def test_the_changelog_has_one_section_per_env_version_newest_first() -> None:
    versions = re.findall(r"^## \[v(\d+)\] - \d{4}-\d{2}-\d{2}$", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    current = int(mtg_env.MultiTaskGameEnv.metadata["name"].rsplit("_v", 1)[1])
    assert [int(v) for v in versions] == list(range(current, -1, -1))
    # The class docstring's version history lists the same versions.
    doc = mtg_env.MultiTaskGameEnv.__doc__ or ""
    history = doc[doc.index("Version History") :]
    assert [int(v) for v in re.findall(r"^\s*\* v(\d+):", history, flags=re.M)] == list(range(current, -1, -1))


#: The key scripts from K17 on, which record the sha256 of each rule file they play.
_KEY_SCRIPTS = sorted(
    (p for p in (ROOT / "docs" / "sealed" / "general").glob("k*/run.sh")
     if re.fullmatch(r"k\d+", p.parent.name) and int(p.parent.name[1:]) >= 17),
    key=lambda p: int(p.parent.name[1:]),
)  # fmt: skip


def _played(script: Path) -> set[str]:
    """The ``.pt`` files ``script``'s commands name (``$S``, ``$W``, ``${S}`` and ``${W}`` filled in from its own
    assignments), and those of the key scripts it runs (K23 plays K21's cells)."""
    commands = "\n".join(re.sub(r"\s#.*$", "", ln) for ln in script.read_text().splitlines() if not ln.startswith("#"))
    folders = dict(re.findall(r"\b([SW])=(\S+)", commands))
    played = set()
    for token in re.findall(r"[^\s=\"'()]+\.pt\b", commands):
        path = re.sub(r"\$\{?([SW])\}?", lambda m: folders[m.group(1)], token)
        assert "$" not in path, f"{script}: {token} names a folder the test does not resolve"
        played.add(path)
    for other in re.findall(r"\bbash (docs/sealed/general/k\d+/run\.sh)", commands):
        played |= _played(ROOT / other)
    return played


def test_the_key_scripts_are_found() -> None:
    assert [p.parent.name for p in _KEY_SCRIPTS][:2] == ["k17", "k18"] and len(_KEY_SCRIPTS) >= 10  # K22: K21's


@pytest.mark.parametrize("script", _KEY_SCRIPTS, ids=lambda p: p.parent.name)
def test_a_key_script_plays_the_files_its_header_records(script: Path) -> None:
    """A key's script, rerun, plays the rule files the key scored: every ``.pt`` its commands name has a sha256 its
    header records. A shipped file that changes after its key (an option added) is kept beside a later key and the
    script pointed at that copy, as K25's and K26's were."""
    import hashlib

    recorded = set(re.findall(r"^#.*\b([0-9a-f]{64})\b", script.read_text(), flags=re.M))
    assert recorded, f"{script} records no sha256 in its header"
    played = _played(script)
    assert played, f"{script} names no rule file"
    for path in sorted(played):
        digest = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        assert digest in recorded, f"{script.relative_to(ROOT)} plays {path} (sha256 {digest}): not in its header"
