"""Checkpoints of a game mid-episode: plain data (tensors, numbers, strings, lists), verified before anything moves.

A checkpoint (:meth:`mtg_env.MultiTaskGameEnv.state_dict`) holds the engine's state of the game, the consensus
rule's state included (tensors: :attr:`mtg_env.engine.GameState.rule_state`), the live agents, the loss history,
and a fingerprint of every option that shapes the game. There is no pickle inside, so
``torch.load(path, weights_only=True)`` loads it without running code (:meth:`~mtg_env.MultiTaskGameEnv.load`
does so). :func:`verify` refuses, naming the field, a checkpoint of another configuration (expected vs found)
and any value no game of this configuration can reach (ranges, shapes, dtypes, finiteness, the consistency of
``t``, the agents, ``done``, the losses and their history); a refused load leaves the env as it was.

Checkpoints of format ``mtg_env.checkpoint/1`` (before this module) kept the rule as a pickle; they are refused
without unpickling it. :func:`upgrade_checkpoint` converts one whose rule keeps no state here (the pickle is
dropped unread); one of a stateful rule must be regenerated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from mtg_env import engine
from mtg_env.consensus import rule_config, rule_name
from mtg_env.engine.core import _finite, in_domain, observed
from mtg_env.engine.features import features
from mtg_env.engine.game import Game
from mtg_env.engine.state import RULE_PREFIX, GameState
from mtg_env.rng import check_seed

if TYPE_CHECKING:
    from mtg_env.envs.parallel import MultiTaskGameEnv

#: The format this version writes and reads.
FORMAT = "mtg_env.checkpoint/2"
#: The format before it (the rule's state as a pickle), refused with how to convert it.
LEGACY_FORMAT = "mtg_env.checkpoint/1"
_KEYS = ("format", "config", "seed", "episode", "agents", "state", "loss_history")


def fingerprint(env: MultiTaskGameEnv) -> dict[str, Any]:
    """Every option that shapes the game, as plain values: a checkpoint of another fingerprint cannot continue
    this env's game. Presentation options (``render_mode``, ``numeric_infos``, ``metrics_every``) and the device
    are left out: they do not change the game."""
    return _plain(
        {
            "env": env.metadata["name"],
            "suite": env.suite.describe(),
            "dtype": str(env.dtype),
            "head_sizes": list(env.suite.head_sizes),
            "trunk_size": env.trunk_size,
            "consensus": rule_config(env.consensus),
            "action_mode": env.config.action_mode,
            "step_size_units": env.config.step_size_units,
            "update_units": env.config.update_units,
            "log_step_range": list(env.config.log_step_range),
            "max_update": env.config.update_bound,
            "pad_heads": env.config.pad_heads,
            "max_cycles": env.config.max_cycles,
            "divergence_reward": env.config.divergence_reward,
            "divergence_threshold": env.game.divergence_threshold,
            "trunk_optimizer": _optimizer(env.config.trunk_spec),
            "head_optimizer": _optimizer(env.config.head_spec),
            # Only when on: checkpoints of games without them keep their fingerprint.
            **({"noise_model": asdict(env.config.noise)} if env.config.noise is not None else {}),
            **({"regularisation": asdict(env.config.reg)} if env.config.reg is not None else {}),
        }
    )


def _optimizer(spec: Any) -> Any:
    return None if spec is None else {"name": spec.name, **spec.kwargs}


def _plain(value: Any) -> Any:
    """``value`` as dicts, lists, str, int, float, bool and None only (tuples become lists), for comparison."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return repr(value)


_MISSING = "<missing>"


def _diff(mine: Any, theirs: Any, name: str = "") -> list[tuple[str, Any, Any]]:
    """The fields where two fingerprints differ, nested dicts compared field by field (``consensus.c``)."""
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        out = []
        for key in sorted(set(mine) | set(theirs)):
            out += _diff(mine.get(key, _MISSING), theirs.get(key, _MISSING), f"{name}.{key}" if name else str(key))
        return out
    return [] if mine == theirs else [(name, mine, theirs)]


