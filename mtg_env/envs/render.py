"""Rendering one game: a text table of the tasks (``ansi``, ``human``) or the loss curves as an image
(``rgb_array``, with matplotlib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mtg_env.consensus import rule_name
from mtg_env.envs.infos import cheap_gaps

if TYPE_CHECKING:
    from mtg_env.envs.parallel import MultiTaskGameEnv


def render_text(env: MultiTaskGameEnv) -> str:
    """A table of every task: its loss, its head and trunk gradient norms and, where cheap, its Nash gap."""
    losses = env.engine_state.losses[0].tolist()
    gaps = cheap_gaps(env)
    head_norm = env._feats[:, 2].tolist()
    trunk_norm = env.engine_state.jacobian[0].norm(dim=1).tolist()
    lines = [
        f"{env.metadata['name']}  t={env._t}/{env.config.max_cycles}  consensus={rule_name(env.consensus)}",
        f"{'agent':<9}{'task':<14}{'loss':>12}{'|g_head|':>12}{'|g_trunk|':>12}"
        + (f"{'nash_gap':>12}" if gaps else ""),
    ]
    for m, agent in enumerate(env.possible_agents):
        head = float(np.expm1(head_norm[m]))  # undo symlog (norms are >= 0)
        row = f"{agent:<9}{env.suite.tasks[m].name:<14}{losses[m]:>12.5g}{head:>12.4g}{trunk_norm[m]:>12.4g}"
        if gaps:
            row += f"{gaps[m]:>12.4g}"
        lines.append(row)
    return "\n".join(lines)


def render_rgb(env: MultiTaskGameEnv) -> np.ndarray:
    """The episode's loss curves, one per task, as an ``[H, W, 3]`` uint8 image."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("rgb_array rendering needs matplotlib: pip install matplotlib") from err
    fig = Figure(figsize=(6.4, 4.0), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    history = np.asarray(env._loss_history, dtype=np.float64)
    for m, task in enumerate(env.suite.tasks):
        ax.plot(history[:, m], label=task.name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{env.metadata['name']} ({rule_name(env.consensus)} consensus)")
    ax.legend(loc="upper right", fontsize="small")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
