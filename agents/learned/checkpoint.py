"""Saving and loading learned rules, the shipped pretrained weights, and the registry's factories."""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agents.learned.family import FAMILIES
from agents.learned.policy import LearnedAgent
from agents.learned.portfolio import PortfolioConfig, PortfolioRule
from agents.learned.rules import LSTMRule, LSTMRuleConfig, MLPRule, MLPRuleConfig, Rule, StepRule, StepRuleConfig
from mtg_env._io import write_atomic

#: A rule a learned-rule file holds: one that plays (:data:`~agents.learned.rules.Rule`) or a portfolio of them.
AnyRule = Rule | PortfolioRule

#: Marks a file written by :func:`save_rule`. /2: the MLP rule without the heads' direction offset, with scalar head
#: parameters and the brake on the trunk's moves (env v4); /1 files cannot play it.
RULE_FORMAT = "mtg_env.learned_rule/2"

#: The learned agents by registry name: (rule class, its config class, the action mode it plays).
LEARNED: dict[str, tuple[type[nn.Module], type, str]] = {
    "learned_mlp": (MLPRule, MLPRuleConfig, "update"),
    "learned_lstm": (LSTMRule, LSTMRuleConfig, "update"),
    "learned_step": (StepRule, StepRuleConfig, "step_size"),
    # Assembled, not meta-trained: the specialists and a selector fitted by scripts/fit_portfolio.py.
    "learned_portfolio": (PortfolioRule, PortfolioConfig, "update"),
}

#: Where the shipped weights live (package data).
WEIGHTS_DIR = Path(__file__).parent / "weights"


def new_rule(name: str, **config: Any) -> AnyRule:
    """A fresh (untrained) rule of the learned agent ``name`` with the given config fields."""
    if name not in LEARNED:
        raise ValueError(f"unknown learned agent {name!r}; available: {sorted(LEARNED)}")
    rule_cls, config_cls, _ = LEARNED[name]
    if "decays" in config:
        config["decays"] = tuple(config["decays"])
    rule = rule_cls(config_cls(**config))
    assert isinstance(rule, (MLPRule, LSTMRule, StepRule, PortfolioRule))
    return rule


def with_options(name: str, rule: AnyRule, **options: Any) -> Rule:
    """A copy of the trained ``rule`` (of the learned agent ``name``) with config fields ``options`` changed: its
    trained parameters kept, the parameters the options add at their untrained values (a new output row of a layer
    zero, as every output layer starts; a new step at its ``init_`` value), so only what the options add plays
    differently. ``rule`` is not changed.

    Raises:
        ValueError: if an option removes or reshapes a trained parameter other than by adding output rows (that
            would drop what was trained), naming it.
    """
    if isinstance(rule, PortfolioRule):
        raise TypeError(
            "with_options changes one rule's config, not a portfolio's: give it one expert, "
            "with_options(rule.config.experts[k][0], rule.expert(k), ...)"
        )
    new = new_rule(name, **{**asdict(getattr(rule, "config")), **options})  # noqa: B009 - every rule has a config
    assert not isinstance(new, PortfolioRule)
    trained, fresh = rule.state_dict(), new.state_dict()
    lost = sorted(set(trained) - set(fresh))
    if lost:
        raise ValueError(f"options {sorted(options)} remove the trained parameters {lost}; pick options that add")
    for key, value in trained.items():
        target = fresh[key]
        if target.shape == value.shape:
            fresh[key] = value.clone()
        elif target.shape[1:] == value.shape[1:] and target.shape[0] > value.shape[0]:
            fresh[key] = torch.cat([value, torch.zeros_like(target[value.shape[0] :])])  # new output rows: zero
        else:
            raise ValueError(
                f"options {sorted(options)} reshape the trained parameter {key!r} from {tuple(value.shape)} to "
                f"{tuple(target.shape)}; only new output rows can be added"
            )
    new.load_state_dict(fresh)
    return new.to(next(rule.parameters()).device)