def make(env: MultiTaskGameEnv) -> dict[str, Any]:
    """The checkpoint of ``env``'s game (see the module docstring)."""
    if env.game.rule_kind == "object":
        raise TypeError(
            f"consensus rule {rule_name(env.consensus)!r} keeps its state on itself (a callable with reset()), which "
            "a checkpoint cannot store as data; give it init_state and step (see mtg_env.consensus) to checkpoint it"
        )
    return {
        "format": FORMAT,
        "config": fingerprint(env),
        "seed": env._seed,
        "episode": env._episode,
        "agents": list(env.agents),
        "state": env.engine_state.to_dict(),
        "loss_history": [list(row) for row in env._loss_history],
    }


@dataclass(frozen=True)
class Restored:
    """A verified checkpoint, ready to install."""

    state: GameState
    seed: int
    episode: int
    agents: list[str]
    loss_history: list[list[float]]
    features: np.ndarray


def restore(env: MultiTaskGameEnv, checkpoint: Any) -> None:
    """Install ``checkpoint`` in ``env`` once :func:`verify` has checked all of it (a refused one changes nothing).

    Raises:
        TypeError: for a consensus callable that keeps its state on itself (its games cannot be restored from data).
        ValueError: from :func:`verify`, naming the field.
    """
    if env.game.rule_kind == "object":
        raise TypeError(
            f"consensus rule {rule_name(env.consensus)!r} keeps its state on itself (a callable with reset()): "
            "its games cannot be restored from data; give it init_state and step (see mtg_env.consensus)"
        )
    restored = verify(env, checkpoint)
    # Everything checked: install.
    env._state = restored.state
    env._seed, env._episode = restored.seed, restored.episode
    env.agents = restored.agents
    env._feats = restored.features
    env._loss_history = restored.loss_history


