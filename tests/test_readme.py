"""The README's code runs as written, and the examples run."""

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


def test_readme_commands_use_the_documented_entry_points() -> None:
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    joined = "\n".join(commands)
    assert "mtg-env run" in joined and "python -m pytest" in joined
    assert "pip install torch==2.13.0" in joined


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


def test_readme_engine_example_runs() -> None:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "from mtg_env.engine import" in b]
    assert len(blocks) == 1, "the README's engine example is missing"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    state, out = namespace["state"], namespace["out"]
    assert state.heads.shape[0] == 1024 and out.losses.shape == (1024, 3) and not out.diverged.any()


def test_readme_optimizer_after_the_rule_example_runs_and_learns() -> None:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "trunk_optimizer=" in b]
    assert len(blocks) == 1, "the README's trunk_optimizer example is missing"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    env, infos = namespace["env"], namespace["infos"]
    assert env.agents == [] and env.engine_state.t.item() == 200
    first = env._loss_history[0]
    assert all(infos[a]["loss"] < 0.5 * first[m] for m, a in enumerate(env.possible_agents)), (first, infos)


def test_readme_bench_policy_plays_as_the_example_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtg_env.tuning import Workload, play

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "class SignDescent" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from bench_policy import sign_descent

    workload = Workload("quadratic", "sum", horizon=6)
    ours = play(workload, namespace["sign_descent"], [0.05], [0])[0]
    example = play(workload, sign_descent, [0.05], [0])[0]
    assert ours.to_dict() == example.to_dict() and ours.score < sum(ours.initial_train_loss)
    commands = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))
    assert "mtg-env bench examples/bench_sign_descent.toml" in commands and "mtg-env bench --quick" in commands
