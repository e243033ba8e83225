"""Synthetic multi-task regression with a task-relatedness knob (Assumption 8: heterogeneous tasks).

Teacher: x ~ N(0, I_d); task m's target is y = w_mᵀx + σ_m ε with w_m = √ρ w_0 + √(1−ρ) u_m, where w_0
and the u_m are drawn once from N(0, I/d). ρ = ``relatedness``: 0 gives unrelated tasks, 1 identical
ones. Tasks have unequal training-set sizes and noise levels.

Student: a shared trunk f(x; Ψ) ∈ R^k (``linear``: Wx + c; ``mlp``: W₂ relu(W₁x + c₁) + c₂) and a linear
head per task, ŷ_m = v_mᵀ f + a_m, with MSE loss. A bottleneck k < M makes unrelated tasks compete for
the trunk. Each head's best response to a trunk is an exact least-squares solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from mtg_env._args import choice_arg, int_arg, real_arg
from mtg_env.rng import STREAM_BATCH, STREAM_TARGET_NOISE, GameRNG, check_seed
from mtg_env.suites.base import (
    Split,
    TaskSpec,
    TaskSuite,
    fan_in_bounds,
    least_squares,
    uniform_params,
    unpack,
)

# (X [M, B, d], y [M, B], w [M, B]): per-task inputs, targets and per-sample weights summing to 1.
Batch = tuple[Tensor, Tensor, Tensor]


class RegressionSuite(TaskSuite):
    """Multi-task linear-teacher regression with a linear or MLP trunk.

    Args:
        num_tasks: Number of tasks M.
        input_dim: Input dimension d.
        relatedness: ρ in [0, 1]; 0 = unrelated tasks, 1 = identical tasks.
        task_sizes: Training-set size of each task (default: 400, 200, 133, ... = 400 // (m + 1)).
        noise: Label-noise standard deviation of each task (default: 0.1 · (m + 1)).
        trunk: ``"linear"`` or ``"mlp"``.
        trunk_width: The trunk's output width k.
        hidden: Hidden width of the ``mlp`` trunk.
        batch_size: Samples per task per step, drawn with replacement with the env's generator.
            ``None``: each task's whole training set every step (deterministic).
        test_size: Held-out samples per task.
        data_seed: Seed of the teacher and the data (fixed; the env's seed draws batches and init).
        device: Where tensors live.
        dtype: ``"float32"`` or ``"float64"``.
    """

    name = "regression"
    exact_best_response = True

    def __init__(
        self,
        *,
        num_tasks: int = 3,
        input_dim: int = 8,
        relatedness: float = 0.5,
        task_sizes: Sequence[int] | None = None,
        noise: Sequence[float] | None = None,
        trunk: Literal["linear", "mlp"] = "linear",
        trunk_width: int = 2,
        hidden: int = 32,
        batch_size: int | None = 32,
        test_size: int = 200,
        data_seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
    ):
        super().__init__(device=device, dtype=dtype)
        num_tasks = int_arg("num_tasks", num_tasks, low=1)
        input_dim = int_arg("input_dim", input_dim, low=1)
        trunk_width = int_arg("trunk_width", trunk_width, low=1)
        hidden = int_arg("hidden", hidden, low=1, hint="the mlp trunk's hidden width")
        test_size = int_arg("test_size", test_size, low=1)
        relatedness = real_arg("relatedness", relatedness, 0.0, 1.0, hint="0 = unrelated, 1 = identical")
        choice_arg("trunk", trunk, ("linear", "mlp"))
        data_seed = check_seed(data_seed, "data_seed")
        if batch_size is not None:
            int_arg("batch_size", batch_size, low=1, hint="samples per task and step, or None for all")
        sizes = [400 // (m + 1) for m in range(num_tasks)] if task_sizes is None else _listed("task_sizes", task_sizes)
        sigmas = [0.1 * (m + 1) for m in range(num_tasks)] if noise is None else _listed("noise", noise)
        if len(sizes) != num_tasks:
            raise ValueError(f"task_sizes must list {num_tasks} sizes (one per task), got {len(sizes)}")
        sizes = [int_arg(f"task_sizes[{m}]", v, low=1) for m, v in enumerate(sizes)]
        if len(sigmas) != num_tasks:
            raise ValueError(f"noise must list {num_tasks} standard deviations (one per task), got {len(sigmas)}")
        sigmas = [real_arg(f"noise[{m}]", v, low=0.0, hint="a standard deviation") for m, v in enumerate(sigmas)]
        self.batch_size = batch_size
        self.kind = trunk
        self.trunk_width = trunk_width
        self._config = {
            "suite": self.name,
            "num_tasks": num_tasks,
            "input_dim": input_dim,
            "relatedness": relatedness,
            "task_sizes": sizes,
            "noise": sigmas,
            "trunk": trunk,
            "trunk_width": trunk_width,
            "hidden": hidden if trunk == "mlp" else None,
            "batch_size": batch_size,
            "test_size": test_size,
            "data_seed": data_seed,
        }

        g = torch.Generator().manual_seed(data_seed)
        d = input_dim
        w0 = torch.randn(d, generator=g, dtype=torch.float64) / d**0.5
        u = torch.randn(num_tasks, d, generator=g, dtype=torch.float64) / d**0.5
        self.teacher = relatedness**0.5 * w0 + (1 - relatedness) ** 0.5 * u  # [M, d]
        n_max = max(sizes)
        x = torch.randn(num_tasks, n_max + test_size, d, generator=g, dtype=torch.float64)
        eps = torch.randn(num_tasks, n_max + test_size, generator=g, dtype=torch.float64)
        y = torch.einsum("mnd,md->mn", x, self.teacher) + torch.tensor(sigmas, dtype=torch.float64)[:, None] * eps
        counts = torch.tensor(sizes, dtype=torch.float64)
        # Train samples of task m are the first n_m of its n_max slots; the weights mask the rest.
        mask = (torch.arange(n_max)[None, :] < counts[:, None]).to(torch.float64)

        def put(t: Tensor) -> Tensor:
            return t.to(self.device, self.dtype)

        self._train: Batch = (put(x[:, :n_max]), put(y[:, :n_max]), put(mask / counts[:, None]))
        self._test: Batch = (
            put(x[:, n_max:]),
            put(y[:, n_max:]),
            put(torch.full((num_tasks, test_size), 1.0 / test_size, dtype=torch.float64)),
        )
        self._counts_int = counts.long().to(self.device)
        # Row of sample 0 of task m in the flattened [M · n_max] table, for each of a batch's M · batch_size draws.
        self._row_offsets = (torch.arange(num_tasks) * n_max).repeat_interleave(batch_size or 1).to(self.device)
        # Each of a batch's M · batch_size draws is uniform below its task's n_m (fixed: not rebuilt every step).
        self._draw_highs = self._counts_int.repeat_interleave(batch_size or 1)
        per_batch = batch_size or 1
        self._batch_weights = put(torch.full((num_tasks, per_batch), 1.0 / per_batch, dtype=torch.float64))

        if trunk == "linear":
            self._trunk_shapes: list[tuple[int, ...]] = [(trunk_width, d), (trunk_width,)]
        else:
            self._trunk_shapes = [(hidden, d), (hidden,), (trunk_width, hidden), (trunk_width,)]
        self.trunk_size = sum(int(torch.Size(s).numel()) for s in self._trunk_shapes)
        self._trunk_bounds = fan_in_bounds(self._trunk_shapes)
        self.tasks = tuple(
            TaskSpec(name=f"reg_{m}", kind="regression", head_size=trunk_width + 1) for m in range(num_tasks)
        )

    # ------------------------------------------------------------------------------ the game
    jacobian = "replicas"  # every task has its own inputs: a trunk replica per task costs no extra forward

    @property
    def loss_lower_bounds(self) -> tuple[float, ...]:
        """0 for every task: a weighted squared error, reached only by an exact fit (in the limit, or by rounding)."""
        return (0.0,) * self.num_tasks

    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        bounds = torch.cat(
            [self._trunk_bounds, torch.full((self.head_offsets[-1],), 1.0 / self.trunk_width**0.5, dtype=torch.float64)]
        )
        params = uniform_params(rng, bounds, self.dtype).to(self.device)
        return params[:, self.trunk_size :], params[:, : self.trunk_size]

    def sample_batch(self, rng: GameRNG) -> Batch:
        if self.batch_size is None:
            return self._train
        m, bsz = self.num_tasks, rng.seeds.shape[0]
        # Uniform over each task's own n_m samples, as flat rows of the [M · n_max] training table.
        rows = rng.integers(STREAM_BATCH, m * self.batch_size, self._draw_highs) + self._row_offsets
        x, y, _ = self._train
        flat = rows.view(-1)
        d = x.shape[-1]
        xb = x.reshape(-1, d).index_select(0, flat).view(bsz, m, self.batch_size, d)
        yb = y.reshape(-1).index_select(0, flat).view(bsz, m, self.batch_size)
        return xb, yb, self._batch_weights

    supports_label_noise = True

    def perturb_labels(self, batch: Batch, rng: GameRNG, levels: Sequence[float]) -> Batch:
        """Targets plus levels[m]·N(0, 1) per sample of task m (a whole shared split becomes one copy per game)."""
        x, y, w = batch
        bsz = rng.seeds.shape[0]
        shape = (bsz, *y.shape[-2:])
        z = rng.normal(STREAM_TARGET_NOISE, shape[1] * shape[2], self.dtype).to(self.device).view(shape)
        scale = torch.tensor(levels, dtype=self.dtype, device=self.device).view(1, -1, 1)
        return x, y + scale * z, w

    def train_batch(self) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._test

    def features(self, trunk: Tensor, x: Tensor) -> Tensor:
        """Trunk features f(x; Ψ) for inputs ``x [..., N, d]`` and a trunk ``[..., n]`` (leading dims broadcast)."""
        params = unpack(trunk, self._trunk_shapes)
        h = x @ params[0].transpose(-1, -2) + params[1].unsqueeze(-2)
        if self.kind == "mlp":
            h = torch.relu(h) @ params[2].transpose(-1, -2) + params[3].unsqueeze(-2)
        return h

    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: Batch) -> Tensor:
        x, y, w = batch  # x [B, M, N, d] (or [M, N, d] for a whole split)
        bsz = heads.shape[0]
        if trunk.dim() == 2:
            trunk = trunk.unsqueeze(1)  # [B, 1, n]: one trunk for every task
        f = self.features(trunk, x)  # [B, M, N, k]
        v = heads.view(bsz, self.num_tasks, self.trunk_width + 1)
        pred = (f @ v[..., :-1].unsqueeze(-1)).squeeze(-1) + v[..., -1:]
        return (w * (pred - y).square()).sum(-1)

    def predict(self, heads: Tensor, trunk: Tensor, x: Tensor) -> Tensor:
        """Predictions ``[M, N]`` of one game for per-task inputs ``x [M, N, d]``."""
        f = self.features(trunk, x)
        v = heads.view(self.num_tasks, self.trunk_width + 1)
        return (f @ v[:, :-1].unsqueeze(-1)).squeeze(-1) + v[:, -1:]

    @torch.no_grad()
    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        mse = self.losses(heads, trunk, self._test).tolist()
        return {t.name: {"test_mse": v} for t, v in zip(self.tasks, mse, strict=True)}

    # ---------------------------------------------------------------------- best responses
    @torch.no_grad()
    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Each head's exact least-squares fit to its task's whole ``split`` set on frozen features."""
        return self._best64(trunk.detach().to(torch.float64), split).to(heads.dtype)

    @torch.no_grad()
    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Exact head Nash gap per task on its ``split`` set, in float64."""
        batch = tuple(t.to(torch.float64) for t in self.batch_for(split))
        h64, t64 = heads.detach().to(torch.float64), trunk.detach().to(torch.float64)
        gaps = self.losses(h64, t64, batch) - self.losses(self._best64(t64, split), t64, batch)  # type: ignore[arg-type]
        return gaps.clamp_min(0.0)  # exact up to round-off

    def _best64(self, trunk64: Tensor, split: Split) -> Tensor:
        x, y, w = (t.to(torch.float64) for t in self.batch_for(split))
        f = self.features(trunk64, x)
        design = torch.cat([f, torch.ones_like(f[..., :1])], dim=-1)  # [M, n, k + 1]
        sw = w.sqrt().unsqueeze(-1)  # weighted least squares: padding samples get weight 0
        return least_squares(sw * design, sw * y.unsqueeze(-1)).reshape(-1)

    def describe(self) -> dict[str, Any]:
        return dict(self._config)


def _listed(name: str, values: Any) -> list[Any]:
    """A sequence option (a list, tuple or 1-d array) as a list, or a ``TypeError`` naming it (a string or a bare
    number is not a list)."""
    if hasattr(values, "tolist") and getattr(values, "ndim", 0) == 1:  # a numpy array or torch tensor
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list with one entry per task, got {type(values).__name__} {values!r}")
    return list(values)
