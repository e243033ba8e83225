"""The ``mtg-env run`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtg_env.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_run_quadratic_converges_and_writes_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q"
    rc = main(
        ["run", "--suite", "quadratic", "--steps", "200", "--out", str(out), "--no-progress", "--dtype", "float64"]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    names = [f"quadratic_{m}" for m in range(3)]
    assert list(summary["tasks"]) == names
    for name in names:
        row = summary["tasks"][name]
        assert set(row) == {"train_loss", "nash_gap"}
        assert 0.0 <= row["nash_gap"] < 1e-10
    config = summary["config"]
    assert config["suite"]["suite"] == "quadratic"
    assert config["consensus"] == "sum"
    assert config["agent"] == "GradientAgent(lr=0.1, schedule='constant')"
    assert config["action_mode"] == "update"
    assert (config["steps"], config["seed"], config["dtype"]) == (200, 0, "float64")
    assert config["env"] == "mtg_quadratic_v6"
    assert summary["steps_played"] == 200 and summary["terminated"] is False

    history = json.loads((out / "history.json").read_text())
    assert history["steps"] == 200 and len(history["losses"]) == 201 and len(history["rewards"]) == 200
    for m, name in enumerate(names):  # deterministic game: the train loss is the last batch loss
        assert summary["tasks"][name]["train_loss"] == pytest.approx(history["losses"][-1][m], rel=1e-12, abs=1e-14)
    assert is_png(out / "losses.png") and is_png(out / "nash_gap.png")

    printed = capsys.readouterr().out
    for name in names:
        assert name in printed
    assert "mtg_quadratic_v6" in printed and "200 steps" in printed
    assert str(out / "summary.json") in printed


def test_run_digits_reports_held_out_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert main(["run", "--suite", "digits", "--steps", "60", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    tasks = summary["tasks"]
    assert list(tasks) == ["digit", "parity", "ge5", "ink"]
    for name in ("digit", "parity", "ge5"):
        row = tasks[name]
        assert set(row) == {"train_loss", "test_accuracy", "nash_gap"}
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["train_loss"] > 0
    assert set(tasks["ink"]) == {"train_loss", "test_mse", "nash_gap"}
    assert tasks["ink"]["test_mse"] > 0
    for row in tasks.values():
        assert 0.0 <= row["nash_gap"] <= row["train_loss"] + 1e-6  # all these losses are >= 0
    # 60 steps of the default player (Adam on digits) already beat chance on the 10-way digit task by far
    assert tasks["digit"]["test_accuracy"] > 0.3
    assert summary["config"]["dtype"] == "float32"
    assert summary["config"]["agent"].startswith("AdamAgent(")  # the default agent on digits
    assert is_png(out / "losses.png")
    assert not (out / "nash_gap.png").exists()  # no per-step Nash gap on digits

    printed = capsys.readouterr().out
    table = printed[printed.index("task") :]
    for name in tasks:
        assert name in table
    assert table.count("accuracy") == 3 and "mse" in table


def test_agent_options_reach_the_agents(tmp_path: Path) -> None:
    out = tmp_path / "g"
    args = ["run", "--suite", "quadratic", "--steps", "5", "--out", str(out), "--no-progress"]
    assert main([*args, "--lr", "0.05", "--trunk-lr", "0.01", "--schedule", "robbins_monro"]) == 0
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["agent"] == "GradientAgent(lr=0.05, trunk_lr=0.01, schedule='robbins_monro')"
    assert main([*args, "--agent", "adam", "--lr", "0.01", "--action-mode", "step_size", "--seed", "3"]) == 0
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["agent"] == "AdamAgent(lr=0.01, betas=(0.9, 0.999), eps=1e-08)"
    assert config["action_mode"] == "step_size" and config["seed"] == 3


def test_default_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "quadratic", "--no-progress", "--seed", "7"]) == 0
    assert (tmp_path / "runs" / "quadratic_sum_gradient_s7" / "summary.json").is_file()
    # Other settings get their own directory (a hash of the options that differ), never overwrite.
    assert main(["run", "--suite", "quadratic", "--no-progress", "--seed", "7", "--steps", "3"]) == 0
    assert main(["run", "--suite", "quadratic", "--no-progress", "--seed", "7", "--steps", "3", "--lr", "0.05"]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 3 and all(name.startswith("quadratic_sum_gradient_s7") for name in runs)


def test_schedule_with_an_adaptive_agent_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "run",
                "--suite",
                "quadratic",
                "--steps",
                "5",
                "--out",
                str(out),
                "--no-progress",
                "--schedule",
                "summable",
                "--agent",
                "adam",
            ]
        )
    assert exc.value.code == 2
    assert "--schedule" in str(exc.value)
    assert not out.exists()  # refused before doing anything


def test_non_positive_steps_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--suite", "quadratic", "--steps", "0", "--out", str(tmp_path / "x"), "--no-progress"])
    assert exc.value.code == 2 and "--steps" in str(exc.value)


def test_unknown_suite_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--suite", "imagenet", "--steps", "5", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_module_entry_point(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "mtg_env.cli",
        "run",
        "--suite",
        "regression",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["tasks"]) == ["reg_0", "reg_1", "reg_2"]
    assert summary["steps_played"] == 20
    for name in summary["tasks"]:
        assert name in proc.stdout
    assert is_png(tmp_path / "losses.png")


def test_threads_option_sets_torch_threads_and_refuses_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    args = ["run", "--suite", "quadratic", "--steps", "5", "--out", str(tmp_path / "t"), "--no-progress"]
    assert main([*args, "--threads", "2"]) == 0 and seen == [2]
    assert main(args) == 0 and seen == [2, 1]  # one thread unless asked
    with pytest.raises(SystemExit):
        main([*args, "--threads", "0"])
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_a_bad_out_dir_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, "is a file"), (afile / "sub", f"lies under the file {afile}")):
        with pytest.raises(SystemExit, match=message):
            main(["run", "--suite", "quadratic", "--steps", "2", "--no-progress", "--out", str(out)])


def test_the_default_main_job_trains_every_digits_task(tmp_path: Path) -> None:
    """Issue 10's acceptance: ``mtg-env run`` with its defaults (digits, 500 steps, seed 0) reaches an ink test MSE
    of at most 0.2 (the target is a linear function of the input) and test accuracies of at least 0.95."""
    out = tmp_path / "main"
    assert main(["run", "--out", str(out), "--no-progress"]) == 0
    tasks = json.loads((out / "summary.json").read_text())["tasks"]
    assert tasks["ink"]["test_mse"] <= 0.2
    for name in ("digit", "parity", "ge5"):
        assert tasks[name]["test_accuracy"] >= 0.95, name


def test_run_with_adam_after_the_rule_records_it(tmp_path: Path) -> None:
    out = tmp_path / "adam"
    argv = [
        "run", "--suite", "quadratic", "--steps", "30", "--out", str(out), "--no-progress", "--consensus", "mean",
        "--lr", "0.1", "--trunk-lr", "1.0", "--trunk-optimizer", "adam", "--trunk-optimizer-lr", "0.05",
        "--dtype", "float64",
    ]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["trunk_optimizer"] == "adam(lr=0.05, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"
    with pytest.raises(SystemExit, match="--trunk-optimizer-lr needs --trunk-optimizer"):
        main(["run", "--suite", "quadratic", "--steps", "3", "--out", str(tmp_path / "x"), "--trunk-optimizer-lr", "1"])


# ------------------------------------------------------------------------------------- outputs and errors
def _rule_file(path: Path, seed: int) -> Path:
    """A learned_step rule file recorded as meta-trained on regression, its weights drawn from ``seed``."""
    import torch

    from agents.learned import new_rule, save_rule

    rule = new_rule("learned_step")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rule.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    return save_rule(path, "learned_step", rule, {"config": {"suite": "regression"}})


def test_every_option_that_changes_the_result_gets_its_own_default_out_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--weights (by the file's sha256: a retrained best.pt at the same path is another run), --trunk-optimizer and
    --trunk-optimizer-lr used to share one directory, the later run overwriting the earlier."""
    import hashlib

    monkeypatch.chdir(tmp_path)
    a, b = _rule_file(tmp_path / "a.pt", 0), _rule_file(tmp_path / "b.pt", 1)
    learned = ["run", "--suite", "regression", "--agent", "learned_step", "--action-mode", "step_size", "--steps", "2",
               "--no-progress"]  # fmt: skip
    baseline = ["run", "--suite", "quadratic", "--steps", "2", "--no-progress"]
    runs = [
        [*learned, "--weights", str(a)],
        [*learned, "--weights", str(b)],
        [*baseline],
        [*baseline, "--trunk-optimizer", "adam"],
        [*baseline, "--trunk-optimizer", "adam", "--trunk-optimizer-lr", "0.01"],
        [*baseline, "--trunk-optimizer", "sgd", "--trunk-optimizer-lr", "0.01"],
    ]
    for argv in runs:
        assert main(argv) == 0
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == len(runs), [d.name for d in dirs]
    by_weights = {}
    for d in dirs:
        weights = json.loads((d / "summary.json").read_text())["config"]["weights"]
        if weights is not None:
            by_weights[weights["path"]] = (weights["sha256"], d.name)
    for path in (a, b):
        sha, name = by_weights[str(path.resolve())]
        assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
        assert name.startswith("regression_sum_learned_step_s0_")
    b.write_bytes(a.read_bytes())  # b retrained into a's weights: a's run again, not b's directory
    assert main([*learned, "--weights", str(b)]) == 0
    assert len(list((tmp_path / "runs").iterdir())) == len(runs)


