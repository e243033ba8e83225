"""A match: one unit of the benchmark's work, a pure function of its spec (seeds included).

Three kinds: ``tune`` (a policy's whole tuning budget on one workload), ``eval`` (a policy at its tuned step
size on the held-out seeds) and ``mixed`` (one deviator on task m, the reference policy on the others). A
match's key is the hash of its spec, so a finished match is never played twice (resume) and every backend
returns the same record for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mtg_env.bench.parts import PolicySpec
from mtg_env.tuning import TuningProtocol, Workload, play, tune

MatchKind = Literal["tune", "eval", "mixed"]


@dataclass(frozen=True)
class MatchSpec:
    """Everything a match depends on, as plain data."""

    kind: MatchKind
    workload: Workload
    lineup: tuple[PolicySpec, ...]
    """One policy for every task (self-play), or one per task (a mixed population)."""
    seeds: tuple[int, ...]
    lrs: tuple[float, ...] = ()
    """The step size of each policy of ``lineup`` (``eval``, ``mixed``); empty for ``tune``."""
    protocol: TuningProtocol | None = None
    """``tune`` only."""
    nash_gap: bool = False
    policy: str = ""
    """The label the leaderboard files it under (the policy, or the deviator)."""
    task: int = -1
    """``mixed``: the deviating task."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.protocol is not None:
            d["protocol"] = self.protocol.to_dict()
        return d

    @property
    def key(self) -> str:
        """The hash of the spec: the match's identity in ``results.jsonl``."""
        return hashlib.sha256(canonical(self.to_dict()).encode()).hexdigest()[:20]


def canonical(data: Any) -> str:
    """Strict, canonical JSON (sorted keys, no NaN): equal data give equal bytes."""
    return json.dumps(data, sort_keys=True, allow_nan=False, separators=(",", ":"), default=str)


def run_match(spec: MatchSpec) -> dict[str, Any]:
    """Play a match; returns its record (JSON-ready, no timings: a record depends on the spec alone)."""
    factories = [p.build() for p in spec.lineup]
    record: dict[str, Any] = {"key": spec.key, "kind": spec.kind, "policy": spec.policy, "task": spec.task}
    record["workload"] = spec.workload.name
    if spec.kind == "tune":
        assert spec.protocol is not None and len(factories) == 1
        record["result"] = tune(factories[0], spec.workload, spec.protocol).to_dict()
    else:
        players = factories[0] if len(factories) == 1 else factories
        table: list[Any] = [list(spec.lrs) if len(spec.lrs) > 1 else spec.lrs[0]] * len(spec.seeds)
        games = play(spec.workload, players, table, list(spec.seeds), nash_gap=spec.nash_gap)
        rows = []
        for g in games:
            row = g.to_dict()
            row.pop("task_curves")  # the mean curve is what the figures read; the file stays small
            rows.append(row)
        record["result"] = {"games": rows}
    record["spec"] = spec.to_dict()
    return json.loads(canonical(record))
