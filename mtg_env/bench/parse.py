"""A :class:`~mtg_env.bench.config.BenchConfig` from its file (TOML or YAML) or from the parsed mapping; the file
form is described in :mod:`mtg_env.bench.spec`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from mtg_env._args import bool_arg, choice_arg, real_arg
from mtg_env.bench._values import _freeze, _one_line, _shown
from mtg_env.bench.config import BenchConfig
from mtg_env.bench.parts import ROLES, SELFISH, MixedSpec, PolicySpec, SuiteSpec
from mtg_env.tuning import TuningProtocol

_TOP_KEYS = {"name", "policies", "suites", "rules", "horizons", "tuning", "mixed", "dtype", "device", "nash_gap",
             "reference", "bootstrap_reps", "smoothing", "max_game_steps"}  # fmt: skip
_POLICY_KEYS = {"name", "baseline", "factory", "kwargs", "role", "is_baseline"}
_TUNING_KEYS = {"low", "high", "points_per_decade", "search", "trials", "tuning_seeds", "eval_seeds"}
_MIXED_KEYS = {"reference", "deviators", "selfish_scale", "rules", "reference_lr"}


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be a table (mapping), got {_shown(value)}")
    return value


def _known(table: dict[str, Any], known: set[str], key: str) -> None:
    unknown = sorted(map(str, set(table) - known))
    if unknown:
        raise ValueError(f"unknown {key} key(s) {unknown}; known: {sorted(known)}")


def _list(value: Any, key: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{key} must be a list, got {_shown(value)}")
    return tuple(value)


def _role(p: dict[str, Any], where: str) -> bool:
    """Whether the policy table ``p`` is a yardstick: ``role``, or the older ``is_baseline``, or the default."""
    role = p.get("role")
    if role is not None:
        choice_arg(f"{where}.role", role, ROLES)
    if "is_baseline" in p:
        implied = ROLES[0] if bool_arg(f"{where}.is_baseline", p["is_baseline"]) else ROLES[1]
        if role is not None and role != implied:
            raise ValueError(f"{where}: role = {role!r} and is_baseline = {p['is_baseline']} disagree; give role alone")
        role = implied
    if role is None:
        role = ROLES[0] if p.get("baseline") is not None else ROLES[1]
    return bool(role == ROLES[0])


def _policy(i: int, p: Any) -> PolicySpec:
    where = f"policies[{i}]"
    p = _table(p, where)
    _known(p, _POLICY_KEYS, where)
    name = p.get("name", p.get("baseline"))  # a baseline by name names itself unless told otherwise
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}.name must be a non-empty string, got {_shown(name)}")
    kwargs = _table(p.get("kwargs", {}), f"{where}.kwargs")
    is_baseline = _role(p, where)
    try:
        return PolicySpec(name, p.get("baseline"), p.get("factory"), _freeze(kwargs), is_baseline)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None


def _suite(i: int, s: Any) -> SuiteSpec:
    where = f"suites[{i}]"
    if isinstance(s, str):
        s = {"name": s}
    s = _table(s, where)
    _known(s, {"name", "options"}, where)
    if "name" not in s:
        raise ValueError(f"{where} needs a name (a suite of mtg_env.SUITES or an import path 'package.module:factory')")
    options = _table(s.get("options", {}), f"{where}.options")
    try:
        return SuiteSpec(s["name"], _freeze(options))
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None


def _protocol(data: dict[str, Any]) -> TuningProtocol:
    tuning = dict(_table(data.get("tuning", {}), "[tuning]"))
    _known(tuning, _TUNING_KEYS, "[tuning]")
    for key in ("tuning_seeds", "eval_seeds"):
        if key in tuning:
            tuning[key] = _list(tuning[key], f"[tuning] {key}")
    try:
        return TuningProtocol(**tuning)
    except (ValueError, TypeError) as err:
        raise type(err)(f"[tuning] {err}") from None


def _mixed(data: dict[str, Any]) -> MixedSpec | None:
    if "mixed" not in data:
        return None
    m = _table(data["mixed"], "[mixed]")
    _known(m, _MIXED_KEYS, "[mixed]")
    if "reference" not in m:
        raise ValueError("[mixed] needs a reference (the policy the other tasks play)")
    return MixedSpec(
        reference=m["reference"],
        deviators=_list(m.get("deviators", [SELFISH]), "[mixed] deviators"),
        selfish_scale=real_arg("[mixed] selfish_scale", m.get("selfish_scale", 4.0), 0.0, low_open=True),
        rules=_list(m.get("rules", ()), "[mixed] rules"),
        reference_lr=_list(m.get("reference_lr", ()), "[mixed] reference_lr"),
    )


def config_from_dict(data: dict[str, Any]) -> BenchConfig:
    """A :class:`BenchConfig` from the parsed file (see :mod:`mtg_env.bench.spec`). Nothing is coerced: unknown keys,
    values of the wrong type (``is_baseline = "no"``, ``bootstrap_reps = "5"``) and repeats (a suite, rule,
    horizon or policy name twice) are errors that name the key."""
    data = _table(data, "a benchmark config")
    _known(data, _TOP_KEYS, "benchmark config")
    policies = tuple(_policy(i, p) for i, p in enumerate(_list(data.get("policies", []), "policies")))
    suites = tuple(_suite(i, s) for i, s in enumerate(_list(data.get("suites", []), "suites")))
    return BenchConfig(
        name=data.get("name", "bench"),
        policies=policies,
        suites=suites,
        rules=_list(data.get("rules", ()), "rules"),
        horizons=_list(data.get("horizons", ()), "horizons"),
        protocol=_protocol(data),
        mixed=_mixed(data),
        dtype=data.get("dtype", "float32"),
        device=data.get("device", "cpu"),
        nash_gap=data.get("nash_gap", "exact"),
        reference=data.get("reference"),
        bootstrap_reps=data.get("bootstrap_reps", 2000),
        smoothing=data.get("smoothing", 10),
        max_game_steps=data.get("max_game_steps", 10_000_000),
    )


def load_config(path: str | Path) -> BenchConfig:
    """Read a benchmark from a ``.toml`` or ``.yaml``/``.yml`` file (a syntax error is a ``ValueError`` naming the
    file)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"benchmark config {path} does not exist (give a .toml or .yaml file)")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            toml: Any = importlib.import_module("tomllib")
        except ImportError:  # Python 3.10
            try:
                toml = importlib.import_module("tomli")
            except ImportError:
                raise ImportError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
        try:
            data = toml.loads(text)
        except toml.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({_one_line(err)})") from None
        return config_from_dict(data)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML benchmark configs need PyYAML: pip install pyyaml (or write TOML)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({_one_line(err)})") from None
        return config_from_dict(data)
    raise ValueError(f"benchmark config must be .toml, .yaml or .yml, got {path.name}")
