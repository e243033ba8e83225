"""Distributions of games to meta-train and evaluate learned agents on: one family per suite, and a shifted one.

Each draw is a dict of suite options (:func:`mtg_env.suites.make_suite` keyword arguments), decided by a
numpy ``Generator`` the caller seeds (no global randomness). The *shifted* family moves every draw out of
the training range: 3× the dimensions, 10× the conditioning, twice the tasks (quadratic, regression), wider
trunks (digits).

:func:`draw_games` draws games from hashed streams, one per purpose (``tuning``, ``validation``, the sealed ``test``):
SHA-256 of (the stream's domain, a 128-bit key, the suite, the family, the index), with game seeds in a range of the
stream's own, so no meta-training, trunk-search or tuning run can draw a sealed test game (``tests/test_sealed.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtg_env.suites import IMPORT_PATH, TaskSuite, call_suite_factory, make_suite
from mtg_env.suites.floors import Floor, exact_floor, true_floor

#: Suites with a game family.
FAMILIES: tuple[str, ...] = ("quadratic", "regression", "digits")


@dataclass(frozen=True)
class Family:
    """A distribution of games meta-training can draw from: how one game's suite options are drawn, and the suite
    that builds them.

    The built-in families are :data:`FAMILIES`; a user's own (a :class:`~mtg_env.suites.ModuleSuite` of their model
    over drawn widths, data seeds, …) is a ``Family`` put in a module and named by import path,
    ``"package.module:FAMILY"``, in :attr:`MetaTrainConfig.suite <agents.learned.meta_config.MetaTrainConfig.suite>`
    (a path resolves in every process, Ray Tune's workers included), or registered under a name with
    :func:`register_family` (that process only)."""

    name: str
    """What the family is called in logs and a rule file's meta."""
    sample: Callable[[np.random.Generator, bool], dict[str, Any]]
    """``sample(rng, shifted)``: one game's suite options, every random choice from ``rng``; ``shifted`` asks for
    the family's out-of-distribution variant (a family without one may ignore it)."""
    suite: str | Callable[..., TaskSuite]
    """What builds a game from its options: a suite name of :data:`mtg_env.suites.SUITES`, an import path
    ``"package.module:factory"``, or a callable ``factory(**options)`` (given ``device`` and ``dtype`` where it
    takes them) returning a :class:`~mtg_env.suites.TaskSuite`."""
    dtype: str = "float32"
    """The precision its games play in when a run's ``dtype`` is ``"auto"``."""
    loss_lower_bound: float | None = None
    """A lower bound of Σ_m ℓ_m for every game of the family (e.g. 0 for MSE and cross-entropy losses), which
    meta-training with ``floor="true"`` measures from where the suite knows neither an exact floor nor
    ``loss_lower_bounds`` (a :class:`~mtg_env.suites.ModuleSuite` knows neither)."""

    def build(self, options: dict[str, Any], device: str | torch.device = "cpu", dtype: str = "float32") -> TaskSuite:
        """The suite of one drawn game."""
        if isinstance(self.suite, str):
            return make_suite(self.suite, device=device, dtype=dtype, **options)
        built = call_suite_factory(self.suite, f"{self.name}.suite", device, dtype, options)
        return make_suite(built, device=device, dtype=dtype)  # the factory's device and dtype are the asked ones


def _sample_quadratic(rng: np.random.Generator, shifted: bool) -> dict[str, Any]:
    seed = int(rng.integers(0, 2**31))
    tasks, head, trunk = int(rng.integers(2, 5)), int(rng.integers(1, 4)), int(rng.integers(5, 16))
    condition = float(math.exp(rng.uniform(math.log(10.0), math.log(300.0))))
    if shifted:
        tasks, head, trunk, condition = 2 * tasks, 3 * head, 3 * trunk, 10 * condition
    return {"num_tasks": tasks, "head_dim": head, "trunk_dim": trunk, "condition": condition, "game_seed": seed}


def _sample_regression(rng: np.random.Generator, shifted: bool) -> dict[str, Any]:
    seed = int(rng.integers(0, 2**31))
    tasks, inputs, width = int(rng.integers(2, 5)), int(rng.integers(4, 13)), int(rng.integers(2, 7))
    kind = "mlp" if rng.uniform() < 0.5 else "linear"
    relatedness = float(rng.uniform(0.0, 1.0))
    if shifted:
        tasks, inputs, width = 2 * tasks, 3 * inputs, 3 * width
    return {
        "num_tasks": tasks,
        "input_dim": inputs,
        "trunk_width": width,
        "trunk": kind,
        "hidden": 16,
        "relatedness": relatedness,
        "data_seed": seed,
    }


def _sample_digits(rng: np.random.Generator, shifted: bool) -> dict[str, Any]:
    seed = int(rng.integers(0, 2**31))
    widths = [(16,), (32,), (32, 16)]
    hidden = (128, 64) if shifted else widths[int(rng.integers(0, len(widths)))]
    return {"hidden": hidden, "batch_size": 64, "split_seed": seed % 1000}


#: The built-in families by name (the sealed protocol's and the shipped weights').
_BUILTIN: dict[str, Family] = {
    "quadratic": Family("quadratic", _sample_quadratic, "quadratic", dtype="float64"),
    "regression": Family("regression", _sample_regression, "regression"),
    "digits": Family("digits", _sample_digits, "digits"),
}
_REGISTERED: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make ``family`` drawable by its name in this process (a name of a built-in family, or one taken, is refused:
    no family is silently replaced). Returns it. Across processes (Ray Tune's workers) name it by import path."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family takes a Family, got {type(family).__name__}")
    if not family.name or ":" in family.name or "," in family.name:
        raise ValueError(f"a family's name must be non-empty, without ':' or ',', got {family.name!r}")
    if family.name in _BUILTIN or family.name in _REGISTERED:
        raise ValueError(f"a family named {family.name!r} exists already; pick another name")
    _REGISTERED[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Forget a family :func:`register_family` added (a built-in one is refused)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in family and cannot be removed")
    _REGISTERED.pop(name, None)


def get_family(name: str) -> Family:
    """The family called ``name``: built-in, registered, or ``"package.module:ATTR"`` (a :class:`Family` object).

    Raises:
        ValueError: naming ``name``, the families there are and how to add one."""
    if isinstance(name, str) and name in _BUILTIN:
        return _BUILTIN[name]
    if isinstance(name, str) and name in _REGISTERED:
        return _REGISTERED[name]
    if isinstance(name, str) and IMPORT_PATH.fullmatch(name):
        import importlib

        module, _, attr = name.partition(":")
        try:  # any error while the user's module runs is its import failing, reported in one line
            found = getattr(importlib.import_module(module), attr)
        except Exception as err:
            raise ValueError(f"cannot import game family {name!r} ({type(err).__name__}: {err})") from None
        if not isinstance(found, Family):
            raise ValueError(f"{name!r} is a {type(found).__name__}, not an agents.learned.family.Family")
        return found
    raise ValueError(
        f"no game family {name!r}; available: {sorted(_BUILTIN) + sorted(_REGISTERED)}, or an import path "
        "'package.module:FAMILY' to an agents.learned.family.Family (e.g. one drawing ModuleSuites of your model)"
    )


def sample_config(suite: str, rng: np.random.Generator, shifted: bool = False) -> dict[str, Any]:
    """Suite options of one game of ``suite``'s family (or of its shifted family); ``suite`` names a family
    (:func:`get_family`). The built-in ones:

    * quadratic: 2–4 tasks, heads of 1–3, trunk of 5–15, condition log-uniform in [10, 300];
      shifted: 3× trunk and heads, 10× condition, 2× tasks.
    * regression: 2–4 tasks, inputs of 4–12, relatedness uniform in [0, 1], a linear or MLP trunk of width 2–6;
      shifted: 2× tasks, 3× inputs and width.
    * digits: trunk widths (16,), (32,) or (32, 16), batches of 64; shifted: the default trunk (128, 64).
    """
    return get_family(suite).sample(rng, shifted)


def build_suite(
    suite: str, config: dict[str, Any], device: str | torch.device = "cpu", dtype: str = "float32"
) -> TaskSuite:
    """The suite of one drawn game of family ``suite``."""
    return get_family(suite).build(config, device=device, dtype=dtype)


#: What meta-training measures the per-step ratio (L_t − L*) / (L_0 − L*) from (:attr:`MetaTrainConfig.floor
#: <agents.learned.meta_config.MetaTrainConfig.floor>`): ``true``, the suite's L* on the whole training objective
#: (:func:`true_loss_floor`); ``best``, the sealed protocol's L* (:func:`mtg_env.suites.floors.true_floor`: exact
#: where a solve gives it, else the best of full-batch Adam runs, seconds per drawn game, kept per game in the
#: process: :func:`best_loss_floor`); ``legacy``, :func:`loss_floor` on the step's batch (the shipped weights' runs).
FLOORS: tuple[str, ...] = ("true", "best", "legacy")

_BEST_FLOORS: dict[str, Floor] = {}


def best_loss_floor(family: str, options: dict[str, Any], suite: TaskSuite) -> Floor:
    """The L* the sealed protocol scores ``suite`` (a draw of ``family`` with ``options``) from: exact where known,
    else its best run (:func:`mtg_env.suites.floors.true_floor`), computed once per drawn game in this process; a
    suite that has no best run (a user's family) falls back to :func:`true_loss_floor`."""
    import json

    key = json.dumps([family, options, str(suite.dtype)], sort_keys=True, default=str)
    if key not in _BEST_FLOORS:
        try:
            with torch.enable_grad():  # a best run differentiates; validation asks from under no_grad
                _BEST_FLOORS[key] = true_floor(suite)
        except (NotImplementedError, AttributeError, TypeError):
            _BEST_FLOORS[key] = true_loss_floor(suite, get_family(family).loss_lower_bound)
    return _BEST_FLOORS[key]


def true_loss_floor(suite: TaskSuite, lower_bound: float | None = None) -> Floor:
    """The L* meta-training with ``floor="true"`` measures from: the exact minimum of the whole training objective
    where it is known without training (:func:`mtg_env.suites.floors.exact_floor`: the quadratic game's closed form,
    a linear-trunk regression's least squares, or ALS under a bottleneck; milliseconds per drawn game), else the
    suite's own lower bound Σ_m b_m (kind ``lower bound``: 0 for regression's MLP trunk and digits, whose
    :func:`~mtg_env.suites.floors.true_floor` is a best run of about 1 s and 3–4 s per drawn game, more than a
    whole meta-iteration)."""
    exact = exact_floor(suite)
    if exact is not None:
        return exact
    bounds = suite.loss_lower_bounds
    if bounds is None:
        if lower_bound is not None:
            return Floor(float(lower_bound), "lower bound")
        raise ValueError(
            f"suite {suite.name!r} has neither an exact floor nor loss_lower_bounds; use floor='legacy', give "
            "the suite loss_lower_bounds, or give its Family a loss_lower_bound (0 for MSE or cross-entropy losses)"
        )
    return Floor(float(sum(bounds)), "lower bound")


def loss_floor(suite: TaskSuite) -> float:
    """The legacy floor (``floor="legacy"``): a lower bound of the total training loss Σ_m ℓ_m that the meta-loss of
    the shipped weights' runs and the old result tables measure from: the quadratic game's L_MT at its equilibrium
    (its minimum; the losses themselves can be negative), else 0 (losses are MSE or cross-entropy)."""
    if suite.name != "quadratic":
        return 0.0
    equilibrium = suite.equilibrium()
    assert equilibrium is not None  # the quadratic game has a closed-form one
    heads, trunk = equilibrium
    with torch.no_grad():
        total = float(suite.losses(heads.to(suite.dtype), trunk.to(suite.dtype)).sum())
    # Less a hair, so that round-off never puts a reached loss below the floor (its log stays finite).
    return total - 1e-9 * max(1.0, abs(total))


# ------------------------------------------------------------------------------------- hashed streams
#: Purposes of the hashed draw streams. A draw of stream s is SHA-256 of (its domain, a 128-bit key, the suite, the
#: family, its index), so one stream's draws can only be made by hashing its own domain: no training, validation,
#: trunk-search or tuning run of the package (each seeds numpy with a short list of small ints) can produce them.
STREAM_DOMAINS: dict[str, bytes] = {
    "tuning": b"mtg_env.family.tuning/v1",
    "validation": b"mtg_env.family.validation/v1",
    "test": b"mtg_env.family.sealed-test/v1",
}
#: Each hashed stream's game seeds lie in [base, base + 2**60): above every seed another part of the package uses
#: (meta-training < 2**40 + 2**39, tuning seeds 100,000.., held-out seeds 0..), and apart from each other.
SEED_BASES: dict[str, int] = {"tuning": 2**60, "validation": 2**61, "test": 2**62}
_SEED_SPAN = 2**60
#: The keys of the development streams (fixed: anyone re-draws the same tuning and validation games).
TUNING_KEY = "6d74672d66616d696c792d74756e696e"
VALIDATION_KEY = "6d74672d66616d696c792d76616c6964"
#: The sealed test stream's default key (a fresh one: ``mtg-env bench --test-key new``).
DEFAULT_TEST_KEY = "9f3c1d7a52e84b06a1c5e2f7d8b94e13"


def check_key(key: str) -> str:
    """``key`` as 32 lowercase hex digits (128 bits), or a ``ValueError`` that says how to write one."""
    text = key.strip().lower() if isinstance(key, str) else ""
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"a stream key is 32 hex digits (128 bits), e.g. {DEFAULT_TEST_KEY!r}, got {key!r}")
    return text


def new_test_key() -> str:
    """A fresh random 128-bit test key (from the OS's entropy, not from any seeded generator)."""
    import secrets

    return secrets.token_hex(16)


def _digest(stream: str, key: str, suite: str, shifted: bool, index: int, part: bytes) -> bytes:
    fields = [STREAM_DOMAINS[stream], bytes.fromhex(check_key(key)), suite.encode(),
              b"shifted" if shifted else b"family", index.to_bytes(8, "little"), part]  # fmt: skip
    # Length-prefixed fields: no two field lists hash the same message.
    message = b"".join(len(f).to_bytes(4, "little") + f for f in fields)
    return hashlib.sha256(message).digest()


def draw_games(
    suite: str, stream: str, count: int, seeds_per_game: int, key: str | None = None, shifted: bool = False
) -> list[tuple[dict[str, Any], list[int]]]:
    """``count`` games of ``suite``'s family from a hashed stream: per draw its suite options and
    ``seeds_per_game`` game seeds.

    Args:
        suite: A suite of :data:`FAMILIES`.
        stream: ``"tuning"`` (baselines' external tuning), ``"validation"`` (development) or ``"test"`` (the sealed
            draws a report is scored on).
        count: Draws.
        seeds_per_game: Game seeds per draw.
        key: 32 hex digits; default the stream's (:data:`DEFAULT_TEST_KEY` for ``test``).
        shifted: The shifted family.
    """
    if stream not in STREAM_DOMAINS:
        raise ValueError(f"stream must be one of {sorted(STREAM_DOMAINS)}, got {stream!r}")
    if key is None:
        key = {"tuning": TUNING_KEY, "validation": VALIDATION_KEY, "test": DEFAULT_TEST_KEY}[stream]
    out = []
    for index in range(count):
        digest = _digest(stream, key, suite, shifted, index, b"config")
        # 2**256 + digest: nine 32-bit words of entropy, the last 1; every other numpy stream of the package is seeded
        # with three or four words.
        rng = np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest, "little") + 2**256))
        config = sample_config(suite, rng, shifted=shifted)
        seeds = [
            SEED_BASES[stream]
            + int.from_bytes(_digest(stream, key, suite, shifted, index, b"seed%d" % j)[:8], "little") % _SEED_SPAN
            for j in range(seeds_per_game)
        ]
        out.append((config, seeds))
    return out
