"""The benchmark: configs, identical results on every backend, resume, the leaderboard, the manipulability table."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mtg_env.bench import (
    SELFISH,
    config_from_dict,
    load_config,
    load_records,
    quick_config,
    read_results,
    run_bench,
    write_report,
)
from mtg_env.bench import report as bench_report
from mtg_env.bench.match import MatchSpec, run_match
from mtg_env.cli import main
from mtg_env.tuning import TuningProtocol

#: A benchmark small enough for the default test run (a few seconds on the local backend).
TINY: dict[str, Any] = {
    "name": "tiny",
    "policies": [{"name": "gradient", "baseline": "gradient"}, {"name": "adam", "baseline": "adam"}],
    "suites": [{"name": "quadratic"}, {"name": "toy2d"}],
    "rules": ["sum", "mean"],
    "horizons": [15],
    "tuning": {"low": 0.01, "high": 1.0, "tuning_seeds": [1000], "eval_seeds": [0, 1, 2, 3]},
    "mixed": {"reference": "gradient", "deviators": [SELFISH], "selfish_scale": 3.0},
    "bootstrap_reps": 200,
}

TOML = """
name = "tiny"
rules = ["sum", "mean"]
horizons = [15]
bootstrap_reps = 200
[[policies]]
name = "gradient"
baseline = "gradient"
[[policies]]
name = "adam"
baseline = "adam"
[[suites]]
name = "quadratic"
[[suites]]
name = "toy2d"
[tuning]
low = 0.01
high = 1.0
tuning_seeds = [1000]
eval_seeds = [0, 1, 2, 3]
[mixed]
reference = "gradient"
deviators = ["selfish"]
selfish_scale = 3.0
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny_local")
    return out, run_bench(config_from_dict(TINY), out, "local")


# --------------------------------------------------------------------------------------------- config
def test_a_toml_file_describes_the_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(TOML)
    assert load_config(path) == config_from_dict(TINY)
    assert load_config(path).digest() == config_from_dict(TINY).digest()


