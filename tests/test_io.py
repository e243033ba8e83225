"""Files the package writes (mtg_env/_io.py): atomic, and with the mode the user's umask gives any new file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtg_env._io import dump_json, load_json, write_atomic
from mtg_env.cli import main


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["umask022", "umask077", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's umask set to the parameter for the test, restored after."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_gives_the_mode_of_the_umask(tmp_path: Path, umask: int) -> None:
    write_atomic(tmp_path / "a.txt", "x")
    dump_json(tmp_path / "b.json", {"v": float("nan")})
    (tmp_path / "c.txt").write_text("x")  # what plain open() gives: the reference
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "b.json") == mode(tmp_path / "c.txt") == 0o666 & ~umask
    assert load_json(tmp_path / "b.json") == {"v": pytest.approx(float("nan"), nan_ok=True)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.txt"]  # no temporary left behind


def test_the_main_jobs_files_follow_the_umask(tmp_path: Path) -> None:
    """summary.json, history.json and the PNGs of ``mtg-env run`` were 0o600 (tempfile.mkstemp) whatever the
    umask; they are 0o666 less the umask, like any file a program creates."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["run", "--suite", "quadratic", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    finally:
        os.umask(old)
    files = {p.name: mode(p) for p in out.iterdir()}
    assert set(files) == {"summary.json", "history.json", "losses.png", "nash_gap.png"}
    assert set(files.values()) == {0o644}, files


def test_write_atomic_replaces_the_file_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_atomic(path, b"old")

    with pytest.raises(TypeError):
        write_atomic(path, object())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_meta_trainings_files_follow_the_umask(tmp_path: Path) -> None:
    """best.pt and last.pt are written atomically too: 0o666 less the umask, like log.csv and meta_loss.png."""
    out = tmp_path / "m"
    argv = ["meta-train", "--agent", "learned_step", "--suite", "regression", "--iterations", "1", "--horizons", "5",
            "--games", "2", "--configs", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    old = os.umask(0o027)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    files = {p.name: mode(p) for p in out.iterdir()}
    assert set(files) == {"best.pt", "last.pt", "log.csv", "meta_loss.png"}
    assert set(files.values()) == {0o640}, files
