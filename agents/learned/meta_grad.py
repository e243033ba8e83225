"""The meta-gradient estimators of a meta-training run (:mod:`agents.learned.train`), one meta-iteration each:
truncated backpropagation through the unrolled games (``tbptt``), antithetic evolution strategies over whole episodes
(``es``) and persistent ES over truncations (``pes``), with the guarded meta-step they share."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from agents.learned.meta_config import MetaTrainConfig, NonFiniteMetaUpdate
from agents.learned.meta_loss import (
    _STREAM_GAMES,
    _STREAM_NOISE,
    _draws,
    _game,
    _rng,
    _Unroll,
    _unroll,
    evaluate_rule,
)
from agents.learned.rules import Rule


def _flat(rule: Rule) -> Tensor:
    return torch.nn.utils.parameters_to_vector(list(rule.parameters())).detach()


def _perturbed(rule: Rule, theta: Tensor) -> Rule:
    clone: Rule = copy.deepcopy(rule)
    torch.nn.utils.vector_to_parameters(theta, list(clone.parameters()))
    return clone


def _tbptt_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    unrolls = []
    for options, seeds, family, consensus in _draws(config, iteration, _STREAM_GAMES, config.configs, config.games):
        game, floor, whole = _game(config, options, horizon, family, consensus)
        unrolls.append(_unroll(config, rule, game, seeds, floor, whole))
    losses = []
    done, skipped = 0, 0
    while done < horizon:
        steps = min(config.truncation, horizon - done)
        optimizer.zero_grad()
        loss = sum(u.advance(steps) for u in unrolls) / (steps * len(unrolls))
        assert isinstance(loss, Tensor)
        loss.backward()
        # A game that blew up within the truncation can leave NaN in the meta-gradient: skip that meta-step
        # rather than poison the rule (the clamped meta-loss still counts the blow-up), and count it.
        if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in rule.parameters()):
            torch.nn.utils.clip_grad_norm_(rule.parameters(), config.grad_clip)
            _meta_step(optimizer)
        else:
            skipped += 1
        for u in unrolls:
            u.detach()
        losses.append(float(loss.detach()))
        done += steps
    return float(np.mean(losses)), skipped


def _es_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    draws = _draws(config, iteration, _STREAM_GAMES, config.configs, config.games)
    theta = _flat(rule)
    noise = torch.as_tensor(
        _rng(config, _STREAM_NOISE, iteration).standard_normal((config.es_pairs, theta.numel())), dtype=theta.dtype
    ).to(theta.device)
    grad = torch.zeros_like(theta)
    values = []
    for eps in noise:
        pair = [evaluate_rule(_perturbed(rule, theta + sign * config.es_sigma * eps), config, draws, horizon)
                for sign in (1.0, -1.0)]  # fmt: skip
        grad += (pair[0] - pair[1]) * eps / (2.0 * config.es_sigma * config.es_pairs)
        values.extend(pair)
    applied = _apply(rule, optimizer, grad, config.grad_clip)
    return float(np.mean(values)), int(not applied)


def _pes_iteration(
    rule: Rule, optimizer: torch.optim.Optimizer, config: MetaTrainConfig, iteration: int
) -> tuple[float, int]:
    horizon = config.horizon(iteration)
    draws = _draws(config, iteration, _STREAM_GAMES, config.configs, config.games)
    theta = _flat(rule)
    pairs, dim = config.es_pairs, theta.numel()
    noise_rng = _rng(config, _STREAM_NOISE, iteration)
    particles: list[list[_Unroll]] = []
    clones: list[Rule] = []
    for _ in range(2 * pairs):
        clone = copy.deepcopy(rule)
        clones.append(clone)
        games = []
        for options, seeds, family, consensus in draws:
            game, floor, whole = _game(config, options, horizon, family, consensus)
            games.append(_unroll(config, clone, game, seeds, floor, whole))
        particles.append(games)
    accumulated = torch.zeros(2 * pairs, dim, dtype=theta.dtype, device=theta.device)
    values = []
    done, skipped = 0, 0
    with torch.no_grad():
        while done < horizon:
            steps = min(config.truncation, horizon - done)
            theta = _flat(rule)
            half = torch.as_tensor(noise_rng.standard_normal((pairs, dim)), dtype=theta.dtype).to(theta.device)
            eps = config.es_sigma * torch.cat([half, -half])  # antithetic: particle i + pairs is −particle i
            accumulated += eps
            losses = torch.empty(2 * pairs, dtype=theta.dtype, device=theta.device)
            for i, (clone, games) in enumerate(zip(clones, particles, strict=True)):
                torch.nn.utils.vector_to_parameters(theta + eps[i], list(clone.parameters()))
                losses[i] = sum(float(u.advance(steps)) for u in games) / (steps * len(games))
            grad = ((losses - losses.mean()).unsqueeze(1) * accumulated).sum(0) / (2 * pairs * config.es_sigma**2)
            skipped += int(not _apply(rule, optimizer, grad, config.grad_clip))
            values.append(float(losses.mean()))
            done += steps
    return float(np.mean(values)), skipped


def _apply(rule: Rule, optimizer: torch.optim.Optimizer, grad: Tensor, clip: float) -> bool:
    """One meta-step along the estimate ``grad``; ``False`` (and no step) when it is not finite."""
    optimizer.zero_grad()
    if not bool(torch.isfinite(grad).all()):
        return False  # never poison the rule with a non-finite estimate
    offset = 0
    for p in rule.parameters():
        n = p.numel()
        p.grad = grad[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    torch.nn.utils.clip_grad_norm_(rule.parameters(), clip)
    _meta_step(optimizer)
    return True


def _meta_step(optimizer: torch.optim.Optimizer) -> None:
    try:
        optimizer.step()
    except RuntimeError as err:  # Adam's step size (meta_lr / (1 - β1^t)) past the rule's float32 range
        if "overflow" not in str(err):
            raise
        lr = optimizer.param_groups[0]["lr"]
        raise NonFiniteMetaUpdate(
            f"the meta-step overflowed the rule's parameters ({err}; meta_lr={lr:g}): try a smaller meta_lr (--meta-lr)"
        ) from None


_ITERATIONS = {"tbptt": _tbptt_iteration, "es": _es_iteration, "pes": _pes_iteration}
