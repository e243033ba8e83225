"""A benchmark config is checked whole before a match is played: repeats, types, sizes, imports, signatures and
roles are refused in one line that names the key, and nothing is written (fuzzed with Hypothesis at the end)."""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mtg_env.bench import config_from_dict, default_config, load_config, play_matches, quick_config, run_bench
from mtg_env.bench import runner as bench_runner
from mtg_env.bench.runner import tuning_matches
from mtg_env.cli import main

#: A small benchmark with a baseline (a yardstick) and a policy by import path (an entrant).
SMALL: dict[str, Any] = {
    "name": "small",
    "policies": [
        {"name": "gradient", "baseline": "gradient"},
        {"name": "mine", "factory": "agents:AdamAgent", "kwargs": {"eps": 1e-6}},
    ],
    "suites": [{"name": "quadratic"}, {"name": "toy2d"}],
    "rules": ["sum", "mean"],
    "horizons": [5],
    "tuning": {"low": 0.01, "high": 1.0, "tuning_seeds": [1000], "eval_seeds": [0, 1]},
    "mixed": {"reference": "gradient", "deviators": ["selfish"]},
    "bootstrap_reps": 50,
}


def small(**change: Any) -> dict[str, Any]:
    return {**copy.deepcopy(SMALL), **change}