def test_a_yaml_file_describes_the_same_benchmark(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert load_config(path) == config_from_dict(TINY)
    with pytest.raises(ValueError, match=r"\.toml, \.yaml or \.yml"):
        (tmp_path / "bench.json").write_text("{}")
        load_config(tmp_path / "bench.json")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"colour": "red"}, "unknown benchmark config key"),
        ({"tuning": {"tuning_seeds": [0], "eval_seeds": [0, 1]}}, "disjoint"),
        ({"mixed": {"reference": "gradient", "deviators": ["nobody"]}}, "deviator 'nobody'"),
        ({"mixed": {"reference": "nobody"}}, "reference 'nobody'"),
        ({"rules": ["sum", "median_of_means"]}, "unknown consensus rule"),
        ({"suites": [{"name": "imagenet"}]}, "unknown suite"),
        ({"policies": [{"name": "x", "baseline": "adam", "factory": "a:b"}]}, "exactly one of"),
        ({"policies": [{"name": "x", "factory": "no_colon"}]}, "package.module:callable"),
        ({"policies": [{"name": "a", "baseline": "adam"}, {"name": "a", "baseline": "gradient"}]}, "unique"),
        ({"horizons": [0]}, "horizons"),
        ({"nash_gap": "some"}, "nash_gap"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_dict({**TINY, **change})


def test_a_policy_enters_by_import_path() -> None:
    config = config_from_dict(
        {
            **TINY,
            "policies": [*TINY["policies"], {"name": "mine", "factory": "agents:AdamAgent", "kwargs": {"eps": 1e-6}}],
        }
    )
    player = config.policy("mine").build()(0.01)
    assert repr(player) == "AdamAgent(lr=0.01, betas=(0.9, 0.999), eps=1e-06)"
    assert config.policy("mine").is_baseline is False


# ------------------------------------------------------------------------------------ run and report
def test_the_tiny_benchmark_writes_its_leaderboard(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = tiny_run
    for name in ("results.jsonl", "leaderboard.md", "leaderboard.csv", "leaderboard.json", "performance_profile.png",
                 "suite_scores.png", "loss_curves.png", "manipulability.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    # 2 policies x 4 workloads tuned and evaluated; selfish on each task of each workload (3 + 2 tasks, 2 rules)
    assert kinds.count("tune") == 8 and kinds.count("eval") == 8 and kinds.count("mixed") == 10
    assert len({r["key"] for r in records}) == len(records)
    md = (out / "leaderboard.md").read_text()
    assert "7 step sizes from 0.01 to 1" in md and "7 trials per policy and workload" in md
    board = {row["policy"]: row for row in summary["leaderboard"]}
    assert set(board) == {"gradient", "adam"}
    for row in board.values():
        assert row["iqm_ci"][0] <= row["iqm"] <= row["iqm_ci"][1] and row["games"] == 16
        assert 0.0 <= row["profile_score"] <= 1.0
    assert board["gradient"]["poi_vs_reference"][0] == 0.5  # the reference against itself
    # the tuned lr of each (policy, workload) is what its eval games played
    tuned = {(r["policy"], r["workload"]): r["result"]["best_lr"] for r in records if r["kind"] == "tune"}
    for r in records:
        if r["kind"] == "eval":
            assert all(g["lrs"][0] == tuned[(r["policy"], r["workload"])] for g in r["result"]["games"])


def test_the_leaderboard_names_the_yardsticks(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = tiny_run
    assert summary["yardsticks"] == ["gradient", "adam"]
    assert (
        "L* the best yardstick's median final training loss on the workload (yardsticks: gradient, adam; "
        in (out / "leaderboard.md").read_text()
    )


def test_an_interrupted_report_leaves_no_half_written_file(
    tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, summary = tiny_run
    config = config_from_dict(TINY)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    changed = {**summary, "digest": "000000000000"}
    write_report(config, changed, new)
    write_report(config, summary, old)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    after = {p.name: p.read_bytes() for p in new.iterdir()}
    written: list[str] = []
    real = bench_report.write_atomic

    def killed_at_the_third_file(path: Path, data: str | bytes) -> None:
        written.append(Path(path).name)
        if len(written) == 3:
            raise Interrupt
        real(path, data)

    monkeypatch.setattr(bench_report, "write_atomic", killed_at_the_third_file)
    with pytest.raises(Interrupt):
        write_report(config, changed, old)
    assert not (old / "leaderboard.json").exists()  # the marker of a complete report is gone until the end
    for path in old.iterdir():  # every file whole: the old report's or the new one's, and no temporary file
        assert path.read_bytes() in (before[path.name], after[path.name]), path.name
    monkeypatch.setattr(bench_report, "write_atomic", real)
    write_report(config, changed, old)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == after


def test_the_selfish_deviator_gains_under_sum(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, summary = tiny_run
    table = {(row["rule"], row["deviator"]): row for row in summary["manipulability"]}
    own, low, _ = table[("sum", SELFISH)]["own_gain"]
    assert own > 0 and low > 0, table[("sum", SELFISH)]
    assert table[("sum", SELFISH)]["own_positive"] > 0.5


def test_the_process_backend_gives_identical_records(tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = tiny_run
    run_bench(config_from_dict(TINY), tmp_path, "process", workers=2, report=False)
    assert (tmp_path / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_same_file(tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = tiny_run
    config = config_from_dict(TINY)
    seen: list[str] = []

    def stop_after_eleven(record: dict[str, Any]) -> None:
        seen.append(record["key"])
        if len(seen) == 11:  # past the tuning phase, mid-way through the matches
            raise Interrupt

    with pytest.raises(Interrupt):
        run_bench(config, tmp_path, "local", on_record=stop_after_eleven)
    path = tmp_path / "results.jsonl"
    assert len(path.read_text().splitlines()) == 11
    with path.open("a") as f:  # a write cut off mid-record
        f.write('{"key": "abc", "kind": "ev')
    played: list[str] = []
    run_bench(config, tmp_path, "local", on_record=lambda r: played.append(r["key"]), report=False)
    assert len(played) == 26 - 11 and not set(played) & set(seen)  # only the missing matches were played
    assert path.read_bytes() == (out / "results.jsonl").read_bytes()
    assert len(load_records(path)) == 26


def _record(key: str) -> str:
    return json.dumps({"key": key, "kind": "tune", "policy": "p", "workload": "w", "result": {"best_lr": 0.1}})


def test_load_records_skips_bad_lines_and_leaves_the_file_as_it_is(tmp_path: Path) -> None:
    # It used to stop at the first bad line and truncate the file there, dropping every record after it.
    path = tmp_path / "results.jsonl"
    text = "\n".join([_record("a"), "", "# a note", _record("b"), '{"key": "c", "kind": "tune"}', "[1, 2]",
                      _record("a"), _record("d"), '{"key": "e", "x"'])  # fmt: skip
    path.write_text(text)
    assert list(load_records(path)) == ["a", "b", "d"]
    assert path.read_text() == text
    skipped = read_results(path).skipped
    assert [(s.line, s.reason) for s in skipped] == [
        (2, "blank line"),
        (3, "not JSON (a note, or a write cut off)"),
        (5, "a record without its policy or workload"),
        (6, "not a JSON object"),
        (7, "repeats the key of line 1"),
        (9, "not JSON (a note, or a write cut off)"),
    ]
    assert read_results(path).ends_with_newline is False


#: A benchmark of seven matches (two tuned, two evaluated, three mixed), for the resume tests.
SEVEN: dict[str, Any] = {**TINY, "suites": [{"name": "quadratic"}], "rules": ["sum"], "horizons": [5],
                         "tuning": {"low": 0.01, "high": 1.0, "tuning_seeds": [1000], "eval_seeds": [0, 1]},
                         "bootstrap_reps": 50}  # fmt: skip


@pytest.fixture(scope="module")
def seven_run(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("seven")
    run_bench(config_from_dict(SEVEN), out, "local", report=False)
    return (out / "results.jsonl").read_bytes()


def _without_result(line: str) -> str:
    record = json.loads(line)
    del record["result"]
    return json.dumps(record)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda line: "\n" + line, "blank line"),
        (lambda line: "# rerun after the power cut\n" + line, "not JSON (a note, or a write cut off)"),
        (_without_result, "a record without a result"),
    ],
    ids=["blank line", "note line", "record without result"],
)
def test_a_resume_keeps_every_intact_record_around_a_bad_line(
    seven_run: bytes, tmp_path: Path, bad: Callable[[str], str], reason: str
) -> None:
    # One bad line used to truncate the file there on resume (3 of 4 records lost), or crash it (KeyError).
    lines = seven_run.decode().splitlines()
    assert len(lines) == 7
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join([*lines[:2], bad(lines[2]), *lines[3:]]) + "\n")
    kept = set(load_records(path))
    assert len(kept) == (6 if reason == "a record without a result" else 7)
    played: list[str] = []
    summary = run_bench(config_from_dict(SEVEN), tmp_path, "local", report=False, on_record=lambda r: played.append(
        r["key"]))  # fmt: skip
    assert set(played) == {json.loads(lines[2])["key"]} - kept  # only a broken record's match is played again
    assert summary["skipped_lines"] == [{"line": 3, "reason": reason}]
    assert path.read_bytes() == seven_run  # resumed to the uninterrupted run's file
    skipped = (tmp_path / "results.skipped").read_text() if (tmp_path / "results.skipped").exists() else ""
    assert skipped == ("" if reason == "blank line" else bad(lines[2]).splitlines()[0] + "\n")


def test_a_resume_after_a_cut_off_write_and_a_note_keeps_appending_whole_lines(
    seven_run: bytes, tmp_path: Path
) -> None:
    lines = seven_run.decode().splitlines()
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines[:4]) + "\nnote\n" + lines[4][:30])  # no newline: a write cut off
    seen: list[str] = []

    def stop_after_one(record: dict[str, Any]) -> None:
        seen.append(record["key"])
        raise Interrupt

    with pytest.raises(Interrupt):
        run_bench(config_from_dict(SEVEN), tmp_path, "local", report=False, on_record=stop_after_one)
    after = path.read_text().splitlines()
    assert after[:5] == [*lines[:4], "note"] and after[5] == lines[4][:30]  # nothing dropped or rewritten
    assert json.loads(after[6])["key"] == seen[0]  # the new record on a line of its own
    summary = run_bench(config_from_dict(SEVEN), tmp_path, "local", report=False)
    assert summary["skipped_lines"] == [
        {"line": 5, "reason": "not JSON (a note, or a write cut off)"},
        {"line": 6, "reason": "not JSON (a note, or a write cut off)"},
    ]
    assert path.read_bytes() == seven_run
    assert (tmp_path / "results.skipped").read_text() == "note\n" + lines[4][:30] + "\n"


def test_a_match_is_a_pure_function_of_its_spec(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = tiny_run
    record = json.loads((out / "results.jsonl").read_text().splitlines()[-1])
    spec = record["spec"]
    assert record["kind"] == "mixed" and spec["task"] >= 0
    config = config_from_dict(TINY)
    workload = next(w for w in config.workloads() if w.name == record["workload"])
    lineup = tuple(config.policy(SELFISH if k == spec["task"] else "gradient") for k in range(len(spec["lrs"])))
    again = MatchSpec("mixed", workload, lineup, tuple(spec["seeds"]), tuple(spec["lrs"]), policy=SELFISH,
                      task=spec["task"])  # fmt: skip
    assert again.key == record["key"] and run_match(again) == record


def test_the_mtg_env_bench_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.replace("horizons = [15]", "horizons = [8]").replace("[0, 1, 2, 3]", "[0, 1]"))
    assert main(["bench", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| policy | IQM score" in printed and "Manipulability" in printed
    assert "on the local backend" in printed and (tmp_path / "out" / "leaderboard.csv").exists()
    with pytest.raises(SystemExit):
        main(["bench", "--address", "1.2.3.4:6379"])


def test_the_bench_command_runs_a_file_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `--quick FILE` used to be refused ("give either a benchmark file or --quick, not both").
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.replace("horizons = [15]", "horizons = [8]"))
    assert main(["bench", "--quick", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "# Benchmark `tiny_quick`" in printed and "horizons 4) × 4 held-out seeds" in printed
    records = load_records(tmp_path / "out" / "results.jsonl")
    assert {r["spec"]["workload"]["horizon"] for r in records.values()} == {4}


def test_the_bench_command_reports_the_lines_it_skipped(
    seven_run: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seven.toml"
    path.write_text(TOML.replace('[[suites]]\nname = "toy2d"\n', "").replace('["sum", "mean"]', '["sum"]')
                    .replace("horizons = [15]", "horizons = [5]").replace("[0, 1, 2, 3]", "[0, 1]")
                    .replace("bootstrap_reps = 200", "bootstrap_reps = 50"))  # fmt: skip
    assert load_config(path) == config_from_dict(SEVEN)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_bytes(b"\n" + seven_run)
    assert main(["bench", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "results.jsonl: skipped 1 line(s) that were not intact records" in printed
    assert "line 1 (blank line)" in printed and (out / "results.jsonl").read_bytes() == seven_run


def test_the_quick_benchmark_is_small() -> None:
    config = quick_config()
    assert config.protocol.budget == 7 and len(config.workloads()) == 4
    assert not math.isnan(config.protocol.step_sizes()[0])


def test_the_example_user_policy_enters_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench guide's example benchmark (docs/guides/enter_the_bench.md), shrunk: the user's sign descent is tuned
    # and played like the baselines.
    root = Path(__file__).resolve().parent.parent
    monkeypatch.syspath_prepend(str(root / "examples"))
    config = load_config(root / "examples" / "bench_sign_descent.toml")
    assert [p.name for p in config.policies] == ["gradient", "adam", "sign_descent"]
    small = replace(
        config,
        suites=config.suites[:1],
        rules=("sum",),
        horizons=(10,),
        protocol=TuningProtocol(low=0.01, high=0.1, tuning_seeds=(7,), eval_seeds=(0, 1)),
        bootstrap_reps=100,
    )
    summary = run_bench(small, tmp_path, "local", report=False)
    lr = next(r["lr"] for r in summary["per_workload"] if r["policy"] == "sign_descent")
    assert lr in TuningProtocol(low=0.01, high=0.1).step_sizes()
    assert {row["deviator"] for row in summary["manipulability"]} == {SELFISH, "sign_descent"}
