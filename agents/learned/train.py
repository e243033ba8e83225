"""Meta-training of learned agents on the engine: truncated backpropagation through unrolled games (TBPTT),
antithetic evolution strategies (ES) over whole episodes, and persistent ES (PES) over truncations.

    config = MetaTrainConfig(agent="learned_mlp", suite="quadratic", iterations=100)
    result = meta_train(config, out="runs/meta")         # runs/meta/{last.pt, best.pt, log.csv, meta_loss.png}

One meta-iteration plays ``configs`` games drawn from the suite's family (:mod:`agents.learned.family`), B =
``games`` seeds each, for one episode of the curriculum's horizon, with every player of every game driven by
the rule (its batched form, :class:`~agents.learned.batched.EngineDriver`). The meta-loss of a stretch of
steps is the mean over steps, games and configs of log((L_t − L*) / (L_0 − L*)): scale-free, so every game counts
alike. With ``floor="true"`` L = Σ_m ℓ_m is the game's whole training objective and L* its true minimum where a
solve gives it (:func:`~agents.learned.family.true_loss_floor`); with ``floor="legacy"`` L is the step's batch loss
and L* :func:`~agents.learned.family.loss_floor`.

* ``tbptt``: the episode in truncations of ``truncation`` steps; the meta-gradient of each truncation flows
  through the engine's differentiable step into the rule's parameters (first order: observations detached,
  as Andrychowicz et al.), one Adam meta-step per truncation. Needs a differentiable consensus rule.
* ``es``: antithetic Gaussian perturbations θ ± σε of the rule's parameters, each pair playing the same games
  for the whole episode without autograd; works with every consensus rule.
* ``pes``: ES over truncations with per-particle games that carry on across truncations, the perturbations
  accumulated (Vicol et al. 2021), so the estimate is unbiased for the whole episode.

TBPTT's truncated meta-gradient favours small steps (the short-horizon bias of Wu et al. 2018): on regression the
trained trunk step was a quarter of what the whole-episode meta-loss prefers, and with a cosine decay the heads' steps
a third to a quarter of the tuned baselines' at ``sum`` 1×. ``trunk_search`` and ``head_search`` correct it after
training: the best rule's trunk log step (the same for every player) and its heads' log steps, moved by each pair of
the given factors, are scored on whole episodes of training-family draws (a stream of its own, by ``search_metric``)
and the best pair kept.

Every random choice is a function of (``seed``, iteration): a run resumed from ``last.pt`` (written after
every iteration with the meta-optimizer's state) continues exactly as the uninterrupted run. Meta-validation
on held-out game draws and seeds every ``val_every`` iterations keeps the best rule in ``best.pt``.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.learned.checkpoint import check_state_dict, new_rule, read_rule, save_rule

# The run's config, meta-loss, estimators and checkpoint live in their own modules; their public names are
# re-exported here.
from agents.learned.meta_checkpoint import CHECKPOINT_FORMAT, _check_out, _read_checkpoint, _save_checkpoint
from agents.learned.meta_config import (
    DIGITS_RULE,
    MINIBATCH_BRAKE,
    SUITE_RULE_OPTIONS,
    SUITE_TRAIN_RULE_OPTIONS,
    TRAINING_BRAKE,
    MetaTrainConfig,
    MetaTrainResult,
    Method,
    NonFiniteMetaUpdate,
    _config_dict,
)
from agents.learned.meta_grad import _ITERATIONS
from agents.learned.meta_loss import _STREAM_SEARCH, _STREAM_VALID, VALID_SEED_BASE, _draws, evaluate_rule
from agents.learned.portfolio import PortfolioRule
from agents.learned.rules import LSTMRule, Rule

__all__ = [
    "CHECKPOINT_FORMAT",
    "DIGITS_RULE",
    "MINIBATCH_BRAKE",
    "SUITE_RULE_OPTIONS",
    "SUITE_TRAIN_RULE_OPTIONS",
    "TRAINING_BRAKE",
    "VALID_SEED_BASE",
    "MetaTrainConfig",
    "MetaTrainResult",
    "Method",
    "NonFiniteMetaUpdate",
    "evaluate_rule",
    "meta_train",
    "step_search",
    "trunk_step_search",
    "write_log",
]


def _check_finite(rule: Rule, loss: float, iteration: int, config: MetaTrainConfig) -> None:
    """Stop the run (:class:`NonFiniteMetaUpdate`, naming the iteration and what) if meta-iteration ``iteration``
    left non-finite parameters in the rule or gave a non-finite meta-loss."""
    bad = [name for name, p in rule.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteMetaUpdate(
            f"meta-iteration {iteration}: the meta-update left NaN or infinite values in the rule's parameters "
            f"{bad} (meta_lr={config.meta_lr:g}, grad_clip={config.grad_clip:g}); stopped before writing them: "
            "try a smaller meta_lr (--meta-lr)"
        )
    if not math.isfinite(loss):
        raise NonFiniteMetaUpdate(
            f"meta-iteration {iteration}: the meta-loss is {loss}; stopped before writing the rule it trained"
        )


def meta_train(
    config: MetaTrainConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: int | None = None,
) -> MetaTrainResult:
    """Meta-train a learned agent (see the module docstring).

    Args:
        config: The run's hyper-parameters.
        out: Directory for ``last.pt`` (resumable), ``best.pt`` (the best rule, loadable by
            :func:`~agents.learned.checkpoint.load_rule`), ``log.csv`` and ``meta_loss.png``; ``None``: write
            nothing.
        resume: Continue from ``out/last.pt`` (its config must equal ``config`` except ``budget_s``).
        progress: Show a tqdm progress bar on stderr.
        stop_after: Stop after this iteration count (as if interrupted; for tests of resuming).

    Raises:
        FileExistsError: if ``out`` holds files and ``resume`` is not set (nothing in it is changed).
        FileNotFoundError: if ``resume`` is set and there is no ``out/last.pt``.
        ValueError: for a device that is not usable here, or a ``last.pt`` that cannot be read, is not sound (NaN or
            infinite tensors included) or has another config (the message names the file and why).
        NonFiniteMetaUpdate: if a meta-iteration leaves non-finite values in the rule or gives a non-finite
            meta-loss: the run stops before writing anything of that iteration.
    """
    out_dir = None if out is None else Path(out)
    torch_device = torch.device(config.device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} asks for CUDA, but this torch build has no usable GPU; use cpu")
    if resume and (out_dir is None or not (out_dir / "last.pt").is_file()):
        raise FileNotFoundError(f"resume=True (--resume) needs a checkpoint at {out_dir}/last.pt, and there is none")
    if out_dir is not None:
        _check_out(out_dir, resume)
    played = config.rule_options()  # read once: best.pt is built with the options the run started with
    rule = new_rule(config.agent, **config.training_rule_options())
    assert not isinstance(rule, PortfolioRule)  # MetaTrainConfig refuses it
    init_sha256 = None
    if config.init is not None:  # fine-tuning: the file's trained parameters (its options, or `rule`'s keeping them)
        _, start, _, init_sha256 = read_rule(Path(config.init))
        what = "init's rule (with this run's options)"
        check_state_dict(Path(config.init), start.state_dict(), rule.state_dict(), what)
        rule.load_state_dict(start.state_dict())
    rule.to(torch_device)
    optimizer = torch.optim.Adam(rule.parameters(), lr=config.meta_lr)
    rows: list[dict[str, float]] = []
    start_iteration, best_val, best_iteration, elapsed = 0, math.inf, -1, 0.0
    best_state = copy.deepcopy(rule.state_dict())
    if resume:
        assert out_dir is not None
        ckpt = _read_checkpoint(out_dir / "last.pt", config, rule, optimizer, torch_device)
        rows, best_val, best_iteration = ckpt["rows"], float(ckpt["best_val"]), ckpt["best_iteration"]
        best_state, elapsed, start_iteration = ckpt["best_state"], float(ckpt["elapsed"]), ckpt["iteration"]
        if ckpt.get("init_sha256") != init_sha256:  # the options the run plays are the file's: it must be the same
            began_from = ckpt.get("init_sha256") or "not recorded: the checkpoint predates the recorded start file"
            raise ValueError(
                f"init: {config.init} is not the file this run started from (sha256 {began_from}; the file's now "
                f"{init_sha256}): resume with the file the run started from, or start a new run in a new --out"
            )
    val_draws = _draws(config, 0, _STREAM_VALID, config.val_configs, config.val_games)
    val_horizon = max(config.horizons)
    if config.init is not None and not resume:  # the file is the best until an iteration beats it on held-out draws
        best_val = evaluate_rule(rule, config, val_draws, val_horizon, final=config.val_metric == "final")
        best_iteration = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.iterations, initial=start_iteration, desc=f"meta-train {config.agent}", unit="it")
    began = time.perf_counter() - elapsed
    iteration = start_iteration
    step_fn = _ITERATIONS[config.method]
    completed = iteration >= config.iterations  # the run ran its iterations or its budget (not stopped early)
    try:
        while iteration < config.iterations:
            if stop_after is not None and iteration >= stop_after:
                break
            try:
                train_loss, skipped = step_fn(rule, optimizer, config, iteration)
            except NonFiniteMetaUpdate as err:
                raise NonFiniteMetaUpdate(f"meta-iteration {iteration + 1}: {err}; stopped before writing it") from None
            iteration += 1
            _check_finite(rule, train_loss, iteration, config)
            row: dict[str, float] = {"iteration": iteration, "horizon": config.horizon(iteration - 1),
                                     "meta_loss": train_loss, "val_loss": math.nan, "skipped": skipped}  # fmt: skip
            last = iteration == config.iterations or (
                config.budget_s is not None and time.perf_counter() - began >= config.budget_s
            )
            completed = last
            if iteration % config.val_every == 0 or last:
                val = evaluate_rule(rule, config, val_draws, val_horizon, final=config.val_metric == "final")
                row["val_loss"] = val
                if val < best_val:
                    best_val, best_iteration = val, iteration
                    best_state = copy.deepcopy(rule.state_dict())
            row["seconds"] = time.perf_counter() - began
            rows.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(meta_loss=f"{train_loss:.3f}", best_val=f"{best_val:.3f}", refresh=False)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                _save_checkpoint(out_dir / "last.pt", {
                    "format": CHECKPOINT_FORMAT, "config": _config_dict(config), "iteration": iteration,
                    "rule": rule.state_dict(), "optimizer": optimizer.state_dict(), "rows": rows, "best_val": best_val,
                    "best_iteration": best_iteration, "best_state": best_state, "elapsed": row["seconds"],
                    "init_sha256": init_sha256,
                })  # fmt: skip
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - began
    skipped_steps = int(sum(row.get("skipped", 0) for row in rows))
    best_rule = new_rule(config.agent, **played)
    assert not isinstance(best_rule, PortfolioRule)
    best_rule.to(torch_device)
    best_rule.load_state_dict(best_state)
    factor, head_factor = 1.0, 1.0
    search: dict[str, Any] = {}
    if (config.trunk_search or config.head_search) and completed:
        factor, head_factor, search = step_search(best_rule, config)
        best_val = evaluate_rule(best_rule, config, val_draws, val_horizon, final=config.val_metric == "final")
        seconds = time.perf_counter() - began
    if out_dir is not None:
        meta = {"config": _config_dict(config), "best_iteration": best_iteration, "best_val": best_val,
                "iterations": iteration, "seconds": seconds, "skipped_steps": skipped_steps, **search}  # fmt: skip
        if init_sha256 is not None:  # which file the run started from, byte for byte
            meta["init_sha256"] = init_sha256
        save_rule(out_dir / "best.pt", config.agent, best_rule, meta)
        write_log(out_dir, rows)
    return MetaTrainResult(
        rows, best_val, best_iteration, out_dir, best_rule, seconds, factor, skipped_steps, head_factor=head_factor
    )


def trunk_step_search(rule: Rule, config: MetaTrainConfig) -> tuple[float, list[float]]:
    """Score ``rule`` with its trunk step times each factor of ``config.trunk_search`` (by ``config.search_metric``
    on whole episodes of the search stream's draws, the longest horizon); load the best into ``rule``. Returns the
    best factor and every factor's score (:func:`step_search` without the heads)."""
    if not config.trunk_search:
        raise ValueError("trunk_step_search scores the factors of config.trunk_search: give it some, e.g. (0.5, 1, 2)")
    factor, _, search = step_search(rule, replace(config, head_search=()))
    return factor, search["trunk_search"]["scores"]


def step_search(rule: Rule, config: MetaTrainConfig) -> tuple[float, float, dict[str, Any]]:
    """Score ``rule`` with its trunk step times each factor of ``config.trunk_search`` and its heads' steps times each
    of ``config.head_search`` (every pair; an empty list: the factor 1), by ``config.search_metric`` on whole
    episodes of the search stream's draws at the longest horizon; load the best pair into ``rule`` (the first of
    equals, in the lists' order). Returns the kept trunk and head factors and what a checkpoint records of the search:
    for each list given, its factors, their scores beside the other's kept factor, and the kept one; with both, the
    whole grid (``scores[i][j]``: trunk factor i, head factor j)."""
    if isinstance(rule, LSTMRule):
        raise TypeError("step_search needs a rule with trunk and head steps (MLPRule or StepRule)")
    trunks, heads = config.trunk_search or (1.0,), config.head_search or (1.0,)
    draws = _draws(config, 0, _STREAM_SEARCH, config.val_configs, config.games)
    state = copy.deepcopy(rule.state_dict())
    grid = np.zeros((len(trunks), len(heads)))
    for i, trunk in enumerate(trunks):
        for j, head in enumerate(heads):
            rule.load_state_dict(state)
            rule.scale_trunk_step(trunk)
            rule.scale_head_step(head)
            grid[i, j] = evaluate_rule(rule, config, draws, max(config.horizons), config.search_metric == "final")
    best = int(np.argmin(grid))  # NaN-free: evaluate_rule clamps a game that blew up
    ti, hj = best // len(heads), best % len(heads)
    rule.load_state_dict(state)
    rule.scale_trunk_step(trunks[ti])
    rule.scale_head_step(heads[hj])
    search: dict[str, Any] = {}
    if config.trunk_search:
        search["trunk_search"] = {"factors": list(trunks), "scores": grid[:, hj].tolist(), "kept": float(trunks[ti])}
    if config.head_search:
        search["head_search"] = {"factors": list(heads), "scores": grid[ti, :].tolist(), "kept": float(heads[hj])}
    if config.trunk_search and config.head_search:
        search["step_search"] = {"trunk": list(trunks), "head": list(heads), "scores": grid.tolist()}
    return float(trunks[ti]), float(heads[hj]), search


def write_log(out_dir: Path, rows: list[dict[str, float]]) -> None:
    """``log.csv`` and ``meta_loss.png`` (training meta-loss per iteration and validation points)."""
    fields = ["iteration", "horizon", "meta_loss", "val_loss", "seconds"]
    with open(out_dir / "log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, math.nan) for k in fields})
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    its = [r["iteration"] for r in rows]
    ax.plot(its, [r["meta_loss"] for r in rows], label="training meta-loss")
    val = [(r["iteration"], r["val_loss"]) for r in rows if not math.isnan(r["val_loss"])]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation (held-out games)")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean log(L_t − L*) / (L_0 − L*)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out_dir / "meta_loss.png")
