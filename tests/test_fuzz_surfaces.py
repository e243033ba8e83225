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


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in tensors.items()}


def same_tensors(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    """Bit for bit, NaN included (a NaN at the same place in both is the same value)."""
    assert before.keys() == after.keys()
    for key, value in before.items():
        other = after[key]
        same = value.shape == other.shape and value.dtype == other.dtype
        if same and value.is_floating_point():
            same = bool(((value == other) | (value.isnan() & other.isnan())).all())
        elif same:
            same = torch.equal(value, other)
        assert same, f"{key} changed on a refused call"


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
    before = snapshot(venv.state.tensors())
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
    before = snapshot(state.tensors())
    try:
        first, out1 = engine.step(game, state, actions)
    except REFUSED as err:
        assert f"task_{task}" in str(err) or "task" in str(err), err
        same_tensors(before, state.tensors())
        return
    same_tensors(before, state.tensors())
    second, out2 = engine.step(game, state, actions)
    same_tensors(first.tensors(), second.tensors())
    same_tensors({"losses": out1.losses}, {"losses": out2.losses})


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
#: Values each flag must refuse before any meta-iteration runs.
BAD_FLAGS = {
    "--meta-lr": ["inf", "nan", "0", "-1", "abc"],
    "--iterations": ["0", "-3", "1.5", "x"],
    "--horizons": ["0", "-1", "nan", "2,x", ""],
    "--games": ["0", "-2", "1.5"],
    "--configs": ["0", "-1"],
    "--truncation": ["0", "-5"],
    "--device": ["cuda:7", "tpu", ""],
    "--suite": ["toy2d", "imagenet"],
    "--agent": ["learned_nope"],
    "--budget": ["-1s", "soon", "0s"],
}


@pytest.mark.parametrize(("flag", "value"), [(f, v) for f, values in BAD_FLAGS.items() for v in values])
def test_a_bad_meta_train_flag_is_refused_in_one_line_naming_it_before_anything_runs(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mtg_env.cli import main

    out = tmp_path / "out"
    argv = {"--agent": "learned_step", "--suite": "quadratic", "--iterations": "1", "--games": "1", "--configs": "1",
            "--horizons": "2", "--out": str(out), flag: value}  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(["meta-train", *[part for pair in argv.items() for part in pair]])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), "a refused run wrote files"
    name = flag.lstrip("-")
    assert name in err or name.replace("-", "_") in err, f"{flag}={value!r}: the message does not name it: {err}"


# ------------------------------------------------------------------------------------------------ checkpoints
def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        paths += _leaves(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]
    return paths


def _checkpointed_env() -> mtg_env.MultiTaskGameEnv:
    import numpy as np

    env = mtg_env.parallel_env(suite="regression", consensus="famo", max_cycles=10)
    env.reset(seed=0)
    for _ in range(2):
        env.step({a: np.zeros(env.action_space(a).shape, np.float32) for a in env.agents})
    return env


CHECKPOINT_PATHS = _leaves(_checkpointed_env().state_dict())
TAMPER = st.one_of(
    st.sampled_from([None, True, -1, 0, 7, 2.5, math.nan, math.inf, "abc", "", [], [1, 2], {"a": 1}]),
    st.sampled_from(["nan", "neg", "shape", "dtype", "zero"]),  # tensor edits
)


def _tampered(value: Any, how: Any) -> Any:
    if isinstance(value, torch.Tensor) and isinstance(how, str) and how in ("nan", "neg", "shape", "dtype", "zero"):
        if how == "nan" and value.is_floating_point() and value.numel():
            return value.clone().fill_(math.nan)
        if how == "neg":
            return -value.clone() - 1 if value.dtype != torch.bool else ~value
        if how == "shape":
            return torch.cat([value, value], dim=-1) if value.dim() else value.reshape(1)
        if how == "dtype":
            return value.to(torch.float16) if value.is_floating_point() else value.to(torch.float32)
        return torch.zeros_like(value)
    return how


@FUZZ
@given(path=st.sampled_from(CHECKPOINT_PATHS), how=TAMPER)
def test_a_tampered_checkpoint_is_refused_naming_the_field_and_changes_nothing(path: tuple[str, ...], how: Any) -> None:
    import copy

    source = _checkpointed_env()
    checkpoint = copy.deepcopy(source.state_dict())
    node = checkpoint
    for key in path[:-1]:
        node = node[key]
    original = node[path[-1]]
    node[path[-1]] = _tampered(original, how)
    target = _checkpointed_env()
    target.step({a: torch.zeros(target.action_space(a).shape).numpy() for a in target.agents})  # another state
    before = copy.deepcopy(target.state_dict())
    try:
        target.load_state_dict(checkpoint)
    except REFUSED as err:
        message = str(err)
        assert any(part in message for part in path), f"{'.'.join(path)} -> {how!r}: {message}"
        after = target.state_dict()
        same_tensors(before["state"], after["state"]) if isinstance(before.get("state"), dict) else None
        assert before["loss_history"] == after["loss_history"] and before["agents"] == after["agents"]
        return
    # Accepted: then the value changed nothing that matters (e.g. an equal value in another type) and the game plays.
    import numpy as np

    target.step({a: np.zeros(target.action_space(a).shape, np.float32) for a in target.agents})