def verify(env: MultiTaskGameEnv, checkpoint: Any) -> Restored:
    """Check every field of ``checkpoint`` against ``env`` (nothing is installed): a ``ValueError`` names the first
    field that is of another configuration or that no game of this one can reach."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"not an mtg_env checkpoint (a dict made by env.state_dict()), got {type(checkpoint).__name__}"
        )
    form = checkpoint.get("format")
    if form == LEGACY_FORMAT:
        raise ValueError(_legacy_message(env, checkpoint))
    if form != FORMAT:
        raise ValueError(f"not an mtg_env checkpoint (expected a dict with format={FORMAT!r}, got format={form!r})")
    missing = [k for k in _KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint is missing {missing}")
    unknown = sorted(str(k) for k in checkpoint if k not in _KEYS)
    if unknown:
        raise ValueError(f"checkpoint has unknown entries {unknown}; its entries are {list(_KEYS)}")
    _compare_config(fingerprint(env), checkpoint["config"])
    seed, episode = _seed_and_episode(checkpoint["seed"], checkpoint["episode"])
    agents = _agents(env, checkpoint["agents"])
    game = env.game
    template, _ = engine.reset(game, [seed], [episode])  # the shapes, dtypes, keys and t = 0 state of this game
    tensors = _tensors(template, checkpoint["state"])
    state = template.with_tensors({k: v.detach().to(env.device) for k, v in tensors.items()})
    _check_counters(state, template, seed, episode)
    t = int(state.t[0])
    if not 0 <= t <= env.config.max_cycles:
        raise ValueError(f"checkpoint state 't' must be in [0, max_cycles={env.config.max_cycles}], got {t}")
    live = bool(agents)
    if bool(state.done[0]) == live:
        raise ValueError(
            f"checkpoint state 'done' is {bool(state.done[0])} but the agents are {agents}: a live game has every "
            "agent and is not done; a finished one has none and is done"
        )
    if live:
        _check_live(env, state, template)
    elif t < env.config.max_cycles:
        _check_ended(env, state)
    history = _history(env, checkpoint["loss_history"], state, live)
    feats = features(game, state.losses, state.prev_losses, state.head_grads, state.jacobian, state.last_move, state.t)
    return Restored(state, seed, episode, agents, history, feats[0].cpu().numpy().astype(env.np_dtype))


def _compare_config(mine: dict[str, Any], theirs: Any) -> None:
    if not isinstance(theirs, Mapping):
        raise ValueError(f"checkpoint 'config' must be a dict (the env's fingerprint), got {type(theirs).__name__}")
    diff = _diff(mine, _plain(theirs))
    if diff:
        what = "; ".join(f"{k}: expected {a!r} (this env), found {b!r} (the checkpoint)" for k, a, b in diff)
        raise ValueError(f"checkpoint is of another configuration: {what}")


def _seed_and_episode(seed: Any, episode: Any) -> tuple[int, int]:
    try:
        seed = check_seed(seed, "checkpoint 'seed'")
        episode = check_seed(episode, "checkpoint 'episode'")
    except TypeError as err:
        raise ValueError(str(err)) from None
    return seed, episode


def _agents(env: MultiTaskGameEnv, agents: Any) -> list[str]:
    if not isinstance(agents, (list, tuple)) or not all(isinstance(a, str) for a in agents):
        raise ValueError(f"checkpoint 'agents' must be a list of agent names, got {agents!r}")
    agents = list(agents)
    if len(set(agents)) != len(agents):
        raise ValueError(f"checkpoint 'agents' lists an agent twice: {agents}")
    unknown = [a for a in agents if a not in env.possible_agents]
    if unknown:
        raise ValueError(f"checkpoint 'agents' names unknown agents {unknown}; this env's are {env.possible_agents}")
    if agents and agents != env.possible_agents:
        raise ValueError(
            f"checkpoint 'agents' must be every agent {env.possible_agents} (a live game) or none (a finished one): "
            f"all agents end together, got {agents}"
        )
    return agents


def _tensors(template: GameState, given: Any) -> dict[str, Tensor]:
    if not isinstance(given, Mapping):
        raise ValueError(f"checkpoint 'state' must be a dict of tensors, got {type(given).__name__}")
    expected = template.tensors()
    missing = [k for k in expected if k not in given]
    unknown = sorted(str(k) for k in given if k not in expected)
    if missing or unknown:
        rule = [k for k in expected if k.startswith(RULE_PREFIX)]
        raise ValueError(
            f"checkpoint 'state' lacks {missing} and has unknown entries {unknown} (this game's consensus rule "
            f"keeps {rule or 'no state'})"
        )
    out = {}
    for key, want in expected.items():
        value = given[key]
        shape = tuple(want.shape)
        if not isinstance(value, Tensor) or tuple(value.shape) != shape or value.dtype != want.dtype:
            got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"checkpoint state {key!r} must be a {want.dtype} tensor of shape {shape}, got {got}")
        out[key] = value
    return out


def _check_counters(state: GameState, template: GameState, seed: int, episode: int) -> None:
    if int(state.seeds[0]) != seed or int(state.episodes[0]) != episode:
        raise ValueError(
            f"checkpoint is corrupted: its seed or episode disagrees with its state ('seed' {seed} vs state 'seeds' "
            f"{int(state.seeds[0])}, 'episode' {episode} vs state 'episodes' {int(state.episodes[0])})"
        )
    if not torch.equal(state.keys, template.keys):
        raise ValueError("checkpoint state 'keys' is not the hash of its seed and episode")


def _same(a: Tensor, b: Tensor) -> bool:
    """Bit for bit, NaN equal to NaN."""
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all()) if a.is_floating_point() else torch.equal(a, b)


def _check_live(env: MultiTaskGameEnv, state: GameState, template: GameState) -> None:
    """A live game: parameters and state finite, within the divergence threshold and the rule's domain; at t = 0,
    the state of a fresh reset apart from the parameters (a start may be given)."""
    game = env.game
    t = int(state.t[0])
    if t >= env.config.max_cycles:
        raise ValueError(f"checkpoint state 't' is {t} = max_cycles but the game is live (it is truncated there)")
    tensors = state.tensors()
    always = [
        "heads",
        "trunk",
        "last_move",
        "trunk_opt",
        "head_opt",
        *(k for k in tensors if k.startswith(RULE_PREFIX)),
    ]
    # A start whose losses are not finite stays live until its first step (the reset reports it).
    later = ["losses", "prev_losses", "start_losses", "head_grads", "jacobian"] if t > 0 else []
    for key in (*always, *later):
        value = tensors[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"checkpoint state {key!r} is not finite in a live game (t = {t})")
    if t > 0 and not bool(_finite(game, state.losses, state.heads, state.trunk, state.start_losses)[0]):
        raise ValueError(
            f"checkpoint state 'losses' {state.losses[0].tolist()} lies beyond divergence_threshold times "
            f"'start_losses' {state.start_losses[0].tolist()} in a live game: that game has diverged"
        )
    if t > 0 and not bool(in_domain(game, state.losses)[0]):
        raise ValueError(
            f"checkpoint state 'losses' {state.losses[0].tolist()} is outside the domain of consensus rule "
            f"{rule_name(env.consensus)!r} in a live game: that game has ended"
        )
    if t > 0:
        _check_recomputed(game, state)
    if t == 0:
        fresh = {"prev_losses": state.losses, "start_losses": state.losses}
        for key, value in template.tensors().items():
            if key in ("heads", "trunk", "losses", "head_grads", "jacobian"):
                continue  # set by the start
            if not _same(tensors[key], fresh.get(key, value)):
                raise ValueError(f"checkpoint state {key!r} is not that of a game at t = 0 (a fresh reset)")
    for name, opt in (("trunk_opt", game.trunk_opt), ("head_opt", game.head_opt)):
        if opt is not None and opt.slots == 2 and bool((tensors[name][:, 1] < 0).any()):
            raise ValueError(f"checkpoint state {name!r}: Adam's second moment (slot 1) must be >= 0")
    rule_state = {k: v[0] for k, v in state.rule_state.items()}
    counter = rule_state.get("calls", rule_state.get("nash_step"))
    if counter is not None and int(counter) != t:
        key = "calls" if "calls" in rule_state else "nash_step"
        raise ValueError(f"checkpoint state {RULE_PREFIX + key!r} must equal 't' = {t} (one rule call per step)")
    check = getattr(env.consensus, "check_state", None)
    if rule_state and callable(check):
        check(rule_state)


def _check_recomputed(game: Game, state: GameState) -> None:
    """The stored losses and gradients are those of the stored parameters on step t's batch: recomputed here, they
    must agree to √eps of the dtype (relative to the largest entry). Recomputing on another CPU moves them by a few
    hundred ulps at most (another summation order); a tampered value that passes is one no larger than that."""
    recomputed = dict(zip(("losses", "head_grads", "jacobian"), observed(game, state), strict=True))
    tolerance = torch.finfo(game.dtype).eps ** 0.5
    for key, fresh in recomputed.items():
        stored = getattr(state, key)
        scale = float(fresh.abs().max()) if fresh.numel() else 0.0
        if fresh.numel() and float((stored - fresh).abs().max()) > tolerance * (scale + 1e-30):
            raise ValueError(
                f"checkpoint state {key!r} is not that of the checkpoint's parameters at t = {int(state.t[0])} "
                f"(recomputed on that step's batch it differs by {float((stored - fresh).abs().max()):.3g}): a "
                "tampered or mismatched checkpoint"
            )


def _check_ended(env: MultiTaskGameEnv, state: GameState) -> None:
    """A game that ended before its horizon diverged or left the rule's domain."""
    game = env.game
    finite = bool(_finite(game, state.losses, state.heads, state.trunk, state.start_losses)[0])
    inside = bool(in_domain(game, state.losses)[0]) and bool(in_domain(game, state.prev_losses)[0])
    if finite and inside:
        raise ValueError(
            f"checkpoint state 'done' is True at t = {int(state.t[0])} < max_cycles, but the game has neither "
            "diverged nor left its consensus rule's domain"
        )


