"""Property-based fuzzing of the surfaces added after the env: the vector env, the engine, checkpoints, learned
weights files and the meta-train flags (bench configs: tests/test_bench_spec.py). Hypothesis, derandomized: every
run tries the same inputs.

The property, for every input: the call succeeds, or it raises TypeError, ValueError or FileNotFoundError whose
message names the input (the argument, the game and task, the file); and a refused call changes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtg_env
from mtg_env import engine
from mtg_env.consensus import consensus_rule
from mtg_env.engine import Game
from mtg_env.suites import make_suite

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
REFUSED = (TypeError, ValueError, FileNotFoundError)
ODD = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 2.0, -2.0, 0.0, 0.5])


def same_tensors(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"{key} changed on a refused call"


# ------------------------------------------------------------------------------------------------ vector env
@FUZZ
@given(
    mode=st.sampled_from(["step_size", "update"]),
    game=st.integers(0, 2),
    task=st.integers(0, 2),
    value=ODD,
    shape=st.sampled_from(["right", "right", "right", "short", "flat", "extra"]),
)
def test_a_vector_step_is_played_or_refused_naming_game_and_task_without_change(
    mode: str, game: int, task: int, value: float, shape: str
) -> None:
    venv = mtg_env.vector_env(num_games=3, suite="quadratic", action_mode=mode, max_cycles=5)
    venv.reset(seed=0)
    width = 2 if mode == "step_size" else venv.action_size
    actions = torch.zeros(3, 3, width)
    actions[game, task, 0] = value
    if shape == "short":
        actions = actions[:, :, :-1]
    elif shape == "flat":
        actions = actions.reshape(3, -1)
    elif shape == "extra":
        actions = torch.zeros(4, 3, width)
    before = venv.state.tensors()
    in_box = math.isfinite(value) and -1.0 <= value <= 1.0
    try:
        venv.step(actions)
    except REFUSED as err:
        message = str(err)
        if shape == "right":
            assert not in_box, f"a valid action was refused: {message}"
            assert f"game {game}" in message and f"task_{task}" in message, message
        else:
            assert "shape" in message, message
        same_tensors(before, venv.state.tensors())
        return
    assert shape == "right" and in_box, f"an invalid action was played: {value!r} ({shape})"


# ------------------------------------------------------------------------------------------------ the engine
@FUZZ
@given(
    game_index=st.integers(0, 3),
    task=st.integers(0, 2),
    value=ODD,
    rule=st.sampled_from(["mean", "famo", "uw", "gradvac", "nash_mtl"]),
)
def test_an_engine_step_never_changes_its_input_state(game_index: int, task: int, value: float, rule: str) -> None:
    """The engine is pure: whatever the actions (finite or not), the state passed in is the same afterwards, and
    the same step from the same state gives the same output."""
    suite = make_suite("regression", dtype="float64")
    game = Game(suite, consensus_rule(rule, num_tasks=suite.num_tasks), action_mode="step_size", horizon=10)
    state, _ = engine.reset(game, [0, 1, 2, 3])
    for _ in range(2):  # a stateful rule has state to keep after a step or two
        state, _ = engine.step(game, state, torch.full((4, 3, 2), -3.0, dtype=torch.float64))
    actions = torch.full((4, 3, 2), -3.0, dtype=torch.float64)
    actions[game_index, task, 0] = value
    before = state.tensors()
    try:
        first, out1 = engine.step(game, state, actions)
    except REFUSED as err:
        assert f"task_{task}" in str(err) or "task" in str(err), err
        same_tensors(before, state.tensors())
        return
    same_tensors(before, state.tensors())
    second, out2 = engine.step(game, state, actions)
    same_tensors(first.tensors(), second.tensors())
    assert torch.equal(out1.losses, out2.losses)


# ------------------------------------------------------------------------------------------ weights files
def _shipped_weights() -> Path:
    from agents.learned import checkpoint

    folder = Path(checkpoint.__file__).parent / "weights"
    return sorted(folder.glob("*.pt"))[0]


@FUZZ
@given(
    cut=st.floats(0.0, 1.0),
    flip=st.lists(st.integers(0, 10_000), max_size=8),
    junk=st.binary(max_size=64),
)
def test_a_damaged_weights_file_is_refused_naming_it(
    tmp_path_factory: Any, cut: float, flip: list[int], junk: bytes
) -> None:
    from agents.learned import load_rule

    data = bytearray(_shipped_weights().read_bytes())
    data = data[: int(len(data) * cut)] if cut < 1.0 else data
    for i in flip:
        if data:
            data[i % len(data)] ^= 0xFF
    data += junk
    path = tmp_path_factory.mktemp("weights") / "damaged.pt"
    path.write_bytes(bytes(data))
    try:
        rule = load_rule(path)
    except REFUSED as err:
        assert str(path) in str(err) or path.name in str(err), err
        assert path.read_bytes() == bytes(data)
        return
    # A file that still loads must be a sound rule: finite parameters.
    params = getattr(rule, "state_dict", dict)()
    assert all(torch.isfinite(v).all() for v in params.values() if isinstance(v, torch.Tensor))


# ------------------------------------------------------------------------------------------ meta-train flags
FLAGS = {
    "--meta-lr": ["inf", "nan", "0", "-1", "abc", "1e-3"],
    "--iterations": ["0", "-3", "1.5", "x", "1"],
    "--horizons": ["0", "-1", "nan", "2,x", "2"],
    "--games": ["0", "-2", "1.5", "2"],
    "--device": ["cuda:7", "tpu", "", "cpu"],
    "--suite": ["toy2d", "imagenet", "quadratic"],
    "--agent": ["learned_nope", "learned_step"],
}


@pytest.mark.parametrize(("flag", "value"), [(f, v) for f, values in FLAGS.items() for v in values])
def test_meta_train_flags_are_refused_in_one_line_or_accepted(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every refusal is one line, names the flag, exits 2 and writes nothing; an accepted value gets past the
    argument checks (the run itself is cut short by --iterations 0 being refused, or by a dry check)."""
    from mtg_env.cli import main

    out = tmp_path / "out"
    argv = ["meta-train", "--agent", "learned_step", "--suite", "quadratic", "--out", str(out), flag, value]
    if flag != "--iterations":
        argv += ["--iterations", "0"]  # refused up front: isolates the flag under test unless it is refused first
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), "a refused run wrote files"
    if flag == "--iterations" or value in ("1e-3", "cpu", "quadratic", "learned_step", "2"):
        return  # the refusal may be --iterations 0's
    assert flag.lstrip("-").replace("-", "_") in err.replace("-", "_") or flag in err, err
