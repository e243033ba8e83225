"""The sealed protocol's cells per consensus rule and its entrants with their own weights (mtg_env.bench.sealed):
a cell under a rule tunes and plays under it, an entrant with ``weights`` plays that file, and a config without
the new keys reports what it did before."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.learned import learned_agent
from agents.learned.checkpoint import WEIGHTS_DIR, load_rule, save_rule
from agents.learned.family import draw_games
from mtg_env.bench.sealed import (
    HEADER,
    _Floors,
    _game,
    _gaps,
    play_candidates,
    play_rule,
    run_cell,
    run_sealed,
    sealed_config_from_dict,
)
from tests.test_sealed import _CELL_PINS, _PIN_RTOL, _tiny_cell_config

_KEY = "0" * 32


def _replay_baseline(cell: dict[str, Any], baseline: str, consensus: str, draws: list[Any]) -> list[float]:
    """The gaps of ``baseline``'s chosen knobs in ``cell`` played again on ``draws`` under ``consensus``."""
    floors, gaps = _Floors(None), []
    for options, seeds in draws:
        game = _game("quadratic", options, cell["horizon"], consensus=consensus)
        start, final = play_candidates(game, [cell["tuned"][baseline]["knobs"]] * len(seeds), list(seeds))
        gaps += _gaps(start, final, floors.get("quadratic", options).value).tolist()
    return gaps


def test_a_cell_under_mean_tunes_and_plays_under_mean() -> None:
    config = replace(_tiny_cell_config("quadratic"), consensus=("mean",))
    rules = {"learned_mlp": learned_agent("learned_mlp", suite="quadratic").rule}
    cell = run_cell(config, "quadratic", 1, _Floors(None), rules, _KEY, "validation", "mean")
    assert cell["consensus"] == "mean"
    test_draws = draw_games("quadratic", "validation", config.test_draws, config.test_seeds)
    # Every player's reported gaps are its games played under mean (the quadratic's L* is exact: never lowered).
    for b in config.baselines:
        assert cell["gaps"][b] == _replay_baseline(cell, b, "mean", test_draws), b
        assert cell["gaps"][b] != _replay_baseline(cell, b, "sum", test_draws), b
    rule_gaps = []
    for options, seeds in test_draws:
        start, final = play_rule(rules["learned_mlp"], "quadratic", options, 8, list(seeds), consensus="mean")
        rule_gaps += _gaps(start, final, _Floors(None).get("quadratic", options).value).tolist()
    assert cell["gaps"]["learned_mlp"] == rule_gaps
    # The tuning games were mean's too: the chosen knobs' rung-1 gap is their mean gap on the tuning draws'
    # rung-1 seeds under mean.
    tuning = [(o, s[1:]) for o, s in draw_games("quadratic", "tuning", config.tuning_draws, config.tuning_seeds + 1)]
    for b in config.baselines:
        assert cell["tuned"][b]["tuning_gap"] == pytest.approx(np.mean(_replay_baseline(cell, b, "mean", tuning)))
    # ... and the baselines' cell differs from the sum cell (pinned in tests/test_sealed.py), while the shipped rule,
    # which plays sum_scaled (its proposals times M under mean), plays its sum games: the same gaps to round-off.
    pins = {k: [float.fromhex(p) for p in v] for k, v in _CELL_PINS["quadratic"].items()}
    assert all(cell["gaps"][k] != pytest.approx(v, rel=1e-3) for k, v in pins.items() if k in config.baselines)
    assert cell["gaps"]["learned_mlp"] == pytest.approx(pins["learned_mlp"], rel=1e-6)


def test_a_bad_consensus_name_is_refused_naming_it() -> None:
    data = {"protocol": "sealed", "families": ["quadratic"], "consensus": ["sum", "avg"]}
    with pytest.raises(ValueError, match=r"consensus: no consensus rule 'avg'; available: \['sum', 'mean', 'mgda'"):
        sealed_config_from_dict(data)
    with pytest.raises(TypeError, match="consensus must be a list of names"):
        sealed_config_from_dict({**data, "consensus": "mean"})
    config = sealed_config_from_dict({**data, "consensus": ["mean", "upgrad"]})
    assert config.consensus == ("mean", "upgrad") and config.quick().consensus == ("mean",)
    assert sealed_config_from_dict({"protocol": "sealed", "families": ["quadratic"]}).consensus == ("sum",)


def test_a_rule_a_family_cannot_play_is_refused_before_any_cell(tmp_path: Path) -> None:
    # famo takes the log of the losses; the quadratic game's losses go below 0 (krum: at least 3 tasks).
    config = replace(_tiny_cell_config("quadratic"), consensus=("mean", "famo"))
    with pytest.raises(ValueError, match=r"consensus: rule 'famo' cannot play family 'quadratic' .*needs every loss"):
        run_sealed(config, tmp_path / "out", progress=False, stream="validation")
    assert not (tmp_path / "out").exists()  # refused before anything was written or played


