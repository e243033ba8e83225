"""The README's code runs as written, its two commands are the ones CI runs, and the examples run.

The guides' and reference pages' code is run by tests/test_docs.py.
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_quickstart_runs_and_learns(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    env = namespace["env"]
    assert env.agents == [] and env.metadata["name"] == "mtg_digits_v6"
    accuracies = [v["test_accuracy"] for v in env.evaluate().values() if "test_accuracy" in v]
    assert len(accuracies) == 3 and min(accuracies) > 0.5  # 100 steps from chance level (0.1 / 0.5)
    assert "test_accuracy" in capsys.readouterr().out


#: The README's two commands: set up a venv and run the main job; set up a venv and run the tests.
RUN_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . && mtg-env run"
)
TEST_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
    'pip install -e ".[dev,marl]" && python -m pytest'
)


def test_readme_gives_the_two_commands() -> None:
    section = README[README.index("## The two commands") :]
    section = section[: section.index("\n## ")]
    commands = [c.strip() for c in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]
    assert commands == [RUN_COMMAND, TEST_COMMAND]
    assert "pip install torch==2.13.0" in "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))


def test_ci_runs_the_readme_test_command() -> None:
    # .ci/run installs what the README's test command installs, then runs its pytest line as it stands.
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install, pytest_line = TEST_COMMAND.split(" && ")[-2:]
    assert "python -m pip install --quiet torch==2.13.0" in ci
    assert f"python -m {install.replace('pip install', 'pip install --quiet')}" in ci
    assert pytest_line in ci


def test_readme_run_command_is_the_cli_entry_point() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nmtg-env = "mtg_env.cli:main"' in pyproject and RUN_COMMAND.endswith("mtg-env run")


def test_readme_tour_blocks_run_and_do_what_they_say() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 4, "quickstart, agents, vector env, learned agents"
    ns: dict = {}
    exec(compile(blocks[1], "README.md (agents)", "exec"), ns)
    assert ns["env"].metrics()["game"]["distance"] < 1e-6  # "distance to the closed-form equilibrium: ~1e-8"
    ns = {}
    exec(compile(blocks[2], "README.md (vector env)", "exec"), ns)
    assert ns["observations"].shape == (64, 3, 8) and ns["rewards"].shape == (64, 3)
    ns = {}
    exec(compile(blocks[3], "README.md (learned agents)", "exec"), ns)
    history = ns["history"]
    assert history.steps == 100 and history.losses[-1].sum() < history.losses[0].sum()


def test_readme_is_a_guide_not_a_notebook() -> None:
    # Results, conventions and version history live in docs/ and CHANGELOG.md; the README links them.
    assert len(README.splitlines()) <= 300
    assert "<!-- results:" not in README and "<!-- sealed:" not in README and "<!-- learned:" not in README


def test_quickstart_example_runs() -> None:
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["quadratic_equilibrium.py", "custom_consensus.py"])
def test_examples_run(script: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "examples" / script)], check=True, capture_output=True)


def test_toy2d_example_runs_every_two_task_rule(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "toy2d_trajectories.py"), "--steps", "3", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = [line.split()[0] for line in done.stdout.splitlines()[2:] if line and not line.startswith((" ", "wrote"))]
    assert set(rows) == {"sum", "mean", "mgda", "pcgrad", "cagrad", "nash_mtl", "upgrad", "imtl_g", "aligned_mtl",
                         "dualproj", "graddrop", "random"}  # fmt: skip
    assert len(rows) == 12 * 5  # every rule from every standard start
    assert (tmp_path / "toy2d_trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
