"""Saving and loading learned rules, the shipped pretrained weights, and the registry's factories."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents.learned.policy import LearnedAgent
from agents.learned.rules import LSTMRule, LSTMRuleConfig, MLPRule, MLPRuleConfig, Rule, StepRule, StepRuleConfig

#: Marks a file written by :func:`save_rule`. /2: the MLP rule without the heads' direction offset, with scalar head
#: parameters and the brake on the trunk's moves (env v4); /1 files cannot play it.
RULE_FORMAT = "mtg_env.learned_rule/2"

#: The learned agents by registry name: (rule class, its config class, the action mode it plays).
LEARNED: dict[str, tuple[type[nn.Module], type, str]] = {
    "learned_mlp": (MLPRule, MLPRuleConfig, "update"),
    "learned_lstm": (LSTMRule, LSTMRuleConfig, "update"),
    "learned_step": (StepRule, StepRuleConfig, "step_size"),
}

#: Where the shipped weights live (package data).
WEIGHTS_DIR = Path(__file__).parent / "weights"


def new_rule(name: str, **config: Any) -> Rule:
    """A fresh (untrained) rule of the learned agent ``name`` with the given config fields."""
    if name not in LEARNED:
        raise ValueError(f"unknown learned agent {name!r}; available: {sorted(LEARNED)}")
    rule_cls, config_cls, _ = LEARNED[name]
    if "decays" in config:
        config["decays"] = tuple(config["decays"])
    rule = rule_cls(config_cls(**config))
    assert isinstance(rule, (MLPRule, LSTMRule, StepRule))
    return rule


def save_rule(path: str | Path, name: str, rule: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a rule's weights and config (and ``meta``: how it was trained) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = getattr(rule, "config")  # noqa: B009 - every rule has a dataclass config
    payload = {
        "format": RULE_FORMAT,
        "agent": name,
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in rule.state_dict().items()},
        "meta": dict(meta or {}),
    }
    torch.save(payload, path)
    return path


def load_rule(path: str | Path, device: str | torch.device = "cpu") -> tuple[str, Rule, dict[str, Any]]:
    """``(agent name, rule, meta)`` from a file written by :func:`save_rule`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no learned-rule file at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("mtg_env.learned_rule/"):
        raise ValueError(f"{path} is not a learned-rule file (format {RULE_FORMAT!r})")
    if payload["format"] != RULE_FORMAT:
        raise ValueError(
            f"{path} is a learned-rule file of format {payload['format']!r}, written by an earlier mtg_env; this "
            f"version reads {RULE_FORMAT!r} (the rules changed): meta-train it again with `mtg-env meta-train`"
        )
    name = payload["agent"]
    rule = new_rule(name, **payload["config"])
    rule.load_state_dict(payload["state_dict"])
    rule.to(device)
    return name, rule, payload["meta"]


def pretrained_path(name: str, suite: str) -> Path:
    """The shipped weights of learned agent ``name`` meta-trained on ``suite``."""
    return WEIGHTS_DIR / f"{name}_{suite}.pt"


def shipped() -> list[tuple[str, str]]:
    """``(agent, suite)`` pairs with shipped weights."""
    pairs = []
    for p in sorted(WEIGHTS_DIR.glob("*.pt")):
        for name in LEARNED:
            if p.stem.startswith(name + "_"):
                pairs.append((name, p.stem[len(name) + 1 :]))
    return pairs


def learned_agent(name: str, suite: str | None = None, weights: str | Path | None = None) -> LearnedAgent:
    """A :class:`LearnedAgent` of registry ``name`` with the shipped weights for ``suite``, or ``weights``.

    Raises:
        ValueError: for an unknown name, or no shipped weights for the suite (the message lists them).
    """
    if name not in LEARNED:
        raise ValueError(f"unknown learned agent {name!r}; available: {sorted(LEARNED)}")
    if weights is None:
        if suite is None:
            raise ValueError(f"{name} needs suite=... (to pick its shipped weights) or weights=PATH")
        weights = pretrained_path(name, suite)
        if not weights.is_file():
            have = [s for n, s in shipped() if n == name]
            raise ValueError(
                f"no shipped weights of {name} for suite {suite!r} (shipped for {have}); meta-train some with "
                f"`mtg-env meta-train --agent {name} --suite {suite} --out DIR` and pass weights=DIR/best.pt"
            )
    loaded, rule, _ = load_rule(weights)
    if loaded != name:
        raise ValueError(f"{weights} holds a {loaded} rule, not {name}")
    return LearnedAgent(rule, name=name, weights=weights)