def with_policy(**change: Any) -> dict[str, Any]:
    """SMALL with its second policy changed."""
    data = small()
    data["policies"][1] = {**data["policies"][1], **change}
    return data


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def to_toml(data: dict[str, Any]) -> str:
    """``data`` as a TOML document (scalars, then tables, then arrays of tables)."""
    lines, tables, arrays = [], [], []
    for key, v in data.items():
        if isinstance(v, dict):
            tables.append((key, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((key, v))
        else:
            lines.append(f"{json.dumps(key)} = {_value(v)}")
    for key, table in tables:
        lines += [f"[{json.dumps(key)}]"] + [f"{json.dumps(k)} = {_value(x)}" for k, x in table.items()]
    for key, items in arrays:
        for item in items:
            lines += [f"[[{json.dumps(key)}]]"] + [f"{json.dumps(k)} = {_value(x)}" for k, x in item.items()]
    return "\n".join(lines) + "\n"


def test_the_toml_writer_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(to_toml(SMALL))
    assert load_config(path) == config_from_dict(SMALL)


def assert_refused_before_any_match(data: dict[str, Any], out: Path, match: str) -> None:
    """``run_bench`` refuses ``data`` with a one-line error matching ``match``, and writes nothing."""
    with pytest.raises((ValueError, TypeError)) as info:
        run_bench(config_from_dict(data), out, "local", report=False)
    message = str(info.value)
    assert "\n" not in message, message
    assert info.match(match)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


# --------------------------------------------------------------------------- results that would be wrong
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (small(suites=[{"name": "quadratic"}, {"name": "quadratic"}]), r"suites\[1\] repeats 'quadratic'"),
        # one suite twice with other options: the workloads share a name, so their games would mix
        (small(suites=["toy2d", {"name": "toy2d", "options": {"seed": 1}}]), r"suites\[1\] repeats 'toy2d'"),
        (small(rules=["sum", "mean", "sum"]), r"rules\[2\] repeats 'sum'"),
        (small(horizons=[5, 5]), r"horizons\[1\] repeats 5"),
        (small(mixed={"reference": "gradient", "deviators": ["selfish", "selfish"]}), r"deviators\[1\] repeats"),
        (small(mixed={"reference": "gradient", "rules": ["sum", "sum"]}), r"\[mixed\] rules\[1\] repeats"),
    ],
)
def test_a_repeat_that_would_count_twice_in_the_cis_is_refused_naming_the_key(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_dict(data)


@pytest.mark.parametrize(
    ("key", "value"),
    [("bootstrap_reps", -5), ("bootstrap_reps", 0), ("bootstrap_reps", "2000"), ("bootstrap_reps", 2.5),
     ("smoothing", 0), ("smoothing", -1), ("smoothing", True)],
)  # fmt: skip
def test_bad_statistics_settings_are_refused_before_any_match(tmp_path: Path, key: str, value: Any) -> None:
    # They used to fail only in the report, after every match had been played.
    assert_refused_before_any_match(small(**{key: value}), tmp_path / "out", rf"^{key} must be an int >= 1")


@pytest.mark.parametrize("value", ["no", "false", 0, 1])
def test_is_baseline_must_be_a_bool(value: Any) -> None:
    # "no" used to read as True, making the policy a yardstick.
    with pytest.raises(TypeError, match=r"policies\[1\]\.is_baseline must be True or False"):
        config_from_dict(with_policy(is_baseline=value))


def test_an_oversized_benchmark_is_refused_naming_the_product(tmp_path: Path) -> None:
    config = config_from_dict(small(horizons=[10_000_000]))
    with pytest.raises(ValueError) as info:
        config.check()
    message = str(info.value)
    assert message.startswith("max_game_steps: the benchmark would play 920,000,000 game-steps"), message
    assert "tuning 2 policies × 2 suites × 2 rules × 10,000,000 steps (sum of horizons) × 7 trials" in message
    assert "shorter horizons" in message and "raise max_game_steps" in message
    # a grid of 10^9 points per decade is refused by counting, not by building it
    huge = small(tuning={**SMALL["tuning"], "points_per_decade": 10**9})
    with pytest.raises(ValueError, match=r"× 2,000,000,001 trials \(2,000,000,001 step sizes"):
        config_from_dict(huge).check()
    assert_refused_before_any_match(small(max_game_steps=400), tmp_path / "out", "^max_game_steps: ")


def test_the_size_limit_counts_exactly_the_game_steps_of_the_plan() -> None:
    config = config_from_dict(small())
    plan = tuning_matches(config) + play_matches(config, {(p.name, w.name): 0.1 for p in config.policies
                                                           for w in config.workloads()})  # fmt: skip
    steps = sum((s.protocol.budget if s.protocol is not None else len(s.seeds)) * s.workload.horizon for s in plan)
    config_from_dict(small(max_game_steps=steps)).check()
    with pytest.raises(ValueError, match=f"would play {steps:,} game-steps"):
        config_from_dict(small(max_game_steps=steps - 1)).check()
    default_config().check()  # the default benchmark is well inside the default limit


# ----------------------------------------------------------------------------- failures that came late
LATE = [
    (with_policy(factory="nopkg_for_mtg_tests.players:make"),
     r"^policies\[1\]\.factory \(policy 'mine'\): cannot import 'nopkg_for_mtg_tests.players:make' "
     r"\(ModuleNotFoundError: No module named 'nopkg_for_mtg_tests'\)$"),
    (with_policy(factory="agents:NoSuchAgent"), r"^policies\[1\]\.factory .*AttributeError"),
    (with_policy(factory="agents.runner:AGENTS"), r"^policies\[1\]\.factory .*is a dict, not a callable"),
    ({**small(), "policies": [SMALL["policies"][0], {"name": "adam", "baseline": "adma"}]},
     r"^policies\[1\]\.baseline: unknown baseline 'adma'; available: \['adam', "),
    (with_policy(kwargs={"epss": 1e-6}),
     r"^policies\[1\]\.kwargs \(policy 'mine'\): agents:AdamAgent\(lr, trunk_lr, betas, eps\) does not take these "
     r"arguments \(got an unexpected keyword argument 'epss'\)$"),
    ({**small(), "policies": [SMALL["policies"][0], {"name": "adam", "baseline": "adam", "kwargs": {"bta": 1}}]},
     r"^policies\[1\]\.kwargs \(policy 'adam'\): adam\(lr, trunk_lr, betas, eps\) does not take"),
    ({**small(), "policies": [SMALL["policies"][0], {"name": "g", "baseline": "gradient",
                                                     "kwargs": {"schedule": "fast"}}]},
     r"^policies\[1\]\.kwargs \(policy 'g'\): unknown schedule 'fast'"),
    (small(suites=["quadratic", {"name": "toy2d", "options": {"hidden": 8}}]),
     r"^suites\[1\] \('toy2d'\) under rule 'sum': suite 'toy2d' has no option\(s\) \['hidden'\]"),
    (small(suites=[{"name": "quadratic", "options": {"max_cycles": 9}}]),
     r"^suites\[0\]: suite 'quadratic': options sets 'max_cycles', which the benchmark sets \(from horizons\)"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "match"), LATE)
def test_a_failure_that_came_late_is_refused_before_the_first_match(
    tmp_path: Path, data: dict[str, Any], match: str
) -> None:
    # These used to surface inside a match, after the first policy's matches had been played and written.
    assert_refused_before_any_match(data, tmp_path / "out", match)


@pytest.mark.parametrize(("data", "match"), [LATE[0], LATE[3], LATE[4]], ids=["factory", "baseline", "kwargs"])
def test_the_cli_refuses_a_bad_config_in_one_line_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], match: str
) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(to_toml(data))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(path), "--out", str(out), "--no-progress"])
    assert exc.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.count("\n") == 1, printed.err  # one line, no traceback
    prefix = "mtg-env bench: "
    assert printed.err.startswith(prefix)
    assert re.search(match, printed.err[len(prefix) :].rstrip("\n")), printed.err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- roles
