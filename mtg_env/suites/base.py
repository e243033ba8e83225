"""The task-suite protocol: what a multi-task game is made of.

A suite declares its tasks (the players), the sizes of the shared trunk Ψ and of each head Θ_m
(flat parameter vectors), how to initialise them, how to draw a batch from the env's generator, and
the per-task losses ℓ_m(Θ_m, Ψ) (Eq. 15-16) as one pure, differentiable torch function. Where it can,
it also gives each head's exact best response on a frozen trunk (Definition 1), which makes the head
Nash gap exact.

All heads live in one flat vector ``heads`` of size ``sum(head_sizes)``; head ``m`` is the contiguous
slice ``heads[head_offsets[m] : head_offsets[m + 1]]``. Keeping one vector lets one backward pass give
every head's gradient at once (task ``m``'s loss does not depend on the other heads).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mtg_env.rng import GameRNG, check_seed

TaskKind = Literal["classification", "regression", "quadratic"]
Split = Literal["train", "eval"]


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite (one player of the game)."""

    name: str
    """Human-readable task name, reported in ``infos[agent]["task"]``."""
    kind: TaskKind
    """``classification`` (test metric: accuracy), ``regression`` (test metric: MSE) or ``quadratic``."""
    head_size: int
    """Number of parameters in the task's head Θ_m (may be 0)."""
    num_classes: int | None = None
    """Number of classes of a classification task, else ``None``."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with its index made explicit (``"cuda"`` → ``cuda:0``, the current CUDA device), as tensors
    report theirs: so a suite's device compares equal to the device of the tensors made on it."""
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return resolved


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float32"``/``"float64"`` (or a torch dtype) to a torch floating dtype."""
    table = {"float32": torch.float32, "float64": torch.float64}
    if isinstance(dtype, torch.dtype):
        if dtype in table.values():
            return dtype
    elif isinstance(dtype, str) and dtype in table:
        return table[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


class TaskSuite(abc.ABC):
    """Base class of every suite. Subclasses set ``name``, ``tasks`` and ``trunk_size``.

    Args:
        device: Where the suite's data and the game's parameters live.
        dtype: Floating dtype of data and parameters.
    """

    name: str
    tasks: tuple[TaskSpec, ...]
    trunk_size: int
    #: Whether :meth:`best_response` is exact (closed form) rather than a converged numerical solve.
    exact_best_response: bool = False

    def __init__(self, *, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32"):
        self.device = resolve_device(device)
        self.dtype = parse_dtype(dtype)

    # ----------------------------------------------------------------------------------- layout
    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def head_sizes(self) -> tuple[int, ...]:
        return tuple(t.head_size for t in self.tasks)

    @property
    def head_offsets(self) -> tuple[int, ...]:
        """``M + 1`` offsets: head ``m`` is ``heads[offsets[m]:offsets[m + 1]]``."""
        offsets = [0]
        for size in self.head_sizes:
            offsets.append(offsets[-1] + size)
        return tuple(offsets)

    def head_task_index(self) -> Tensor:
        """``[H]``: the task that owns each coordinate of the flat heads vector (on the suite's device)."""
        return torch.repeat_interleave(
            torch.arange(self.num_tasks, device=self.device), torch.tensor(self.head_sizes, device=self.device)
        )

    def split_heads(self, heads: Tensor) -> tuple[Tensor, ...]:
        """Views of each task's head inside the flat ``heads`` vector (no copy)."""
        return tuple(heads.split(self.head_sizes))

    # ------------------------------------------------------------------------------ the game
    #: How the engine gets each task's trunk gradient (the rows of the trunk Jacobian):
    #: ``"closed_form"``: :meth:`closed_form` gives losses and gradients directly (its closed form, or the suite's
    #: own autograd: :class:`~mtg_env.suites.module.ModuleSuite` runs one forward and backward per game);
    #: ``"replicas"``: :meth:`batched_losses` takes a trunk ``[B, M, n]`` with one replica per task (task m
    #: uses replica m), so one backward of the summed losses gives every row exactly; cheap where tasks have
    #: their own inputs, as the forward then costs no more than with one trunk;
    #: ``"backward"``: one batched backward over the M basis vectors (``is_grads_batched``); for suites whose
    #: tasks share their inputs (one forward through the trunk serves every task).
    jacobian: Literal["closed_form", "replicas", "backward"] = "backward"

    @abc.abstractmethod
    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        """Initial ``(heads [B, H], trunk [B, n])`` of B games, drawn from ``rng`` (stream
        :data:`~mtg_env.rng.STREAM_INIT`), on the suite's device and dtype."""

    @abc.abstractmethod
    def sample_batch(self, rng: GameRNG) -> Any:
        """The training batch of B games at ``rng``'s step (stream ``STREAM_BATCH``): tensors with a leading
        dimension B, or shared tensors without it; ``None`` for a game without data."""

    @abc.abstractmethod
    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: Any) -> Tensor:
        """Per-task losses ``[B, M]`` of B games: one forward, pure and differentiable.

        Args:
            heads: ``[B, H]``.
            trunk: ``[B, n]``; suites with ``jacobian == "replicas"`` also take ``[B, M, n]`` (task m's loss
                uses replica m).
            batch: from :meth:`sample_batch`, or a whole split (:meth:`train_batch`, shared by every game).
        """

    def closed_form(self, heads: Tensor, trunk: Tensor, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(losses [B, M], head_grads [B, H], jacobian [B, M, n])`` without autograd (``jacobian ==
        "closed_form"`` suites only); differentiable in ``heads`` and ``trunk``."""
        raise NotImplementedError(f"suite {self.name!r} has no closed-form gradients")

    def losses(self, heads: Tensor, trunk: Tensor, batch: Any = None) -> Tensor:
        """Per-task losses ``[ℓ_1, ..., ℓ_M]`` of one game (``heads [H]``, ``trunk [n]``) on ``batch``."""
        return self.batched_losses(heads.unsqueeze(0), trunk.unsqueeze(0), batch)[0]

    def params_for_seed(self, seed: int) -> tuple[Tensor, Tensor]:
        """The initial ``(heads [H], trunk [n])`` of the game with this seed (as the engine draws them)."""
        heads, trunk = self.init_params(GameRNG.from_seeds([check_seed(seed)], self.device))
        return heads[0], trunk[0]

    def batch_for_seed(self, seed: int, step: int = 0, episode: int = 0) -> Any:
        """The training batch that the game with this seed draws at ``step`` of ``episode`` (B = 1)."""
        rng = GameRNG.from_seeds([check_seed(seed)], self.device)
        full = torch.full_like(rng.seeds, 0)
        return self.sample_batch(GameRNG(rng.seeds, full + episode, full + step))

    @abc.abstractmethod
    def train_batch(self) -> Any:
        """The whole training objective as one batch (deterministic; used for exact metrics)."""

    @abc.abstractmethod
    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        """Held-out metrics per task name, e.g. ``{"digit": {"test_accuracy": 0.97}}``."""

    def eval_batch(self) -> Any:
        """The held-out objective as one batch (deterministic); the training objective for a game without
        data."""
        return self.train_batch()

    def batch_for(self, split: Split) -> Any:
        """The whole ``"train"`` or ``"eval"`` objective as one batch."""
        if split == "train":
            return self.train_batch()
        if split == "eval":
            return self.eval_batch()
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")

    #: The suite implements :meth:`best_response_batch` (the regulariser toward the best response needs it).
    batched_best_response: bool = False
    #: The suite implements :meth:`perturb_labels` (label noise, :class:`mtg_env.engine.noise.NoiseSpec`).
    supports_label_noise: bool = False

    def best_response_batch(self, trunk: Tensor) -> Tensor:
        """``[B, H]`` every head's exact best response to each game's trunk ``[B, n]`` (batched, no loop over
        games); only suites with :attr:`batched_best_response`."""
        raise NotImplementedError(f"suite {self.name!r} has no batched exact best response")

    def perturb_labels(self, batch: Any, rng: GameRNG, levels: Sequence[float]) -> Any:
        """The batch of B games with task m's labels or targets perturbed at ``levels[m]``, drawn from the
        label-noise streams of ``rng`` (a new batch; only suites with :attr:`supports_label_noise`)."""
        raise NotImplementedError(f"suite {self.name!r} has no labels or targets to perturb")

    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor | None:
        """Each head's best response to ``trunk`` on the ``split`` objective, as a flat heads vector.

        ``None`` when the suite has no exact (or converged convex) best response.
        """
        return None

    @property
    def stochastic_gradients(self) -> bool:
        """Whether the losses and gradients a step sees are random estimates: a minibatch drawn each step (the suites
        with a ``batch_size`` that is not ``None``), so two steps at the same parameters see different gradients.
        ``False`` (the default, a suite of your own included) where they are exact: the full objective. A suite of
        your own that samples should say so (override this property): a learned rule may read it
        (:class:`~agents.learned.portfolio.PortfolioRule` picks its expert by it)."""
        return getattr(self, "batch_size", None) is not None

    @property
    def loss_lower_bounds(self) -> tuple[float, ...] | None:
        """A lower bound b_m of each task's loss over all parameters and batches (ℓ_m >= b_m), or ``None`` when
        unknown (the default for a suite of your own). A consensus rule that needs every loss above a floor (the
        log-loss and loss-ratio rules of :mod:`mtg_env.consensus.loss_rules`) is refused when the game is built if some
        b_m is below its floor; b_m equal to the floor is accepted (e.g. 0 for a cross-entropy or a squared error,
        reached only in the limit or by rounding: a game whose loss then reaches the floor ends)."""
        return None

    #: Whether :meth:`nash_gaps` is cheap enough to report in ``infos`` at every step.
    cheap_nash_gap: bool = False
    #: Inner L-BFGS steps of the approximate best response of suites without an exact one.
    approximate_best_response_steps: int = 100

    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Head Nash gap per task (Definition 1): ℓ_m(Θ_m, Ψ) − min_Θ ℓ_m(Θ, Ψ) on the ``split`` objective.

        Each term is ≥ 0 and zero exactly when head ``m`` best-responds to the trunk. Suites with a best
        response use it (exact when ``exact_best_response``); others get an approximation, a lower bound:
        ``approximate_best_response_steps`` L-BFGS steps on the heads with the trunk frozen.
        """
        batch = self.batch_for(split)
        best = self.best_response(heads, trunk, split)
        if best is None:
            best = self._approximate_best_response(heads, trunk, batch)
        with torch.no_grad():
            return (self.losses(heads, trunk, batch) - self.losses(best, trunk, batch)).clamp_min(0.0)

    def _approximate_best_response(self, heads: Tensor, trunk: Tensor, batch: Any) -> Tensor:
        if heads.numel() == 0:
            return heads.detach()
        frozen = trunk.detach()
        w = heads.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([w], max_iter=self.approximate_best_response_steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            # The heads are separable (ℓ_m depends on Θ_m only): minimising the sum minimises each.
            loss = self.losses(w, frozen, batch).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return w.detach()

    def equilibrium(self) -> tuple[Tensor, Tensor] | None:
        """The closed-form fixed point ``(heads*, trunk*)`` of the `sum`/`mean` dynamics, if known."""
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description of the suite's configuration."""
        return {"suite": self.name}


def unpack(flat: Tensor, shapes: Sequence[tuple[int, ...]]) -> list[Tensor]:
    """Views of the last dimension of ``flat`` (``[..., n]``) reshaped to ``[..., *shape]`` for each shape
    (no copy; gradients flow to ``flat``)."""
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    lead = flat.shape[:-1]
    return [part.view(*lead, *shape) for part, shape in zip(flat.split(sizes, dim=-1), shapes, strict=True)]


def fan_in_bounds(shapes: Sequence[tuple[int, ...]]) -> Tensor:
    """Per coordinate, PyTorch's default ``nn.Linear`` init bound 1/√fan_in for (weight, bias) pairs.

    ``shapes`` alternates weight ``(out, in)`` and bias ``(out,)``; returns one flat CPU float64 vector, so
    that ``(2u − 1) · bounds`` with u uniform in [0, 1) is U(−1/√fan_in, 1/√fan_in) everywhere.
    """
    parts = []
    for i in range(0, len(shapes), 2):
        out_f, in_f = shapes[i]
        parts.append(torch.full((out_f * in_f + out_f,), 1.0 / in_f**0.5, dtype=torch.float64))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def uniform_params(rng: GameRNG, bounds: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, len(bounds)]`` draws of U(−bounds, bounds) from the init stream, in ``dtype`` (drawn in float64)."""
    from mtg_env.rng import STREAM_INIT

    u = rng.uniform(STREAM_INIT, bounds.numel())
    return ((u * 2 - 1) * bounds.to(u.device)).to(dtype)


def least_squares(design: Tensor, target: Tensor) -> Tensor:
    """argmin_w ‖design · w − target‖² (batched over leading dims), robust to rank deficiency.

    Solved in float64 on the CPU with LAPACK's SVD-based ``gelsd``: dead ReLU units make trunk features
    rank-deficient, where the default ``gelsy`` driver was seen to return different, worse solutions from
    run to run. Returns the solution on ``design``'s device, in float64.
    """
    sol = torch.linalg.lstsq(design.detach().cpu().double(), target.detach().cpu().double(), driver="gelsd").solution
    return sol.to(design.device)