def _history(env: MultiTaskGameEnv, history: Any, state: GameState, live: bool) -> list[list[float]]:
    """The loss history: one row of M losses per step from the reset (t + 1 rows), matching the state."""
    t, m = int(state.t[0]), env.suite.num_tasks
    if not isinstance(history, (list, tuple)) or len(history) != t + 1:
        got = f"{len(history)} rows" if isinstance(history, (list, tuple)) else type(history).__name__
        raise ValueError(f"checkpoint 'loss_history' must be a list of t + 1 = {t + 1} rows (one per step), got {got}")
    rows = []
    for i, row in enumerate(history):
        ok = isinstance(row, (list, tuple)) and len(row) == m
        if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise ValueError(f"checkpoint 'loss_history' row {i} must be a list of {m} numbers, got {row!r}")
        if live and i > 0 and not all(math.isfinite(v) for v in row):
            raise ValueError(f"checkpoint 'loss_history' row {i} is not finite in a live game")
        rows.append([float(v) for v in row])
    as_tensor = torch.tensor(rows, dtype=torch.float64)
    pairs = [("losses", t, state.losses), ("start_losses", 0, state.start_losses)]
    if t > 0:
        pairs.append(("prev_losses", t - 1, state.prev_losses))
    for key, i, value in pairs:
        if not _same(as_tensor[i], value[0].detach().to(torch.float64).cpu()):
            raise ValueError(f"checkpoint 'loss_history' row {i} disagrees with its state {key!r}")
    return rows


