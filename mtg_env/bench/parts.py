"""The parts of a benchmark, as plain frozen data: a policy (a baseline by name or a factory by import path), a suite
with its options, and the mixed populations. Their file form is described in :mod:`mtg_env.bench.spec`."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import asdict, dataclass
from typing import Any

from mtg_env._args import bool_arg, real_arg
from mtg_env.bench._values import _names, _one_line, _pairs, _shown, _thaw
from mtg_env.tuning import Baseline, PolicyFactory, Selfish

#: The label of the built-in selfish deviator in ``[mixed] deviators``.
SELFISH = "selfish"

#: A policy's part in the scoring (see :mod:`mtg_env.bench.spec`).
ROLES = ("yardstick", "entrant")

#: Options a workload sets itself; a suite's ``options`` must not override them.
_WORKLOAD_KEYS = {"suite": "suites", "consensus": "rules", "max_cycles": "horizons", "action_mode": "the bench",
                  "max_update": "the bench", "dtype": "dtype", "device": "device"}  # fmt: skip


@dataclass(frozen=True)
class PolicySpec:
    """A policy entered in the benchmark, as plain data (it crosses process and Ray boundaries)."""

    name: str
    """Its label on the leaderboard."""
    baseline: str | None = None
    """A baseline by name (:data:`agents.AGENTS`)."""
    factory: str | None = None
    """Or an import path ``package.module:callable``; the callable is called as ``f(lr, **kwargs)`` and returns a
    fresh :class:`agents.Policy` (a learned agent loads its checkpoint there)."""
    kwargs: tuple[tuple[str, Any], ...] = ()
    """The player's other arguments (frozen ``(name, value)`` pairs)."""
    is_baseline: bool = True
    """Whether it is a yardstick (``role = "yardstick"``): it sets targets (steps-to-target) and the normalisation
    of scores. The field keeps its old name so that the match keys of existing results files stay valid."""
    selfish_scale: float | None = None
    """Wrap the policy as the selfish deviator with this trunk scale (built for ``[mixed]``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a policy's name must be a non-empty string, got {self.name!r}")
        for key in ("baseline", "factory"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"policy {self.name!r}: {key} must be a non-empty string, got {_shown(value)}")
        if (self.baseline is None) == (self.factory is None):
            raise ValueError(f"policy {self.name!r} needs exactly one of 'baseline' (a name) or 'factory' (a path)")
        if self.factory is not None and not re.fullmatch(r"[\w.]+:\w+", self.factory):
            raise ValueError(f"policy {self.name!r}: factory must be 'package.module:callable', got {self.factory!r}")
        _pairs(self.kwargs, f"policy {self.name!r}: kwargs")
        bool_arg(f"policy {self.name!r}: is_baseline", self.is_baseline)
        if self.selfish_scale is not None:
            real_arg(f"policy {self.name!r}: selfish_scale", self.selfish_scale, 0.0, low_open=True)

    @property
    def role(self) -> str:
        """``"yardstick"`` or ``"entrant"`` (see :mod:`mtg_env.bench.spec`)."""
        return ROLES[0] if self.is_baseline else ROLES[1]

    def build(self) -> PolicyFactory:
        """The ``lr -> Policy`` factory (baselines with their batched form)."""
        kwargs = {k: _thaw(v) for k, v in self.kwargs}
        inner: PolicyFactory
        if self.baseline is not None:
            inner = Baseline(self.baseline, **kwargs)
        else:
            assert self.factory is not None
            try:
                target = _import(self.factory)
            except ValueError as err:
                raise ValueError(f"policy {self.name!r}: {err}") from None
            inner = _ImportedFactory(self.factory, target, kwargs)
        return inner if self.selfish_scale is None else Selfish(inner, self.selfish_scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import(path: str) -> Any:
    """The callable at ``package.module:callable``, or a one-line ``ValueError``."""
    module, _, attr = path.partition(":")
    try:  # any error while the module runs is the user's import failing, reported in one line
        target = getattr(importlib.import_module(module), attr)
    except Exception as err:
        raise ValueError(f"cannot import {path!r} ({type(err).__name__}: {_one_line(err)})") from None
    if not callable(target):
        raise ValueError(f"{path!r} is a {type(target).__name__}, not a callable lr -> Policy")
    return target


def _bind(target: Any, label: str, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> None:
    """Refuse ``kwargs`` that ``target(*args, **kwargs)`` could not take, naming ``where`` and the signature."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        params = ", ".join(signature.parameters)
        raise TypeError(f"{where}: {label}({params}) does not take these arguments ({err})") from None


