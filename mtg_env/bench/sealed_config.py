"""The sealed protocol's config (:mod:`mtg_env.bench.sealed`): :class:`SealedConfig`, its entrants with their own
weights (:class:`Entrant`), its budget check and its file form (``protocol = "sealed"``, e.g.
``examples/bench_learned.toml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtg_env._args import int_arg
from mtg_env.bench.sealed_search import BASELINE_CONTROLS, SearchSpace

#: What a sealed cell's bootstrap may resample (:attr:`SealedConfig.bootstrap_unit`).
BOOTSTRAP_UNITS = ("draw", "game")


# ----------------------------------------------------------------------------------------- the entrants
@dataclass(frozen=True)
class Entrant:
    """A self-tuning entrant with its own weights: one rule file played on every family it lists."""

    name: str
    """Its label in the results (the file form's default: ``"{agent}[{tag or file stem}]"``)."""
    agent: str
    """The learned agent (``learned_mlp``, ``learned_lstm``, ``learned_step``, ``learned_portfolio``)."""
    weights: str
    """The rule file (a shipped ``agents/learned/weights/{agent}_{tag}.pt``, or ``mtg-env meta-train``'s best.pt)."""
    families: tuple[str, ...]
    """The game families it plays, all with these weights."""


def _make_one(agent: str) -> str:
    """How to make a rule file for ``agent``, for the messages that refuse a missing one."""
    if agent == "learned_portfolio":
        return 'fit one with `python scripts/fit_portfolio.py fit DIR --out FILE`, then set weights = "FILE"'
    command = f"mtg-env meta-train --agent {agent} --suite SUITE --out DIR"
    return f'make one with `{command}`, then set weights = "DIR/best.pt"'


def _weights_path(agent: str, weights: str, where: str) -> tuple[Path, str]:
    """``(path, default label)`` of an ``[[entrants]]`` table's ``weights``: a shipped tag (no ``/``, no ``.pt``:
    ``agents/learned/weights/{agent}_{tag}.pt``) or a rule file's path; refused, naming ``where``, if missing."""
    from agents.learned.checkpoint import WEIGHTS_DIR, shipped

    if "/" in weights or "\\" in weights or weights.endswith(".pt"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(f"{where}: weights = {weights!r}: no rule file {path}; {_make_one(agent)}")
        return path, f"{agent}[{path.stem}]"
    path = WEIGHTS_DIR / f"{agent}_{weights}.pt"
    if not path.is_file():
        tags = [t for a, t in shipped() if a == agent]
        raise ValueError(
            f"{where}: weights = {weights!r}: no shipped weights {path} (shipped tags of {agent}: {tags}); "
            f"{_make_one(agent)}"
        )
    return path, f"{agent}[{weights}]"


# ----------------------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class SealedConfig:
    """A sealed-protocol benchmark (its file form: ``examples/bench_learned.toml``)."""

    name: str
    families: tuple[str, ...]
    """Game families (:data:`agents.learned.family.FAMILIES`)."""
    entrants: tuple[tuple[str, str], ...]
    """Self-tuning track: (learned agent, family) pairs, each played with its shipped weights (labelled: the agent)."""
    weighted_entrants: tuple[Entrant, ...] = ()
    """Self-tuning track: entrants with their own weights, each played on every family it lists."""
    consensus: tuple[str, ...] = ("sum",)
    """Consensus rules (:data:`mtg_env.consensus.RULE_TABLE`): each one a cell per family and horizon, its baselines
    tuned and every player scored with the trunk moving by that rule."""
    baselines: tuple[str, ...] = tuple(BASELINE_CONTROLS)
    """External-tuning track."""
    multiples: tuple[int, ...] = (1, 2, 5)
    """Horizons, as multiples of ``train_horizon``."""
    train_horizon: int = 100
    """The meta-training horizon."""
    train_horizons: tuple[tuple[str, int], ...] = ()
    """Per family, a meta-training horizon other than ``train_horizon`` (digits' rule trained on 50 steps)."""
    search: SearchSpace = field(default_factory=SearchSpace)
    tuning_draws: int = 4
    """Tuning-stream game draws per family."""
    tuning_seeds: int = 2
    """Seeds per tuning draw in rung 1 (rung 0 plays one)."""
    eta: int = 4
    """Successive halving keeps the best 1/η of each baseline's candidates after rung 0."""
    budget_game_steps: int = 20_000_000
    """The tuning budget of every baseline in one cell at 1× (× the multiple at k×), in game-steps."""
    test_draws: int = 8
    """Sealed test draws per family."""
    test_seeds: int = 3
    """Seeds per test draw (test_draws × test_seeds games per cell)."""
    test_key: str | None = None
    """The sealed stream's 128-bit key (32 hex digits; ``None``: :data:`agents.learned.family.DEFAULT_TEST_KEY`)."""
    bootstrap_reps: int = 2000
    bootstrap_unit: str = "draw"
    """What the CIs' bootstrap resamples: ``"draw"`` (default since the twenty-first session), the drawn games, each
    with all its seeds, since a draw's seeds share its game and their gaps move together; ``"game"``, every game on its
    own (the cells of K1 to K16 were scored so; it counts a cell's seeds as if they were draws, and its CIs come out
    too narrow where a draw's seeds agree)."""
    device: str = "cpu"
    """Where every tensor of a cell lives: the games, the baselines' players, the learned rules and the best-run
    floors (``"cuda"`` on a GPU; a floor's least-squares solves run on the CPU in float64, as the rank-revealing
    driver they use is CPU-only)."""

    def __post_init__(self) -> None:
        from agents.learned.family import FAMILIES, check_key
        from mtg_env.envs.config import check_device

        check_device(self.device)  # a CUDA device on a machine without one is refused here, naming it

        for f in self.families:
            if f not in FAMILIES:
                raise ValueError(f"families: no game family {f!r}; available: {list(FAMILIES)}")
        if not self.baselines:
            raise ValueError(f"baselines is empty: name at least one of {list(BASELINE_CONTROLS)} (or leave it out)")
        for b in self.baselines:
            if b not in BASELINE_CONTROLS:
                raise ValueError(f"baselines: {b!r} is not tunable here; available: {list(BASELINE_CONTROLS)}")
        self._check_consensus()
        self._check_entrants()
        for name in ("train_horizon", "tuning_draws", "tuning_seeds", "eta", "test_draws", "test_seeds",
                     "bootstrap_reps", "budget_game_steps"):  # fmt: skip
            int_arg(name, getattr(self, name), low=1)
        if self.test_key is not None:
            check_key(self.test_key)
        if self.bootstrap_unit not in BOOTSTRAP_UNITS:
            raise ValueError(
                f"bootstrap_unit must be one of {list(BOOTSTRAP_UNITS)} (what the CIs resample: a drawn game with its "
                f"seeds, or each game), got {self.bootstrap_unit!r}"
            )

    def _check_consensus(self) -> None:
        from mtg_env.consensus import RULE_TABLE

        if isinstance(self.consensus, str) or not self.consensus:
            raise ValueError(f"consensus must be a non-empty list of rule names, got {self.consensus!r}")
        for c in self.consensus:
            if c not in RULE_TABLE:
                raise ValueError(f"consensus: no consensus rule {c!r}; available: {list(RULE_TABLE)}")
        if len(set(self.consensus)) < len(self.consensus):
            raise ValueError(f"consensus: {list(self.consensus)} names a rule twice")

    def _check_entrants(self) -> None:
        """Every weighted entrant's file exists and its label is unique (among the shipped entrants' agents and the
        baselines too: they share the results' tables)."""
        from agents.learned.family import FAMILIES

        labels = {agent: "a shipped-weights entrant" for agent, _ in self.entrants}
        labels.update({b: "a baseline" for b in self.baselines})
        for e in self.weighted_entrants:
            if e.name in labels:
                raise ValueError(
                    f"entrants: the label {e.name!r} (agent {e.agent}, weights {e.weights}) is already "
                    f"{labels[e.name]}'s; give this entrant another name = '...'"
                )
            labels[e.name] = f"the entrant with weights {e.weights}"
            if not Path(e.weights).is_file():
                raise ValueError(f"entrants: {e.name!r}: no rule file {e.weights}; {_make_one(e.agent)}")
            for f in e.families:
                if f not in FAMILIES:
                    raise ValueError(f"entrants: {e.name!r}: no game family {f!r}; available: {list(FAMILIES)}")

    def players(self, family: str) -> list[tuple[str, str, str | None]]:
        """``(label, agent, weights file or None: the shipped weights)`` of every entrant that plays ``family``."""
        rows: list[tuple[str, str, str | None]] = [(a, a, None) for a, f in self.entrants if f == family]
        return rows + [(e.name, e.agent, e.weights) for e in self.weighted_entrants if family in e.families]

    def horizon(self, family: str, multiple: int) -> int:
        """The horizon of ``family``'s cell at ``multiple`` × its meta-training horizon."""
        return dict(self.train_horizons).get(family, self.train_horizon) * multiple

    def tuning_cost(self, baseline: str, multiple: int, family: str | None = None) -> int:
        """Game-steps successive halving spends on ``baseline`` at one family (default: the longest) and horizon."""
        count = len(self.search.candidates(baseline))
        families = self.families if family is None else (family,)
        horizon = max(self.horizon(f, multiple) for f in families)
        return (count + math.ceil(count / self.eta) * self.tuning_seeds) * self.tuning_draws * horizon

    def check(self) -> None:
        """Refuse a config whose search overruns its declared budget (naming the baseline and the sums)."""
        for b in self.baselines:
            for k in self.multiples:
                cost, cap = self.tuning_cost(b, k), self.budget_game_steps * k
                if cost > cap:
                    raise ValueError(
                        f"budget_game_steps: tuning {b} at {k}× costs {cost:,} game-steps, over the budget "
                        f"{cap:,} (= {self.budget_game_steps:,} × {k}); shrink [search] or [tuning], or raise it"
                    )

    def quick(self) -> SealedConfig:
        """``--quick``: the first family at 1× half the horizon under the first consensus rule, 2 tuning draws, 1 tuning
        seed, 8 test games."""
        return replace(self, name=f"{self.name}_quick", families=self.families[:1], multiples=(1,),
                       consensus=self.consensus[:1],
                       train_horizon=max(1, self.train_horizon // 2), tuning_draws=2, tuning_seeds=1, test_draws=4,
                       test_seeds=2, bootstrap_reps=min(self.bootstrap_reps, 1000))  # fmt: skip


_TOP = {"name", "protocol", "families", "entrants", "baselines", "multiples", "train_horizon", "train_horizons",
        "search", "tuning", "test", "bootstrap_reps", "bootstrap_unit", "device", "consensus"}  # fmt: skip


def sealed_config_from_dict(data: dict[str, Any]) -> SealedConfig:
    """A :class:`SealedConfig` from a parsed file with ``protocol = "sealed"``."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ValueError(f"unknown sealed-protocol key(s) {unknown}; known: {sorted(_TOP)}")
    search = dict(data.get("search", {}))
    for key in ("momentum", "beta1", "beta2", "trunk_ratios", "schedules"):
        if key in search:
            search[key] = tuple(search[key])
    tuning, test = dict(data.get("tuning", {})), dict(data.get("test", {}))
    unknown = sorted(set(tuning) - {"draws", "seeds", "eta", "budget_game_steps"}) + sorted(
        set(test) - {"draws", "seeds", "key"}
    )
    if unknown:
        raise ValueError(f"unknown [tuning]/[test] key(s) {unknown}")
    entrants, weighted = _entrants(data)
    try:
        space = SearchSpace(**search)
    except TypeError as err:
        raise TypeError(f"[search] {err}") from None
    return SealedConfig(
        name=data.get("name", "sealed"),
        families=tuple(data.get("families", ())),
        entrants=tuple(entrants),
        weighted_entrants=tuple(weighted),
        consensus=_names("consensus", data.get("consensus", ["sum"])),
        baselines=tuple(data.get("baselines", BASELINE_CONTROLS)),
        multiples=tuple(data.get("multiples", (1, 2, 5))),
        train_horizon=data.get("train_horizon", 100),
        train_horizons=tuple(sorted(dict(data.get("train_horizons", {})).items())),
        search=space,
        tuning_draws=tuning.get("draws", 4),
        tuning_seeds=tuning.get("seeds", 2),
        eta=tuning.get("eta", 4),
        budget_game_steps=tuning.get("budget_game_steps", 20_000_000),
        test_draws=test.get("draws", 8),
        test_seeds=test.get("seeds", 3),
        test_key=test.get("key"),
        bootstrap_reps=data.get("bootstrap_reps", 2000),
        bootstrap_unit=data.get("bootstrap_unit", "draw"),
        device=data.get("device", "cpu"),
    )


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f'{key} must be a list of names such as ["sum", "mean"], got {value!r}')
    return tuple(value)


def _entrants(data: dict[str, Any]) -> tuple[list[tuple[str, str]], list[Entrant]]:
    """The ``[[entrants]]`` tables: (agent, family) pairs with the shipped weights, and entrants with ``weights``."""
    pairs: list[tuple[str, str]] = []
    weighted: list[Entrant] = []
    for i, e in enumerate(data.get("entrants", [])):
        if not isinstance(e, dict) or not isinstance(e.get("agent"), str):
            raise TypeError(f"entrants[{i}] must be a table with agent = 'learned_mlp' (and families = [...])")
        unknown = sorted(set(e) - {"agent", "families", "weights", "name"})
        if unknown:
            raise ValueError(f"entrants[{i}]: unknown key(s) {unknown}; known: agent, families, weights, name")
        families = tuple(e.get("families", data.get("families", [])))
        if "weights" not in e:
            if "name" in e:
                raise ValueError(f"entrants[{i}]: name applies to an entrant with weights = ...; without, the label "
                                 f"is the agent, {e['agent']!r}")  # fmt: skip
            pairs += [(e["agent"], f) for f in families]
            continue
        if not isinstance(e["weights"], str) or not e["weights"]:
            raise TypeError(f"entrants[{i}]: weights must be a shipped tag or a rule file's path, got {e['weights']!r}")
        path, label = _weights_path(e["agent"], e["weights"], f"entrants[{i}] ({e['agent']})")
        name = e.get("name", label)
        if not isinstance(name, str) or not name:
            raise TypeError(f"entrants[{i}]: name must be a non-empty string, got {name!r}")
        weighted.append(Entrant(name=name, agent=e["agent"], weights=str(path), families=families))
    return pairs, weighted


def is_sealed(data: Any) -> bool:
    """Whether a parsed bench file is a sealed-protocol config (``protocol = "sealed"``)."""
    return isinstance(data, dict) and data.get("protocol") == "sealed"