def _legacy_message(env: MultiTaskGameEnv, checkpoint: Mapping[str, Any]) -> str:
    return (
        f"checkpoint of format {LEGACY_FORMAT!r} (written before this mtg_env) keeps its consensus rule as a pickle, "
        "which is never unpickled (a pickle can run code). "
        + (
            "This env's rule keeps no state, so mtg_env.envs.checkpoint.upgrade_checkpoint(checkpoint, env) converts "
            "it "
            "(the pickle is dropped unread); then load_state_dict the result"
            if env.game.rule_kind == "none"
            else f"This env's rule {rule_name(env.consensus)!r} keeps state, which only that pickle holds: regenerate "
            f"the checkpoint with this version (replay the episode: seed {checkpoint.get('seed')!r}, episode "
            f"{checkpoint.get('episode')!r}, and the same actions; then env.state_dict())"
        )
    )


def upgrade_checkpoint(checkpoint: Mapping[str, Any], env: MultiTaskGameEnv) -> dict[str, Any]:
    """A checkpoint of format ``mtg_env.checkpoint/1`` as one of this format, for ``env`` (the env that is to
    continue it), without unpickling anything.

    Only for a consensus rule that keeps no state here (``sum``, ``mean``, the torchjd rules but Nash-MTL, your
    stateless callables): the old rule pickle is dropped unread. The old fingerprint named fewer options: those it
    names must match ``env``; the others (the rule's options, ``log_step_range``, ``max_update``, …) are taken
    from ``env``, so pass the env of the configuration that wrote it. :meth:`~mtg_env.MultiTaskGameEnv.load_state_dict`
    then verifies everything else.
    """
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != LEGACY_FORMAT:
        raise ValueError(f"upgrade_checkpoint converts checkpoints of format {LEGACY_FORMAT!r}")
    if env.game.rule_kind != "none":
        raise ValueError(_legacy_message(env, checkpoint))
    old = checkpoint.get("config")
    mine = fingerprint(env)
    if not isinstance(old, Mapping):
        raise ValueError("checkpoint 'config' must be a dict (the env's fingerprint)")
    named = {
        "env": mine["env"],
        "suite": mine["suite"],
        "consensus": rule_name(env.consensus),
        "action_mode": mine["action_mode"],
        "max_cycles": mine["max_cycles"],
        "dtype": mine["dtype"],
        "head_sizes": mine["head_sizes"],
        "trunk_size": mine["trunk_size"],
        "divergence_reward": mine["divergence_reward"],
    }
    _compare_config(named, {k: old.get(k, _MISSING) for k in named})
    state = checkpoint.get("state")
    if not isinstance(state, Mapping):
        raise ValueError("checkpoint 'state' must be a dict of tensors")
    state = dict(state)
    for key, opt in (("trunk_opt", env.game.trunk_opt), ("head_opt", env.game.head_opt)):
        size = env.trunk_size if key == "trunk_opt" else env.suite.head_offsets[-1]
        if key not in state and opt is None:  # written before the optimizers: their empty state
            state[key] = torch.zeros(1, 0, size, dtype=env.dtype)
    return {
        "format": FORMAT,
        "config": mine,
        "seed": checkpoint.get("seed"),
        "episode": checkpoint.get("episode"),
        "agents": checkpoint.get("agents"),
        "state": state,
        "loss_history": checkpoint.get("loss_history"),
    }
