"""Learned-rule files (agents/learned/checkpoint.py): every file that cannot be read or is not sound is refused
with the file's name and the reason, never an error from inside torch, and nothing is played from it; weights
meta-trained on one suite are not played on another without asking."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from agents import make_agents
from agents.learned import learned_agent, load_rule, new_rule, save_rule
from mtg_env.cli import main
from tests.conftest import make_env


def good_file(path: Path, suite: str = "regression") -> Path:
    """A sound learned_step rule file, recorded as meta-trained on ``suite``."""
    return save_rule(path, "learned_step", new_rule("learned_step"), {"config": {"suite": suite}})


def _payload(path: Path) -> dict:
    return torch.load(good_file(path), weights_only=True)


def _with_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    payload = _payload(path)
    payload["state_dict"][key] = value
    torch.save(payload, path)


def _truncated(path: Path) -> None:
    data = good_file(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan(path: Path) -> None:
    _with_tensor(path, "net.0.bias", torch.full((32,), float("nan")))


def _inf(path: Path) -> None:
    _with_tensor(path, "base", torch.tensor([0.0, float("inf")]))


def _wrong_shape(path: Path) -> None:
    _with_tensor(path, "net.0.weight", torch.zeros(32, 8))


def _missing_tensor(path: Path) -> None:
    payload = _payload(path)
    del payload["state_dict"]["net.2.bias"]
    torch.save(payload, path)


def _bad_config(path: Path) -> None:
    payload = _payload(path)
    payload["config"]["no_such_option"] = 1
    torch.save(payload, path)


class _Marker:
    """Unpickling calls os.mkdir(marker): the observable trace of a file running code as it loads."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _crafted(path: Path) -> None:
    payload = _payload(path)
    payload["meta"]["note"] = _Marker(path.with_name("ran_code"))
    torch.save(payload, path)


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "truncated": (_truncated, "may be truncated or corrupted"),
    "malformed": (lambda p: p.write_text("not a torch file\n"), "torch.save did not write it"),
    "garbled": (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4), "may be truncated or corrupted"),
    "not a rule": (lambda p: torch.save([1, 2, 3], p), "is not a learned-rule file"),
    "nan": (_nan, r"tensors \['net.0.bias'\] hold NaN or infinite values"),
    "inf": (_inf, r"tensors \['base'\] hold NaN or infinite values"),
    "wrong shape": (_wrong_shape, r"tensor 'net.0.weight' has shape \(32, 8\), the rule's is \(32, 7\)"),
    "missing tensor": (_missing_tensor, r"missing \['net.2.bias'\]"),
    "bad config": (_bad_config, "the rule's config is not one learned_step accepts"),
    "crafted pickle": (_crafted, "holds objects other than tensors and plain values"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_an_unsound_weights_file_is_refused_naming_it(case: str, tmp_path: Path) -> None:
    build, reason = BAD_FILES[case]
    path = tmp_path / "weights.pt"
    build(path)
    before = path.read_bytes()
    for load in (load_rule, lambda p: learned_agent("learned_step", suite="regression", weights=p)):
        with pytest.raises(ValueError, match=reason) as err:
            load(path)
        assert str(path) in str(err.value)
    env = make_env("regression", "step_size")
    with pytest.raises(ValueError, match=reason):
        make_agents("learned_step", env, weights=path)
    assert path.read_bytes() == before  # the file is left as it was
    assert not (tmp_path / "ran_code").exists()  # and no code in it ran


def test_a_missing_weights_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no learned-rule file at {tmp_path / 'nope.pt'}"):
        load_rule(tmp_path / "nope.pt")


@pytest.mark.parametrize("case", ["truncated", "nan", "malformed"])
def test_the_cli_refuses_an_unsound_weights_file_on_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.pt"
    BAD_FILES[case][0](path)
    out = tmp_path / "run"
    argv = ["run", "--suite", "regression", "--agent", "learned_step", "--action-mode", "step_size", "--steps", "2",
            "--weights", str(path), "--out", str(out), "--no-progress"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtg-env run: {path}") and err.count("\n") == 1, err
    assert not out.exists()  # refused before anything was written


def test_save_rule_refuses_non_finite_weights_and_writes_nothing(tmp_path: Path) -> None:
    rule = new_rule("learned_mlp")
    with torch.no_grad():
        rule.trunk_log_lr.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"refusing to write .*\['trunk_log_lr'\] hold NaN"):
        save_rule(tmp_path / "r.pt", "learned_mlp", rule)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- the suite it was trained on
def test_weights_trained_on_one_suite_are_refused_on_another_unless_allowed(tmp_path: Path) -> None:
    path = good_file(tmp_path / "q.pt", suite="quadratic")
    with pytest.raises(ValueError, match=r"meta-trained on suite 'quadratic', not 'regression'.*allow_other_suite"):
        learned_agent("learned_step", suite="regression", weights=path)
    env = make_env("regression", "step_size")
    with pytest.raises(ValueError, match="allow_other_suite=True"):
        make_agents("learned_step", env, weights=path)
    players = make_agents("learned_step", env, weights=path, allow_other_suite=True)
    assert players["task_0"].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert learned_agent("learned_step", suite="quadratic", weights=path).rule is not None  # its own suite
    # A file that does not say where it was trained (save_rule without meta) cannot be checked: it plays.
    plain = save_rule(tmp_path / "plain.pt", "learned_step", new_rule("learned_step"))
    make_agents("learned_step", env, weights=plain)


def test_the_cli_refuses_weights_of_another_suite_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = good_file(tmp_path / "q.pt", suite="quadratic")
    argv = ["run", "--suite", "regression", "--agent", "learned_step", "--action-mode", "step_size", "--steps", "2",
            "--weights", str(path), "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "--allow-other-suite" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main([*argv, "--allow-other-suite"]) == 0
    weights = json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["weights"]
    assert weights == {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_a_suite_without_a_game_family_does_not_suggest_meta_training_it() -> None:
    """toy2d has no game family, and meta-train refuses it: the message says what to do instead (learned_lstm has no
    generalist; learned_mlp's plays there, tests/test_learned.py)."""
    import mtg_env

    env = mtg_env.parallel_env(suite="toy2d")
    with pytest.raises(ValueError, match=r"no shipped weights") as err:
        make_agents("learned_lstm", env)
    assert "--suite toy2d" not in str(err.value) and "--allow-other-suite" in str(err.value)