class _ImportedFactory:
    def __init__(self, path: str, target: Any, kwargs: dict[str, Any]):
        self.path, self.target, self.kwargs = path, target, kwargs

    def __call__(self, lr: float) -> Any:
        return self.target(lr, **self.kwargs)

    def __repr__(self) -> str:
        return f"{self.path}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


@dataclass(frozen=True)
class SuiteSpec:
    """A suite with its options."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a suite's name must be a non-empty string, got {_shown(self.name)}")
        _pairs(self.options, f"suite {self.name!r}: options")
        for key, _ in self.options:
            if key in _WORKLOAD_KEYS:
                raise ValueError(
                    f"suite {self.name!r}: options sets {key!r}, which the benchmark sets (from {_WORKLOAD_KEYS[key]})"
                )


@dataclass(frozen=True)
class MixedSpec:
    """The mixed populations: each deviator plays task m while the others play the reference, for every m."""

    reference: str
    """A policy name of the benchmark."""
    deviators: tuple[str, ...] = (SELFISH,)
    """Policy names, and/or ``"selfish"`` (the reference with its trunk proposal scaled by ``selfish_scale``)."""
    selfish_scale: float = 4.0
    rules: tuple[str, ...] = ()
    """The rules to play them under (default: all the benchmark's)."""
    reference_lr: tuple[str, ...] = ()
    """Deviators (policy names among ``deviators``) played at the reference's tuned step size, as ``"selfish"`` is,
    instead of their own: a deviator that rescales the reference's own moves (e.g. the learned deviator of
    :mod:`agents.learned.deviator`) then differs from the reference by its manipulation alone."""

    def __post_init__(self) -> None:
        if not isinstance(self.reference, str):
            raise TypeError(f"[mixed] reference must be a policy name, got {_shown(self.reference)}")
        _names(self.deviators, "[mixed] deviators")
        _names(self.rules, "[mixed] rules")
        _names(self.reference_lr, "[mixed] reference_lr")
        for i, d in enumerate(self.reference_lr):
            if d not in self.deviators or d == SELFISH:
                raise ValueError(f"[mixed] reference_lr[{i}]: {d!r} is not a deviator of [mixed] deviators "
                                 f"{list(self.deviators)} other than {SELFISH!r} (which plays at it)")  # fmt: skip
        real_arg("[mixed] selfish_scale", self.selfish_scale, 0.0, low_open=True)


def _check_policy(p: PolicySpec, i: int) -> None:
    """Import ``p``'s factory and bind its ``kwargs`` to the signature (a baseline's also by value)."""
    where = f"policies[{i}]"
    kwargs = {k: _thaw(v) for k, v in p.kwargs}
    if p.baseline is not None:
        from agents.runner import AGENTS

        if p.baseline not in AGENTS:
            raise ValueError(f"{where}.baseline: unknown baseline {p.baseline!r}; available: {sorted(AGENTS)}")
        own = {k: v for k, v in kwargs.items() if k != "trunk_ratio"}  # Baseline's own argument, not the player's
        _bind(AGENTS[p.baseline], p.baseline, (), {"lr": 1e-3, **own}, f"{where}.kwargs (policy {p.name!r})")
        try:  # the values: Baseline builds one player now
            Baseline(p.baseline, **kwargs)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where}.kwargs (policy {p.name!r}): {_one_line(err)}") from None
    else:
        assert p.factory is not None
        try:
            target = _import(p.factory)
        except ValueError as err:
            raise ValueError(f"{where}.factory (policy {p.name!r}): {err}") from None
        _bind(target, p.factory, (1e-3,), kwargs, f"{where}.kwargs (policy {p.name!r})")
