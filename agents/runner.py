"""Play an episode: the env plus one policy per agent, recorded as a :class:`History`."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.adaptive import AdamAgent, RMSpropAgent
from agents.base import Policy
from agents.gradient import GradientAgent
from agents.learned.checkpoint import LEARNED, learned_agent
from agents.momentum import MomentumAgent
from mtg_env._io import dump_json, load_json, write_atomic
from mtg_env.envs.parallel import MultiTaskGameEnv

#: Players by name, for :func:`make_agents` and the ``mtg-env`` command: the baselines, and the learned agents
#: (:mod:`agents.learned`; their factories take ``suite=`` to pick shipped weights, or ``weights=PATH``).
AGENTS: dict[str, Callable[..., Policy]] = {
    "gradient": GradientAgent,
    "adam": AdamAgent,
    "rmsprop": RMSpropAgent,
    "momentum": MomentumAgent,
    **{name: functools.partial(learned_agent, name) for name in LEARNED},
}


def make_agents(name: str, env: MultiTaskGameEnv, **kwargs: Any) -> dict[str, Policy]:
    """One fresh player per agent of ``env`` (each with its own state), built from ``AGENTS[name]``.

    A learned agent loads its shipped weights for ``env``'s suite unless ``weights=PATH`` is given; weights
    meta-trained on another suite are refused unless ``allow_other_suite=True``.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; available: {sorted(AGENTS)}")
    if name in LEARNED:
        kwargs = {"suite": env.suite.name, **kwargs}
    return {agent: AGENTS[name](**kwargs) for agent in env.possible_agents}


@dataclass
class History:
    """What happened in an episode. Row 0 of ``losses`` and ``nash_gap`` is the state after reset."""

    agents: list[str]
    tasks: list[str]
    losses: np.ndarray
    """``[T + 1, M]`` per-step batch loss of each agent."""
    rewards: np.ndarray
    """``[T, M]`` per-step reward of each agent."""
    nash_gap: np.ndarray | None
    """``[T + 1, M]`` per-step head Nash gap where the env reports it (quadratic), else ``None``."""
    terminated: bool
    """Whether the episode ended by divergence (rather than truncation)."""
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per agent, at the end: train loss, held-out metric, Nash gap (see :func:`run_episode`)."""
    clipped_steps: dict[str, int] = field(default_factory=dict)
    """Per agent, the steps whose intended action was clipped into the action space (its rule not played as
    written); players that do not count clipping are left out."""

    @property
    def steps(self) -> int:
        return int(self.rewards.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The history as plain Python data (arrays as nested lists of floats, NaN and ±inf kept)."""
        return {
            "agents": self.agents,
            "tasks": self.tasks,
            "steps": self.steps,
            "terminated": self.terminated,
            "losses": self.losses.tolist(),
            "rewards": self.rewards.tolist(),
            "nash_gap": None if self.nash_gap is None else self.nash_gap.tolist(),
            "final": self.final,
            "clipped_steps": self.clipped_steps,
        }

    def save(self, path: str | Path) -> None:
        """Write the history as strict JSON, atomically (an interrupted save leaves the old file or none). NaN,
        ``inf`` and ``-inf`` are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (strict JSON
        has no such numbers), so :meth:`load` tells a diverged loss (inf) from an undefined metric (NaN)."""
        dump_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a history written by :meth:`save`."""
        data = load_json(path)
        missing = sorted({"agents", "tasks", "losses", "rewards", "nash_gap", "terminated"} - set(data))
        if missing:
            raise ValueError(f"{path} is not a saved History (it lacks {missing})")
        m = len(data["agents"])
        return cls(
            agents=list(data["agents"]),
            tasks=list(data["tasks"]),
            losses=np.asarray(data["losses"], dtype=np.float64).reshape(-1, m),
            rewards=np.asarray(data["rewards"], dtype=np.float64).reshape(-1, m),
            nash_gap=None if data["nash_gap"] is None else np.asarray(data["nash_gap"], dtype=np.float64),
            terminated=bool(data["terminated"]),
            final=data.get("final", {}),
            clipped_steps=data.get("clipped_steps", {}),
        )

    def plot(self, out_dir: str | Path, title: str | None = None) -> list[Path]:
        """Write ``losses.png`` (and ``nash_gap.png`` when recorded) in ``out_dir``, each titled ``title`` (the
        run, e.g. env, agents, rule and seed) when given; return the paths."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        curves = [("losses.png", self.losses, "batch loss ℓ_m", False)]
        if self.nash_gap is not None:
            curves.append(("nash_gap.png", self.nash_gap, "head Nash gap", True))
        paths = []
        for name, data, label, log in curves:
            fig = Figure(figsize=(7, 4.2), dpi=100)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            for m, task in enumerate(self.tasks):
                ax.plot(np.arange(len(data)), data[:, m], label=task)
            if log and (data > 0).any():  # a gap that is 0 throughout (empty heads) stays on a linear axis
                ax.set_yscale("log")
            ax.set_xlabel("step t")
            ax.set_ylabel(label)
            if title:
                ax.set_title(title, fontsize="medium")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            write_atomic(out / name, buffer.getvalue())
            paths.append(out / name)
        return paths


def run_episode(
    env: MultiTaskGameEnv,
    policies: Mapping[str, Policy],
    *,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
    evaluate: bool = True,
) -> History:
    """Play one episode of ``env`` with one policy per agent.

    Args:
        env: The parallel env.
        policies: ``{agent: policy}`` for every agent of the env.
        seed: Passed to ``env.reset``.
        options: Passed to ``env.reset``.
        progress: Show a progress bar (tqdm) on stderr.
        evaluate: At the end, fill ``History.final`` with ``env.evaluate()`` and the Nash gap.
    """
    missing = [a for a in env.possible_agents if a not in policies]
    if missing:
        raise ValueError(f"no policy for agent(s) {missing}")
    observations, infos = env.reset(seed=seed, options=options)
    for agent in env.agents:
        policies[agent].reset(observations[agent], infos[agent], env.action_space(agent))
    agents = list(env.possible_agents)
    losses = [[infos[a]["loss"] for a in agents]]
    has_gap = all("nash_gap" in infos[a] for a in agents)
    gaps = [[infos[a]["nash_gap"] for a in agents]] if has_gap else None
    rewards = []
    terminated = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=env.max_cycles, desc=env.metadata["name"], unit="step")
    while env.agents:
        actions = {a: policies[a].act(observations[a], infos[a]) for a in env.agents}
        observations, rew, terms, _, infos = env.step(actions)
        rewards.append([rew[a] for a in agents])
        losses.append([infos[a]["loss"] for a in agents])
        if gaps is not None:
            gaps.append([infos[a]["nash_gap"] for a in agents])
        terminated = any(terms.values())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-1]):.4g}", refresh=False)
    if bar is not None:
        bar.close()
    final: dict[str, dict[str, Any]] = {}
    if evaluate and not terminated:
        final = env.evaluate()
        for agent, gap in env.nash_gap().items():
            final[agent]["nash_gap"] = gap
    return History(
        agents=agents,
        tasks=[env.task_name(a) for a in agents],
        losses=np.asarray(losses, dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64).reshape(-1, len(agents)),
        nash_gap=None if gaps is None else np.asarray(gaps, dtype=np.float64),
        terminated=terminated,
        final=final,
        clipped_steps={a: int(p.clipped_steps) for a, p in policies.items() if hasattr(p, "clipped_steps")},
    )