def test_role_says_which_policies_set_the_scores_bar() -> None:
    config = config_from_dict(small())
    assert [p.role for p in config.policies] == ["yardstick", "entrant"]  # the defaults: baseline, factory
    data = small()
    data["policies"] = [
        {"name": "gradient", "baseline": "gradient"},
        {"name": "adam", "baseline": "adam", "role": "entrant"},
        {"name": "mine", "factory": "agents:AdamAgent", "role": "yardstick"},
        {"name": "old", "baseline": "momentum", "is_baseline": False},  # the older spelling still works
    ]
    config = config_from_dict(data)
    assert [p.role for p in config.policies] == ["yardstick", "entrant", "yardstick", "entrant"]
    assert [p.is_baseline for p in config.policies] == [True, False, True, False]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"role": "reference"}, r"policies\[1\]\.role must be one of \['yardstick', 'entrant'\]"),
        ({"role": True}, r"policies\[1\]\.role must be one of"),
        ({"role": "entrant", "is_baseline": True}, r"policies\[1\]: role = 'entrant' and is_baseline = True"),
    ],
)
def test_a_bad_role_is_refused(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_dict(with_policy(**change))


def test_a_benchmark_without_a_yardstick_is_refused() -> None:
    # It used to fall back to every policy setting the bar, silently.
    data = small()
    data["policies"][0]["role"] = "entrant"
    with pytest.raises(ValueError, match=r"^role: no policy is a yardstick; set role = 'yardstick'"):
        config_from_dict(data)


def test_the_bench_guide_and_the_config_docs_describe_the_role() -> None:
    import mtg_env.bench.spec as spec

    guide = (Path(__file__).resolve().parent.parent / "docs" / "guides" / "enter_the_bench.md").read_text()
    for text in (spec.__doc__ or "", guide):
        assert 'role = "yardstick"' in text and '"entrant"' in text


# --------------------------------------------------------------------------------------------- --quick
def test_quick_shrinks_a_benchmark_the_way_it_shrinks_the_default() -> None:
    data = small(rules=["sum", "mean", "upgrad"], horizons=[40, 20], name="mine")
    data["suites"] = ["quadratic", "toy2d", "regression"]
    data["tuning"] = {**data["tuning"], "tuning_seeds": [1000, 1001], "eval_seeds": list(range(8))}
    data["mixed"] = {"reference": "gradient", "deviators": ["selfish", "mine"], "rules": ["upgrad"]}
    config = config_from_dict(data)
    quick = quick_config(config)
    assert quick.name == "mine_quick" and quick.policies == config.policies
    assert [s.name for s in quick.suites] == ["quadratic", "toy2d"]
    assert quick.rules == ("sum", "upgrad") and quick.mixed is not None and quick.mixed.rules == ("upgrad",)
    assert quick.mixed.deviators == ("selfish", "mine") and quick.horizons == (10,)
    assert quick.protocol.tuning_seeds == (1000,) and quick.protocol.eval_seeds == (0, 1, 2, 3, 4)
    assert quick.protocol.step_sizes() == config.protocol.step_sizes() and quick.bootstrap_reps == 50
    quick.check()
    default = quick_config(default_config())  # the default, cut as the built-in --quick cuts it
    assert default.horizons == quick_config().horizons and len(default.protocol.eval_seeds) == 5


# ------------------------------------------------------------------------------------------------ fuzz
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # seeded: the same configs every run, so a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

#: Values a careless config holds: of the wrong type, non-finite, out of range, or valid for another key.
ODD = st.sampled_from(
    [True, False, 0, 1, -5, 3, 2.5, -0.5, 1e308, math.nan, math.inf, 10**18, "", "no", "sum", "adam", "gradient",
     "selfish", "toy2d", [], [1, 2], [5, 5], ["sum", "sum"], ["sum"], {"a": 1}]
)  # fmt: skip

#: Where a mutation may act: (section, key); section "" is the top level, policies/suites their entry [1].
PLACES = (
    [("", k) for k in ("name", "rules", "horizons", "dtype", "device", "nash_gap", "reference", "bootstrap_reps",
                       "smoothing", "max_game_steps", "policies", "suites", "tuning", "mixed")]
    + [("tuning", k) for k in ("low", "high", "points_per_decade", "search", "trials", "tuning_seeds",
                               "eval_seeds")]
    + [("mixed", k) for k in ("reference", "deviators", "selfish_scale", "rules")]
    + [("policies", k) for k in ("name", "baseline", "factory", "kwargs", "role", "is_baseline")]
    + [("suites", k) for k in ("name", "options")]
)  # fmt: skip

MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PLACES), ODD),
    st.tuples(st.just("delete"), st.sampled_from(PLACES), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from(["", "tuning", "mixed", "policies", "suites"]), st.none()),
    st.tuples(st.just("repeat"), st.sampled_from(["suites", "rules", "horizons", "policies"]), st.none()),
    st.tuples(
        st.just("factory"),
        st.sampled_from(["nopkg_for_mtg_tests.players:make", "agents:NoSuchAgent", "agents.runner:AGENTS"]),
        st.none(),
    ),
)


