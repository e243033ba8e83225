"""The standard two-objective toy of CAGrad, Nash-MTL and FAMO, as a game with empty heads.

The shared trunk is the point x = (x1, x2); both agents have empty heads (``head_size == 0``), so the game
is pure consensus: each agent proposes a trunk step and the rule decides. With LOWER = 5e-6,
c1 = max(tanh(x2/2), 0) and c2 = max(tanh(−x2/2), 0):

    f1 = c1·(log max(|0.5(−x1 − 7) − tanh(−x2)|, LOWER) + 6) + c2·(((−x1 + 7)² + 0.1(−x2 − 8)²)/10 − 20)
    f2 = c1·(log max(|0.5(−x1 + 3) + tanh(−x2) + 2|, LOWER) + 6) + c2·(((−x1 − 7)² + 0.1(−x2 − 8)²)/10 − 20)

The Pareto set lies on x2 ≈ −8.3552, x1 ∈ [−7, 7]. With ``scale = 1`` this is CAGrad's toy exactly (Liu et al.
2021, ``toy.py``); Nash-MTL (Navon et al. 2022) and FAMO (Liu et al. 2023) use the same function with f1
multiplied by ``scale = 0.1`` (their ``Toy(scale=0.1)``), which leaves the Pareto set where it is (a positive
factor on one objective changes no dominance) but unbalances the two gradients by 10×.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtg_env._args import int_arg, is_int, real_arg
from mtg_env.rng import STREAM_INIT, GameRNG
from mtg_env.suites.base import Split, TaskSpec, TaskSuite

LOWER = 5e-6
#: The standard starting points of the toy's figures (Nash-MTL's and FAMO's five).
STANDARD_STARTS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
#: CAGrad's three starting points (its ``toy.py``), the second of which is not among the five.
CAGRAD_STARTS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
#: The named sets of starting points: ``"standard"`` (Nash-MTL, FAMO) and ``"cagrad"``.
START_SETS: dict[str, tuple[tuple[float, float], ...]] = {"standard": STANDARD_STARTS, "cagrad": CAGRAD_STARTS}
#: x2 of the Pareto set, and its x1 range.
PARETO_X2 = -8.3552
PARETO_X1 = (-7.0, 7.0)


def toy_losses(x: Tensor, scale: float = 1.0) -> Tensor:
    """[scale·f1, f2] at the point ``x = (x1, x2)``; batched: ``x [..., 2]`` gives ``[..., 2]``.

    Args:
        x: The point(s).
        scale: The factor on f1: 1.0 is CAGrad's toy, 0.1 Nash-MTL's and FAMO's.
    """
    if x.dim() == 1:
        return toy_losses(x.unsqueeze(0), scale)[0]
    x1, x2 = x[..., 0], x[..., 1]
    c1 = torch.clamp(torch.tanh(x2 / 2), min=0.0)
    c2 = torch.clamp(torch.tanh(-x2 / 2), min=0.0)
    lower = torch.tensor(LOWER, dtype=x.dtype, device=x.device)
    valley = 0.1 * (-x2 - 8) ** 2
    f1 = c1 * (torch.log(torch.maximum((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), lower)) + 6) + c2 * (
        ((-x1 + 7) ** 2 + valley) / 10 - 20
    )
    f2 = c1 * (torch.log(torch.maximum((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), lower)) + 6) + c2 * (
        ((-x1 - 7) ** 2 + valley) / 10 - 20
    )
    return torch.stack([f1 * scale, f2], dim=-1)


class Toy2DSuite(TaskSuite):
    """Two objectives on a shared 2-D point; empty heads.

    Args:
        start: Starting point: an index into :data:`STANDARD_STARTS`, an explicit ``(x1, x2)``, or
            ``None`` for a point drawn uniformly from [−10, 10]² with the env's generator.
        scale: The factor on f1 (a positive number): 1.0 (default) is CAGrad's toy, 0.1 Nash-MTL's and FAMO's.
        device: Where tensors live.
        dtype: ``"float32"`` or ``"float64"``.
    """

    name = "toy2d"
    exact_best_response = True  # empty heads: the best response is the (empty) head itself
    cheap_nash_gap = True

    def __init__(
        self,
        *,
        start: int | Sequence[float] | None = None,
        scale: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
    ):
        super().__init__(device=device, dtype=dtype)
        if is_int(start):
            index = int_arg("start", start, 0, len(STANDARD_STARTS) - 1, hint="an index into STANDARD_STARTS")
            point: tuple[float, float] | None = STANDARD_STARTS[index]
        elif start is None:
            point = None
        else:
            if isinstance(start, (str, bytes)) or not isinstance(start, Sequence) or len(start) != 2:
                raise ValueError(f"start must be an index, a point (x1, x2) or None, got {start!r}")
            point = (real_arg("start[0]", start[0]), real_arg("start[1]", start[1]))
        scale = real_arg("scale", scale, low=0.0, low_open=True, hint="the factor on f1, e.g. 0.1 for Nash-MTL")
        self.start = point
        self.scale = float(scale)
        self._start_arg = start
        self.trunk_size = 2
        self.tasks = (TaskSpec("f1", "regression", 0), TaskSpec("f2", "regression", 0))

    jacobian = "replicas"

    @property
    def loss_lower_bounds(self) -> tuple[float, ...]:
        """−20·scale and −20: where c2 > 0 each objective is c2·(a square / 10 − 20) > −20, where c1 > 0 it is
        c1·(log max(|·|, 5e-6) + 6) > −6.2, and one of c1, c2 is 0 (the infimum of f2 is about −19.987)."""
        return (-20.0 * self.scale, -20.0)

    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        bsz = rng.seeds.shape[0]
        if self.start is None:
            x = rng.uniform(STREAM_INIT, 2) * 20 - 10
        else:
            x = torch.tensor(self.start, dtype=torch.float64, device=self.device).expand(bsz, 2)
        heads = torch.zeros(bsz, 0, dtype=self.dtype, device=self.device)
        return heads, x.to(self.device, self.dtype)

    def sample_batch(self, rng: GameRNG) -> None:
        return None  # deterministic objectives

    def train_batch(self) -> None:
        return None

    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: Any = None) -> Tensor:
        if trunk.dim() == 2:
            return toy_losses(trunk, self.scale)
        both = toy_losses(trunk, self.scale)  # [B, 2 replicas, 2 objectives]: task m reads objective m at replica m
        return torch.diagonal(both, dim1=1, dim2=2)

    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        return {t.name: {} for t in self.tasks}  # no data: nothing held out

    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        return heads.detach()

    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        return torch.zeros(2, dtype=torch.float64, device=trunk.device)

    def describe(self) -> dict[str, Any]:
        return {"suite": self.name, "start": self._start_arg, "scale": self.scale}


def distance_to_pareto_set(x: Tensor) -> float:
    """Euclidean distance from ``x`` to the segment {x2 = −8.3552, x1 ∈ [−7, 7]}."""
    x1 = min(max(float(x[0]), PARETO_X1[0]), PARETO_X1[1])
    return float(torch.hypot(torch.tensor(float(x[0]) - x1), torch.tensor(float(x[1]) - PARETO_X2)))