def _tiny_dict(**extra: Any) -> dict[str, Any]:
    """``_tiny_cell_config("quadratic")`` in its file form (without entrants)."""
    return {"protocol": "sealed", "name": "t", "families": ["quadratic"], "baselines": ["gradient", "adam"],
            "multiples": [1], "train_horizon": 8, "bootstrap_reps": 20,
            "search": {"low": 1e-2, "high": 1.0, "momentum": [0.9], "beta1": [0.9], "beta2": [0.999],
                       "trunk_ratios": [1.0], "schedules": ["constant"]},
            "tuning": {"draws": 1, "seeds": 1}, "test": {"draws": 2, "seeds": 2}, **extra}  # fmt: skip


def _rule_file(path: Path) -> Path:
    """The shipped regression learned_mlp's weights saved as a generalist's rule file (trained on a mixture)."""
    _, rule, _ = load_rule(WEIGHTS_DIR / "learned_mlp_regression.pt")
    return save_rule(path, "learned_mlp", rule, {"config": {"suite": ["quadratic", "regression"]}})


def test_an_entrant_with_weights_plays_them(tmp_path: Path) -> None:
    path = _rule_file(tmp_path / "run" / "best.pt")
    entrants = [{"agent": "learned_mlp", "families": ["quadratic"]},
                {"agent": "learned_mlp", "weights": str(path), "families": ["quadratic"]}]  # fmt: skip
    config = sealed_config_from_dict(_tiny_dict(entrants=entrants))
    assert [e.name for e in config.weighted_entrants] == ["learned_mlp[best]"]  # the default label
    report = run_sealed(config, tmp_path / "out", progress=False, stream="validation")
    (cell,) = report["cells"]
    assert list(cell["entrants"]) == ["learned_mlp", "learned_mlp[best]"]
    # Its gaps are the file's rule played directly; the shipped entrant keeps the quadratic weights (other gaps).
    _, rule, _ = load_rule(path)
    direct = []
    for options, seeds in draw_games("quadratic", "validation", 2, 2):
        start, final = play_rule(rule, "quadratic", options, 8, list(seeds))
        direct += _gaps(start, final, _Floors(None).get("quadratic", options).value).tolist()
    assert cell["gaps"]["learned_mlp[best]"] == direct
    pinned = [float.fromhex(p) for p in _CELL_PINS["quadratic"]["learned_mlp"]]
    assert cell["gaps"]["learned_mlp"] == pytest.approx(pinned, rel=_PIN_RTOL["quadratic"])  # by MKL branch
    md = (tmp_path / "out" / "report.md").read_text()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert "| learned_mlp[best] |" in md
    assert f"learned_mlp[best] = learned_mlp from {path} (sha256 {digest[:16]}…)" in md
    # the report names the bytes every label played (read once, before any cell)
    assert report["weights"]["learned_mlp[best] (quadratic)"] == {"weights": str(path), "sha256": digest}
    shipped = WEIGHTS_DIR / "learned_mlp_quadratic.pt"
    assert report["weights"]["learned_mlp (quadratic)"]["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    # A custom name, and a shipped tag (agents/learned/weights/learned_mlp_regression.pt) played on quadratic.
    tag = {"agent": "learned_mlp", "weights": "regression"}
    named = sealed_config_from_dict(_tiny_dict(entrants=[{**entrants[1], "name": "generalist"}, tag]))
    assert [(e.name, Path(e.weights).name, e.families) for e in named.weighted_entrants] == [
        ("generalist", "best.pt", ("quadratic",)),
        ("learned_mlp[regression]", "learned_mlp_regression.pt", ("quadratic",)),  # the config's families
    ]
    assert [p[0] for p in named.players("quadratic")] == ["generalist", "learned_mlp[regression]"]


def test_entrant_labels_are_unique(tmp_path: Path) -> None:
    path = str(_rule_file(tmp_path / "best.pt"))
    twice = [{"agent": "learned_mlp", "weights": path}, {"agent": "learned_mlp", "weights": path}]
    with pytest.raises(ValueError, match=r"the label 'learned_mlp\[best\]' .* is already the entrant with weights"):
        sealed_config_from_dict(_tiny_dict(entrants=twice))
    shadow = [{"agent": "learned_mlp"}, {"agent": "learned_mlp", "weights": path, "name": "learned_mlp"}]
    with pytest.raises(ValueError, match=r"the label 'learned_mlp' .* is already a shipped-weights entrant's"):
        sealed_config_from_dict(_tiny_dict(entrants=shadow))
    with pytest.raises(ValueError, match=r"the label 'adam' .* is already a baseline's"):
        sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp", "weights": path, "name": "adam"}]))
    renamed = [twice[0], {**twice[1], "name": "second"}]
    assert [e.name for e in sealed_config_from_dict(_tiny_dict(entrants=renamed)).weighted_entrants] == [
        "learned_mlp[best]", "second"]  # fmt: skip


def test_missing_weights_are_refused_saying_how_to_make_them(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "best.pt"
    how = "make one with `mtg-env meta-train --agent learned_mlp --suite SUITE --out DIR`, then set weights = "
    how += '"DIR/best.pt"'
    message = f"entrants[0] (learned_mlp): weights = '{missing}': no rule file {missing}; {how}"
    with pytest.raises(ValueError, match=re.escape(message)):
        sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp", "weights": str(missing)}]))
    tag = WEIGHTS_DIR / "learned_mlp_no_such_tag.pt"
    with pytest.raises(ValueError, match=re.escape(f"weights = 'no_such_tag': no shipped weights {tag}")) as err:
        sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp", "weights": "no_such_tag"}]))
    assert how in str(err.value) and "'quadratic'" in str(err.value)  # the shipped tags are listed
    with pytest.raises(ValueError, match=r"entrants\[0\]: unknown key\(s\) \['weight'\]"):
        sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp", "weight": "general"}]))


def test_a_config_without_the_new_keys_reports_as_before(tmp_path: Path) -> None:
    old = sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp"}]))
    assert old == _tiny_cell_config("quadratic")  # the same config as the pinned tiny cell's
    run_sealed(old, tmp_path / "old", progress=False, stream="validation")
    explicit = sealed_config_from_dict(_tiny_dict(entrants=[{"agent": "learned_mlp"}], consensus=["sum"]))
    run_sealed(explicit, tmp_path / "sum", progress=False, stream="validation")
    report = (tmp_path / "old" / "report.md").read_text()
    assert report == (tmp_path / "sum" / "report.md").read_text()
    assert HEADER in report and "consensus" not in report.lower()
    (cell,) = json.loads((tmp_path / "old" / "report.json").read_text())["cells"]
    for name, pins in _CELL_PINS["quadratic"].items():
        assert cell["gaps"][name] == pytest.approx([float.fromhex(p) for p in pins], rel=1e-6), name
    # Two rules: a cell per rule, the sum cell's numbers unchanged, the rule in a column of both tables.
    both = run_sealed(replace(old, consensus=("sum", "mean")), tmp_path / "two", progress=False, stream="validation")
    assert [c["consensus"] for c in both["cells"]] == ["sum", "mean"]
    assert both["cells"][0]["gaps"] == cell["gaps"]
    md = (tmp_path / "two" / "report.md").read_text()
    assert "| family | horizon | consensus | entrant |" in md and "| family | horizon | consensus | baseline |" in md
    assert re.search(r"\| quadratic \| 1× \(8\) \| mean \| learned_mlp \|", md)
    assert re.search(r"\| quadratic \| 1× \| mean \| adam \|", md)


def test_the_quick_bench_plays_the_first_rule(tmp_path: Path) -> None:
    config = replace(_tiny_cell_config("quadratic"), consensus=("mean", "sum"), multiples=(1, 2)).quick()
    assert config.consensus == ("mean",) and config.multiples == (1,)
    report = run_sealed(config, tmp_path, progress=False, stream="validation")
    assert [c["consensus"] for c in report["cells"]] == ["mean"]


def test_the_bench_file_takes_both_keys(tmp_path: Path) -> None:
    """``mtg-env bench FILE --quick``: the first rule, and the entrant with its own weights beside the shipped ones."""
    from mtg_env.cli import CLIError, main
    from tests.conftest import ROOT

    path = _rule_file(tmp_path / "run" / "best.pt")
    text = (ROOT / "examples" / "bench_learned.toml").read_text()
    text = text.replace('\ndevice = "cpu"', '\nconsensus = ["mean", "sum"]\ndevice = "cpu"', 1)
    text += f'\n[[entrants]]\nagent = "learned_mlp"\nweights = "{path}"\nname = "generalist"\n'
    config = tmp_path / "bench.toml"
    config.write_text(text)
    out = tmp_path / "out"
    assert main(["bench", str(config), "--quick", "--out", str(out), "--no-progress", "--validation"]) == 0
    (cell,) = json.loads((out / "report.json").read_text())["cells"]
    assert cell["consensus"] == "mean" and list(cell["entrants"]) == ["learned_mlp", "learned_lstm", "generalist"]
    assert "| quadratic | 1× (50) | mean | generalist |" in (out / "report.md").read_text()
    config.write_text(text.replace(str(path), str(tmp_path / "missing.pt")))
    with pytest.raises(CLIError, match=r"no rule file .*missing\.pt; make one with `mtg-env meta-train"):
        main(["bench", str(config), "--quick", "--out", str(tmp_path / "b")])