def save_rule(path: str | Path, name: str, rule: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a rule's weights and config (and ``meta``: how it was trained, ``meta["config"]["suite"]`` the suite
    it was trained on) to ``path``, atomically.

    Raises:
        ValueError: if a weight is NaN or infinite (nothing is written).
    """
    path = Path(path)
    config = getattr(rule, "config")  # noqa: B009 - every rule has a dataclass config
    state = {k: v.detach().cpu().clone() for k, v in rule.state_dict().items()}
    bad = non_finite(state)
    if bad:
        raise ValueError(f"refusing to write {path}: the rule's tensors {bad} hold NaN or infinite values")
    payload = {"format": RULE_FORMAT, "agent": name, "config": asdict(config), "state_dict": state,
               "meta": dict(meta or {})}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, torch_bytes(payload))
    return path


def torch_bytes(payload: Any) -> bytes:
    """``payload`` as the bytes :func:`torch.save` writes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def read_torch_file(path: Path, what: str, map_location: str | torch.device = "cpu") -> tuple[Any, str]:
    """``(object, sha256 of the bytes)`` of a file written by :func:`torch.save`, read with ``weights_only=True``:
    tensors and plain values only, so a crafted file cannot run code while it loads.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: naming ``path`` and the reason, for anything else that keeps it from being read (empty,
            truncated, not written by torch, holding other objects, unreadable).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {what} {path}: {err.strerror or err}") from None
    if not data:
        raise ValueError(f"{path} is empty, not a {what}")
    if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip archive, or its legacy pickle format
        raise ValueError(f"{path} is not a {what}: torch.save did not write it (it starts with {data[:8]!r})")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():
            reason = "it holds objects other than tensors and plain values (refused unread: they could run code)"
        else:
            reason = f"torch cannot read it, it may be corrupted ({_first_line(err)})"
        raise ValueError(f"{path} is not a {what}: {reason}") from None
    except Exception as err:  # a truncated archive (RuntimeError), a broken pickle (EOFError, KeyError, ...)
        raise ValueError(
            f"{path} is not a {what}: torch cannot read it, it may be truncated or corrupted "
            f"({type(err).__name__}: {_first_line(err)})"
        ) from None
    return payload, hashlib.sha256(data).hexdigest()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


def non_finite(tensors: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors of ``tensors`` that hold NaN or ±inf."""
    return [k for k, v in tensors.items() if isinstance(v, Tensor) and v.is_floating_point() and not v.isfinite().all()]


def check_state_dict(path: Path, state: Any, expected: Mapping[str, Tensor], what: str = "the rule") -> None:
    """Refuse (``ValueError`` naming ``path`` and the tensor) a state dict that is not ``expected``'s: other keys, a
    tensor of another shape or kind, or NaN/inf values."""
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: {what}'s weights are not a dict of tensors")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: {what}'s weights do not fit the rule (missing {missing}, unexpected {unexpected})")
    for key, want in expected.items():
        got = state[key]
        if got.shape != want.shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(got.shape)}, the rule's is {tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point():
            raise ValueError(f"{path}: tensor {key!r} has dtype {got.dtype}, the rule's is {want.dtype}")
    bad = non_finite(state)
    if bad:
        raise ValueError(f"{path}: {what}'s tensors {bad} hold NaN or infinite values")


def load_rule(path: str | Path, device: str | torch.device = "cpu") -> tuple[str, AnyRule, dict[str, Any]]:
    """``(agent name, rule, meta)`` from a file written by :func:`save_rule`.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: naming ``path`` and the reason, if it cannot be read or is not a sound learned-rule file
            (another format, a config the rule refuses, tensors of other names or shapes, NaN or infinite weights).
    """
    name, rule, meta, _ = read_rule(Path(path), device)
    return name, rule, meta