def test_summary_records_the_shipped_weights_a_learned_agent_played(tmp_path: Path) -> None:
    import hashlib

    from agents.learned import pretrained_path

    out = tmp_path / "run"
    argv = ["run", "--agent", "learned_mlp", "--suite", "quadratic", "--steps", "2", "--dtype", "float64",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    weights = json.loads((out / "summary.json").read_text())["config"]["weights"]
    path = pretrained_path("learned_mlp", "quadratic")
    assert weights == {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _one_line_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(exc.value) == err.strip()
    return err


def test_every_subcommand_refuses_in_one_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One line on stderr, ``mtg-env <command>: <why>``, exit status 2: argparse's errors (no usage block), the
    commands' own checks, and a --out that is a file (audit used to fail with a traceback after starting)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = _one_line_refusal(["run", "--suite", "imagenet"], capsys)
    assert err.startswith("mtg-env run: argument --suite: invalid choice: 'imagenet'") and "--help" in err
    err = _one_line_refusal(["run", "--suite", "quadratic", "--bogus"], capsys)
    assert err == "mtg-env run: unrecognized arguments: --bogus (see mtg-env run --help)\n"
    err = _one_line_refusal(["run", "--suite", "quadratic", "--steps", "0"], capsys)
    assert err == "mtg-env run: --steps must be >= 1\n"
    err = _one_line_refusal(["run", "--suite", "quadratic", "--out", str(afile)], capsys)
    assert err == f"mtg-env run: --out {afile} is a file; give a directory\n"
    err = _one_line_refusal(["audit", "--quick", "--out", str(afile), "--no-progress"], capsys)
    assert err == f"mtg-env audit: --out {afile} is a file; give a directory\n"
    err = _one_line_refusal(["bench", str(afile), "--quick"], capsys)
    assert err == f"mtg-env bench: benchmark config must be .toml, .yaml or .yml, got {afile.name}\n"
    err = _one_line_refusal(["meta-train", "--agent", "learned_step", "--out", str(afile)], capsys)
    assert err == f"mtg-env meta-train: --out {afile} is a file; give a directory\n"
    err = _one_line_refusal(["run", "--suite", "quadratic", "--threads", "0"], capsys)
    assert err == "mtg-env run: --threads must be >= 1, got 0\n"


def test_a_refused_command_prints_no_traceback_from_the_console(tmp_path: Path) -> None:
    """The console script, end to end: ``meta-train --resume`` with no checkpoint was a FileNotFoundError
    traceback."""
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "mtg_env.cli", "meta-train", "--agent", "learned_step", "--suite", "regression",
           "--out", str(out), "--resume", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"mtg-env meta-train: resume=True (--resume) needs a checkpoint at {out}/last.pt, and there is none\n"
    )
    assert proc.stdout == "" and not out.exists()
