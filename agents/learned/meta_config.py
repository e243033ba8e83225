"""What a meta-training run is (:mod:`agents.learned.train`): :class:`MetaTrainConfig` with the rules' per-suite
default options (the brakes), :class:`MetaTrainResult`, and :class:`NonFiniteMetaUpdate`, the error that stops a run."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from agents.learned.checkpoint import LEARNED, load_rule, new_rule
from agents.learned.family import FLOORS, get_family
from agents.learned.rules import Rule
from mtg_env._args import real_arg
from mtg_env.consensus.table import RULE_TABLE

Method = Literal["tbptt", "es", "pes"]


#: The MLP rule's trunk brake for the minibatch suites: continuous (cuts by the excess), a slow growth average
#: (weight 0.05, from step 10) with a low threshold, no warm-up ramp (measured with the per-player gradient signal:
#: regression 1.02–1.08 and digits 0.69–0.97 of the tuned baseline with a fast brake, 0.95–1.02 and 0.41–0.74 with
#: this one; docs/results/learned.md).
MINIBATCH_BRAKE: dict[str, Any] = {"brake_weight": 0.05, "brake_threshold": 0.05, "brake_warmup": 10,
                                   "brake_recovery": 1.0, "brake_step": 0.0, "trunk_warmup": 1}  # fmt: skip

#: Digits' rule: the minibatch brake, and a learned direction offset on the heads' Adam step (its games end far from a
#: stationary point, where the offset pays: without it the rule is level with tuned Adam at 1×; see
#: docs/results/learned.md).
DIGITS_RULE: dict[str, Any] = {**MINIBATCH_BRAKE, "direction_offset": True}

#: The brake the quadratic rule is meta-trained with: continuous and wearing off, so a trunk step that turns a game
#: unstable costs the meta-loss (the game hovers at its stability edge) and the learned step stays clear of it. With
#: the play brake (quantised, holding) in the loop meta-training learned a larger step that leaned on it (held-out
#: quadratic draws, mean ratio at 1× 4.71 instead of 0.002, one training-family game diverged at 2×).
TRAINING_BRAKE: dict[str, Any] = {"brake_step": 0.0, "brake_threshold": 0.1, "brake_recovery": 0.95}

#: Options a rule meta-trains with but does not play with, per (agent, suite) when :attr:`MetaTrainConfig.train_rule`
#: is ``None``: ``best.pt`` holds the rule with :meth:`MetaTrainConfig.rule_options` alone.
SUITE_TRAIN_RULE_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {("learned_mlp", "quadratic"): TRAINING_BRAKE}

#: A rule's default options per (agent, suite) when :attr:`MetaTrainConfig.rule` is ``None``.
SUITE_RULE_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("learned_mlp", "digits"): DIGITS_RULE,
    ("learned_mlp", "regression"): {**MINIBATCH_BRAKE, "brake_threshold": 0.25},
}


@dataclass(frozen=True)
class MetaTrainConfig:
    """Hyper-parameters of a meta-training run."""

    agent: str = "learned_mlp"
    """The learned agent (``learned_mlp``, ``learned_lstm`` or ``learned_step``)."""
    suite: str | tuple[str, ...] = "quadratic"
    """The game family (``quadratic``, ``regression`` or ``digits``; a registered or an import-path
    :class:`~agents.learned.family.Family`, e.g. ModuleSuites of a user's model), or a mixture of families: a tuple
    (a list in TOML, ``a,b,c`` on the command line) whose members an iteration's draws take in turn (draw i of
    iteration k from member (k · configs + i) mod n), so every member is played alike: the generalist's
    training."""
    method: Method = "tbptt"
    """``tbptt``, ``es`` or ``pes`` (see :mod:`agents.learned.train`)."""
    iterations: int = 100
    """Meta-iterations (episodes) at most."""
    budget_s: float | None = None
    """Stop after the iteration that passes this many seconds of wall time (``None``: no limit)."""
    games: int = 8
    """B: seeds per drawn game."""
    configs: int = 2
    """Games drawn from the family per iteration."""
    horizons: tuple[int, ...] = (20, 50, 100)
    """Curriculum: episode lengths, each for an equal share of the iterations."""
    truncation: int = 10
    """TBPTT / PES: steps per truncation."""
    late_weight: float = 0.0
    """The meta-loss weighs step t by 1 + late_weight · t / horizon (0: every step alike): more weight on where
    the episode ends, which is what the final-loss comparison scores."""
    meta_lr: float = 3e-3
    """Adam's step on the rule's parameters."""
    grad_clip: float = 1.0
    """Meta-gradient norm clip."""
    es_pairs: int = 8
    """ES / PES: antithetic pairs per estimate."""
    es_sigma: float = 0.01
    """ES / PES: perturbation scale σ."""
    val_every: int = 10
    """Meta-validate every this many iterations (and after the last)."""
    val_configs: int = 4
    """Held-out game draws for validation."""
    val_games: int = 4
    """Held-out seeds per validation draw."""
    trunk_search: tuple[float, ...] = ()
    """Factors of the trunk step to try after training (``learned_mlp``, ``learned_step``; empty: none): the best
    rule's trunk log step moved by log f for each f, scored (:attr:`search_metric`) on whole episodes of
    ``val_configs`` training-family draws × ``games`` seeds at the longest horizon; the best is kept in ``best.pt``."""
    head_search: tuple[float, ...] = ()
    """Factors of the heads' step to try after training, as :attr:`trunk_search` does the trunk's (``learned_mlp``:
    its Adam step and the Barzilai–Borwein step's start, ``learned_step``: the head step; empty: none). The same
    short-horizon bias keeps them small: on the regression recipe with a cosine decay, the tuned gradient, heavy-ball
    and Adam baselines of ``sum`` 1× step the heads 3–4× as far as the trained rule (docs/results/learned.md). With
    both, every (trunk, head) pair is scored on the same episodes, a grid."""
    search_metric: str = "mean"
    """What :attr:`trunk_search` and :attr:`head_search` score, as :attr:`val_metric` reads it: ``"mean"``, the
    meta-loss over the episode (as every search before this field); ``"final"``, the log gap at its end."""
    val_metric: str = "mean"
    """What meta-validation scores to keep the best rule: ``"mean"``, the meta-loss (the mean over the episode of
    the per-step log-ratio on the games' batches); ``"final"``, log((L_T − L*) / (L_0 − L*)) on the whole training
    objective at the episode's end, what ``scripts/learned_results.py`` scores."""
    floor: str = "legacy"
    """What the meta-loss log((L_t − L*) / (L_0 − L*)) measures from (:data:`agents.learned.family.FLOORS`):
    ``"true"``, L* the true minimum of the whole training objective where a solve gives it (the quadratic's closed
    form; regression's linear trunk: least squares, or ALS under a bottleneck), L_t then that whole objective; else
    (regression's MLP trunk, digits, whose true L* only a best run of seconds per drawn game gives) the suite's
    lower bound 0 on the step's batch loss, as legacy (:func:`~agents.learned.family.true_loss_floor`).
    ``"best"``: L* the sealed protocol's (exact where a solve gives it, else a best run polished by L-BFGS: about
    0.7–1.7 s per drawn regression game with an MLP trunk, 3–4 s per digits game, once per game), L_t the whole
    objective.
    ``"legacy"``: L_t the step's batch loss, L* the quadratic's equilibrium loss, else 0
    (:func:`~agents.learned.family.loss_floor`; how the shipped weights were trained)."""
    consensus: str | tuple[str, ...] = "sum"
    """The trunk's consensus rule, or a mixture of rules (a tuple): with n families in :attr:`suite`, draw i of
    iteration k plays rule ((k · configs + i) // n) mod r, so every (family, rule) pair is played in turn. TBPTT
    differentiates through the rule: each must be differentiable (``mtg_env.consensus.rule_differentiable``;
    ``sum``, ``mean``, ``mgda``, …); ``es`` and ``pes`` take any."""
    dtype: str = "float32"
    """The games' dtype (the rule runs in float32): ``float32``, ``float64`` or ``auto`` (each family's own,
    :attr:`Family.dtype <agents.learned.family.Family.dtype>`: float64 for quadratics, whose games fall to 1e-15 of
    their start, float32 else)."""
    seed: int = 0
    """Decides every draw of the run."""
    device: str = "cpu"
    """Where the games and the rule live (``cuda`` on a GPU)."""
    rule: dict[str, Any] | None = None
    """Options of the rule's config (e.g. ``{"init_lr": 0.03}``); ``None``: the suite's defaults
    (:data:`SUITE_RULE_OPTIONS`), ``{}``: the rule class's own."""
    train_rule: dict[str, Any] | None = None
    """Options on top of ``rule`` used only while meta-training (``best.pt`` plays without them); ``None``: the
    suite's (:data:`SUITE_TRAIN_RULE_OPTIONS`), ``{}``: none."""
    init: str | None = None
    """A learned-rule file of ``agent`` (what ``--weights`` takes; a path object is kept as its ``str``) whose trained
    parameters the run starts from, where it would start untrained: fine-tuning, e.g. a shipped specialist under a
    consensus rule it was not trained under. The rule plays the file's options unless ``rule`` is given (whose options
    must then make exactly the file's parameters); it trains without the curvature guard, as every run does, and
    ``train_rule`` adds the training-only options as usual. The file is scored on the held-out draws before the first
    iteration, so ``best.pt`` is the file's parameters (before any step search) unless an iteration beats them there.
    The file's sha256 is kept in ``last.pt`` and ``best.pt``'s meta; a resume from another file is refused."""

    def __post_init__(self) -> None:
        for name in ("suite", "consensus"):  # a TOML list, or a one-member mixture, as the tuple or name it means
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
            if isinstance(value, tuple) and len(value) == 1:
                value = value[0]
            object.__setattr__(self, name, value)
        for family in self.suites:
            try:
                get_family(family)
            except ValueError as err:  # naming the field, the family and the families there are
                raise ValueError(f"suite: {err}") from None
        if len(set(self.suites)) != len(self.suites):
            raise ValueError(f"suite lists a family twice: {list(self.suites)}")
        for name in self.consensuses:
            if not isinstance(name, str) or name not in RULE_TABLE:
                raise ValueError(f"consensus must name rules of {sorted(RULE_TABLE)}, got {name!r}")
            if self.method == "tbptt" and not RULE_TABLE[name].differentiable:
                raise ValueError(
                    f"consensus {name!r} is not differentiable, and method 'tbptt' differentiates through the "
                    "trunk's consensus: use method 'es' or 'pes', or leave it out of the mixture"
                )
        if len(set(self.consensuses)) != len(self.consensuses):
            raise ValueError(f"consensus lists a rule twice: {list(self.consensuses)}")
        if self.dtype not in ("float32", "float64", "auto"):
            raise ValueError(f"dtype must be 'float32', 'float64' or 'auto' (each family's own), got {self.dtype!r}")
        trainable = sorted(set(LEARNED) - {"learned_portfolio"})
        if self.agent not in LEARNED:
            raise ValueError(f"agent must be one of {trainable}, got {self.agent!r}")
        if self.agent == "learned_portfolio":
            raise ValueError(
                "agent 'learned_portfolio' is not meta-trained: it holds meta-trained rules and a selector, fitted "
                "with scripts/fit_portfolio.py; meta-train one of learned_mlp, learned_lstm, learned_step"
            )
        if self.method not in ("tbptt", "es", "pes"):
            raise ValueError(f"method must be 'tbptt', 'es' or 'pes', got {self.method!r}")
        for name in ("iterations", "games", "configs", "truncation", "es_pairs", "val_every", "val_configs",
                     "val_games"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.horizons or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.horizons):
            raise ValueError(f"horizons must be a non-empty tuple of ints >= 1, got {self.horizons!r}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"budget_s must be > 0 seconds or None, got {self.budget_s!r}")
        real_arg("late_weight", self.late_weight, low=0.0, hint="0: every step alike")
        for name, part in (("trunk_search", "a trunk step"), ("head_search", "a head step")):
            factors = getattr(self, name)
            if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < math.inf for f in factors):
                raise ValueError(f"{name} must hold finite factors > 0, got {factors!r}")
            if factors and self.agent == "learned_lstm":
                raise ValueError(f"{name} needs a rule with {part} (learned_mlp, learned_step), not learned_lstm")
        for name in ("val_metric", "search_metric"):
            if getattr(self, name) not in ("mean", "final"):
                raise ValueError(f"{name} must be 'mean' or 'final', got {getattr(self, name)!r}")
        if self.floor not in FLOORS:
            raise ValueError(f"floor must be one of {list(FLOORS)}, got {self.floor!r}")
        for name in ("meta_lr", "grad_clip", "es_sigma"):  # inf or NaN would turn the rule's weights into NaN
            real_arg(name, getattr(self, name), low=0.0, low_open=True)
        if self.init is not None:
            self._check_init()
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r} ({err})"
            ) from None
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device must be a CPU or CUDA device, got {self.device!r}")

    def _check_init(self) -> None:
        """Refuse an ``init`` that is not a readable rule file of ``agent``, or a ``rule`` whose parameters are not
        the file's (naming the file, the parameters and what to change). A path object is kept as its ``str``."""
        if isinstance(self.init, os.PathLike):
            object.__setattr__(self, "init", os.fspath(self.init))
        if not isinstance(self.init, str) or not self.init:
            raise ValueError(f"init must be the path of a learned-rule file, or None; got {self.init!r}")
        try:
            name, start, _ = load_rule(self.init)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"init: cannot start from {self.init!r} ({err})") from None
        if name != self.agent:
            raise ValueError(
                f"init: {self.init} holds a {name} rule, and this run meta-trains {self.agent}: set agent to {name}, "
                "or start from a file of the agent"
            )
        if self.rule is not None:  # the file's trained parameters must be exactly the ones these options make
            trained = start.state_dict()
            made = new_rule(self.agent, **self.training_rule_options()).state_dict()
            dropped, added = sorted(set(trained) - set(made)), sorted(set(made) - set(trained))
            reshaped = sorted(k for k in set(trained) & set(made) if trained[k].shape != made[k].shape)
            if dropped or added or reshaped:
                raise ValueError(
                    f"rule: with these options the rule's parameters are not those of init's {self.init} (it would "
                    f"drop {dropped}, add {added}, reshape {reshaped}): set the options that make the file's "
                    "parameters, or leave rule None to play the file's own options"
                )

    def init_options(self) -> dict[str, Any]:
        """The options of ``init``'s rule (``{}`` without one)."""
        if self.init is None:
            return {}
        return asdict(load_rule(self.init)[1].config)

    @property
    def suites(self) -> tuple[str, ...]:
        """The families of the run (one, or a mixture's)."""
        return self.suite if isinstance(self.suite, tuple) else (self.suite,)

    @property
    def consensuses(self) -> tuple[str, ...]:
        """The consensus rules of the run (one, or a mixture's)."""
        return self.consensus if isinstance(self.consensus, tuple) else (self.consensus,)

    def draw_plan(self, iteration: int, index: int) -> tuple[str, str]:
        """(family, consensus rule) of draw ``index`` of ``iteration`` (see :attr:`suite` and :attr:`consensus`)."""
        slot = iteration * self.configs + index
        families, rules = self.suites, self.consensuses
        return families[slot % len(families)], rules[(slot // len(families)) % len(rules)]

    def game_dtype(self, family: str) -> str:
        """The dtype the games of ``family`` play in (``dtype``, or with ``auto`` the family's)."""
        return get_family(family).dtype if self.dtype == "auto" else self.dtype

    def rule_options(self) -> dict[str, Any]:
        """The options the played rule (``best.pt``) is built with: ``rule``, else ``init``'s file's, else the suite's
        defaults (a mixture has none: the rule class's own)."""
        if self.rule is not None:
            return dict(self.rule)
        if self.init is not None:
            return self.init_options()
        if isinstance(self.suite, tuple):
            return {}
        return dict(SUITE_RULE_OPTIONS.get((self.agent, self.suite), {}))

    def training_rule_options(self) -> dict[str, Any]:
        """The options the rule meta-trains with: :meth:`rule_options` updated by ``train_rule`` (or the suite's).

        The curvature guard (:mod:`agents.learned.guard`) is a safeguard of play: meta-training runs without it
        unless ``rule`` or ``train_rule`` sets ``guard`` (the shipped rules were trained so, and
        ``scripts/train_weights.py`` reproduces them), and ``best.pt`` plays with it (the rule's default)."""
        if self.train_rule is not None:
            extra = self.train_rule
        elif isinstance(self.suite, tuple):
            extra = {}
        else:
            extra = SUITE_TRAIN_RULE_OPTIONS.get((self.agent, self.suite), {})
        played = self.rule_options()
        if self.rule is None and self.init is not None:  # init's file plays with its guard; it trains without it
            played.pop("guard", None)
        return {"guard": False, **played, **extra}

    @property
    def mode(self) -> str:
        """The action mode of the agent's games."""
        return LEARNED[self.agent][2]

    def horizon(self, iteration: int) -> int:
        """The curriculum's episode length at ``iteration`` (0-based)."""
        stage = min(len(self.horizons) - 1, iteration * len(self.horizons) // self.iterations)
        return self.horizons[stage]


@dataclass
class MetaTrainResult:
    """What a run did: its log rows, best validation meta-loss and where it wrote."""

    rows: list[dict[str, float]]
    best_val: float
    best_iteration: int
    out: Path | None
    rule: Rule
    seconds: float
    trunk_factor: float = 1.0
    """The factor ``trunk_search`` kept (1: none searched)."""
    skipped_steps: int = 0
    """Meta-steps left out because a game that blew up gave a non-finite meta-gradient (the rule not moved)."""
    head_factor: float = 1.0
    """The factor ``head_search`` kept (1: none searched)."""


class NonFiniteMetaUpdate(FloatingPointError):
    """A meta-iteration produced a non-finite meta-loss or left non-finite values in the rule's parameters: the run
    stops there, before anything of that iteration is written (``last.pt`` keeps the iteration before)."""


def _config_dict(config: MetaTrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d["horizons"] = list(config.horizons)
    d["trunk_search"] = list(config.trunk_search)
    d["head_search"] = list(config.head_search)
    for name in ("suite", "consensus"):  # a mixture as a list (a checkpoint holds plain values)
        if isinstance(d[name], tuple):
            d[name] = list(d[name])
    return d