def _mutate(data: dict[str, Any], mutation: tuple[str, Any, Any]) -> tuple[list[str], bool]:
    """Apply ``mutation`` to ``data``; returns the key names an error it causes may name, and whether it surely
    broke the config (an unknown key, a repeat or a factory that cannot be imported, where it applied)."""
    kind, where, value = mutation
    if kind == "unknown":
        target = data if where == "" else data.get(where)
        if isinstance(target, list):
            target = target[1] if len(target) > 1 else None
        if isinstance(target, dict):
            target["colour"] = "red"
        return ["colour"], isinstance(target, dict)
    if kind == "repeat":
        applies = isinstance(data.get(where), list) and bool(data[where])
        if applies:
            data[where].append(copy.deepcopy(data[where][0]))
        return [where], applies
    if kind == "factory":
        data["policies"][1]["factory"] = where
        return ["policies[1]"], True
    section, key = where
    if section == "":
        target: Any = data
    elif section in ("policies", "suites"):
        entries = data.get(section)
        target = entries[1] if isinstance(entries, list) and len(entries) > 1 else None
    else:
        target = data.get(section)
    if isinstance(target, dict):
        if kind == "set":
            target[key] = copy.deepcopy(value)
        else:
            target.pop(key, None)
    names = {"policies": "policies[1]", "suites": "suites[1]"}
    return [names.get(section, key)], False


class WouldPlay(Exception):
    """Raised instead of playing the first match: the config was accepted whole."""


def _refuse_to_play(self: Any, specs: list[Any]) -> Any:
    raise WouldPlay


@FUZZ
@given(mutations=st.lists(MUTATION, max_size=2))
def test_fuzzed_configs_are_checked_whole_before_any_match(mutations: list[tuple[str, Any, Any]]) -> None:
    data = small()
    named: list[str] = []
    broken = False
    for m in mutations:
        names, surely = _mutate(data, m)
        named, broken = named + names, broken or surely
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "bench.toml", Path(tmp) / "out"
        path.write_text(to_toml(data))
        try:
            with mock.patch.object(bench_runner.Executor, "map", _refuse_to_play):
                run_bench(load_config(path), out, "local", report=False)
        except WouldPlay:  # valid: it got to the first match, and nothing was played or written before it
            event("accepted")
            assert not broken, f"{mutations}: accepted a config with an unknown key, a repeat or a bad factory"
            assert not (out / "results.jsonl").exists()
            return
        except (ValueError, TypeError, FileNotFoundError) as err:
            event(f"refused: {type(err).__name__}")
            message = str(err)
            assert "\n" not in message, message
            assert mutations, f"the base config was refused: {err}"
            assert any(name in message for name in named), f"{mutations}: the error names none of {named}: {err}"
            assert not out.exists(), f"{mutations}: refused, but wrote {sorted(p.name for p in out.iterdir())}"
            return
        raise AssertionError("run_bench neither refused the config nor started to play")  # pragma: no cover


def test_the_fuzz_base_config_is_valid(tmp_path: Path) -> None:
    with mock.patch.object(bench_runner.Executor, "map", _refuse_to_play), pytest.raises(WouldPlay):
        run_bench(config_from_dict(small()), tmp_path, "local")