def read_rule(path: Path, device: str | torch.device = "cpu") -> tuple[str, AnyRule, dict[str, Any], str]:
    """:func:`load_rule`, and the sha256 of the file's bytes (those the rule was read from)."""
    payload, sha256 = read_torch_file(path, "learned-rule file")
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("mtg_env.learned_rule/"):
        hint = ""
        if isinstance(payload, dict) and str(payload.get("format", "")).startswith("mtg_env.meta_train/"):
            hint = " (it is a meta-training checkpoint, last.pt: play the best.pt beside it)"
        raise ValueError(f"{path} is not a learned-rule file (format {RULE_FORMAT!r}){hint}")
    if payload["format"] != RULE_FORMAT:
        raise ValueError(
            f"{path} is a learned-rule file of format {payload['format']!r}, written by an earlier mtg_env; this "
            f"version reads {RULE_FORMAT!r} (the rules changed): meta-train it again with `mtg-env meta-train`"
        )
    missing = [k for k in ("agent", "config", "state_dict", "meta") if k not in payload]
    if missing:
        raise ValueError(f"{path} is a damaged learned-rule file: it lacks {missing}")
    name, config, meta = payload["agent"], payload["config"], payload["meta"]
    if name not in LEARNED:
        raise ValueError(f"{path} holds a rule of unknown agent {name!r}; known: {sorted(LEARNED)}")
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise ValueError(f"{path} is a damaged learned-rule file: its config and meta must be dicts")
    try:
        rule = new_rule(name, **config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the rule's config is not one {name} accepts ({err})") from None
    check_state_dict(path, payload["state_dict"], rule.state_dict())
    rule.load_state_dict(payload["state_dict"])
    rule.to(device)
    return name, rule, meta, sha256


def trained_suite(meta: Mapping[str, Any]) -> str | None:
    """The suite a rule file's ``meta`` says it was meta-trained on (``meta["config"]["suite"]``, as
    :func:`~agents.learned.train.meta_train` writes it), or ``None`` when it does not say."""
    config = meta.get("config")
    suite = config.get("suite") if isinstance(config, Mapping) else None
    return suite if isinstance(suite, str) else None


def pretrained_path(name: str, suite: str) -> Path:
    """The shipped weights of learned agent ``name`` meta-trained on ``suite`` (``suite`` = :data:`GENERAL`: the
    generalist's)."""
    return WEIGHTS_DIR / f"{name}_{suite}.pt"


#: The tag of a generalist's shipped weights (``{agent}_general.pt``): meta-trained on a mixture of every family, sizes,
#: horizons and consensus rules (``scripts/train_weights.py``), the agent's weights on any suite without its own.
GENERAL = "general"


def shipped() -> list[tuple[str, str]]:
    """``(agent, suite)`` pairs with shipped weights."""
    pairs = []
    for p in sorted(WEIGHTS_DIR.glob("*.pt")):
        for name in LEARNED:
            if p.stem.startswith(name + "_"):
                pairs.append((name, p.stem[len(name) + 1 :]))
    return pairs


def learned_agent(
    name: str, suite: str | None = None, weights: str | Path | None = None, allow_other_suite: bool = False
) -> LearnedAgent:
    """A :class:`LearnedAgent` of registry ``name`` with the shipped weights for ``suite``, or ``weights``.

    Args:
        name: The learned agent (``learned_mlp``, ``learned_lstm``, ``learned_step``).
        suite: The suite it will play: picks the shipped weights when ``weights`` is ``None`` (the suite's own, or
            where there are none the agent's generalist, ``{name}_general.pt``, meta-trained on a mixture of
            suites), and is checked against the suite the weights file says it was meta-trained on (a mixture's
            file names no single suite and plays any).
        weights: A rule file (e.g. ``DIR/best.pt`` of ``mtg-env meta-train``).
        allow_other_suite: Play weights meta-trained on another suite than ``suite`` (refused otherwise).

    Raises:
        FileNotFoundError: if there is no file at ``weights``.
        ValueError: for an unknown name, no shipped weights for the suite (the message lists them), a weights
            file that cannot be read or is not sound (see :func:`load_rule`), a rule of another agent, or weights
            trained on another suite without ``allow_other_suite``.
    """
    if name not in LEARNED:
        raise ValueError(f"unknown learned agent {name!r}; available: {sorted(LEARNED)}")
    if weights is None:
        if suite is None:
            raise ValueError(f"{name} needs suite=... (to pick its shipped weights) or weights=PATH")
        weights = pretrained_path(name, suite)
        if not weights.is_file() and pretrained_path(name, GENERAL).is_file():
            weights = pretrained_path(name, GENERAL)  # no specialist for this suite: the generalist plays
        if not weights.is_file():
            have = [s for n, s in shipped() if n == name]
            if name == "learned_portfolio":
                how = "fit one with scripts/fit_portfolio.py and pass weights=PATH (--weights)"
            elif suite in FAMILIES:
                how = (
                    f"meta-train some with `mtg-env meta-train --agent {name} --suite {suite} --out DIR` and pass "
                    "weights=DIR/best.pt (--weights)"
                )
            else:
                how = (
                    f"meta-training has game families for {list(FAMILIES)} only: to play a rule trained on one of "
                    "them here, pass weights=PATH and allow_other_suite=True (--weights PATH --allow-other-suite)"
                )
            raise ValueError(f"no shipped weights of {name} for suite {suite!r} (shipped for {have}); {how}")
    loaded, rule, meta, sha256 = read_rule(Path(weights))
    if loaded != name:
        raise ValueError(f"{weights} holds a {loaded} rule, not {name}")
    trained = trained_suite(meta)
    if suite is not None and trained is not None and trained != suite and not allow_other_suite:
        raise ValueError(
            f"{weights} was meta-trained on suite {trained!r}, not {suite!r}: it may play badly there; pass "
            "allow_other_suite=True (--allow-other-suite) to play it anyway"
        )
    return LearnedAgent(rule, name=name, weights=weights, sha256=sha256)
