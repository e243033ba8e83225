"""Four heterogeneous tasks on scikit-learn's bundled 8×8 digits (no download).

All tasks see the same images and share an MLP trunk (default 64→128→64, ReLU); each has a linear head:

| task     | kind                   | target                                             |
|----------|------------------------|----------------------------------------------------|
| `digit`  | 10-way classification  | the digit                                          |
| `parity` | 2-way classification   | digit is odd                                       |
| `ge5`    | 2-way classification   | digit ≥ 5                                          |
| `ink`    | regression (MSE)       | mean pixel intensity, standardised on the train split |

Head m is stored as an ``(out_m, width + 1)`` matrix whose rows are ``[weights, bias]``, flattened; the
heads of all tasks stacked are then one ``(Σ out_m, width + 1)`` matrix, so every head is applied in one
matmul and each head stays a contiguous slice of the flat heads vector.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtg_env._args import int_arg, real_arg
from mtg_env._lbfgs import lbfgs_strong_wolfe
from mtg_env.rng import (
    STREAM_BATCH,
    STREAM_LABEL_CLASS,
    STREAM_LABEL_NOISE,
    STREAM_TARGET_NOISE,
    GameRNG,
    check_seed,
)
from mtg_env.suites.base import (
    Split,
    TaskSpec,
    TaskSuite,
    fan_in_bounds,
    least_squares,
    uniform_params,
    unpack,
)

_OUTPUTS = {"digit": 10, "parity": 2, "ge5": 2, "ink": 1}


class DigitsSuite(TaskSuite):
    """Digit, parity, ≥5 and ink on scikit-learn's digits, with a shared MLP trunk.

    Args:
        hidden: Widths of the trunk's layers (each followed by ReLU); the last is the feature width.
        batch_size: Images per step, drawn without replacement from the train split with the env's
            generator (one shared batch for all tasks). ``None``: the whole train split every step.
        test_fraction: Fraction of the 1797 images held out for evaluation.
        split_seed: Seed of the fixed train/test split (independent of the env's seed).
        device: Where tensors live.
        dtype: ``"float32"`` or ``"float64"``.
    """

    name = "digits"

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (128, 64),
        batch_size: int | None = 256,
        test_fraction: float = 0.25,
        split_seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
    ):
        super().__init__(device=device, dtype=dtype)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
            raise TypeError(f"hidden must be a non-empty sequence of layer widths such as (128, 64), got {hidden!r}")
        hidden = tuple(int_arg(f"hidden[{i}]", h, low=1, hint="a layer width") for i, h in enumerate(hidden))
        test_fraction = real_arg("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        split_seed = check_seed(split_seed, "split_seed")
        if batch_size is not None:
            int_arg("batch_size", batch_size, low=1, hint="samples per step, or None for the whole train split")
        pixels, digits = load_digits_arrays()
        x = torch.as_tensor(pixels, dtype=torch.float64) / 16.0  # pixels in [0, 1]
        y = torch.as_tensor(digits, dtype=torch.long)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(split_seed))
        n_test = round(test_fraction * len(y))
        test, train = perm[:n_test], perm[n_test:]
        n_train = len(train)
        if batch_size is not None and not 1 <= batch_size <= n_train:
            raise ValueError(f"batch_size must be in [1, {n_train}] (the train split's size) or None, got {batch_size}")
        self.batch_size = batch_size
        self._n_train = n_train
        self.hidden = hidden
        self._config = {
            "suite": self.name,
            "hidden": list(hidden),
            "batch_size": batch_size,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "n_train": n_train,
            "n_test": n_test,
        }

        ink = x.mean(1)
        ink = (ink - ink[train].mean()) / ink[train].std()  # standardised on the train split only
        labels = torch.stack([y, y % 2, (y >= 5).long()], dim=1)

        def put(t: Tensor) -> Tensor:
            return t.to(self.device, self.dtype if t.is_floating_point() else t.dtype)

        self._train = (put(x[train]), put(labels[train]), put(ink[train]))
        self._test = (put(x[test]), put(labels[test]), put(ink[test]))

        dims = (x.shape[1], *hidden)
        self._trunk_shapes: list[tuple[int, ...]] = []
        for i in range(len(hidden)):
            self._trunk_shapes += [(dims[i + 1], dims[i]), (dims[i + 1],)]
        self.trunk_size = sum(int(torch.Size(s).numel()) for s in self._trunk_shapes)
        self._trunk_bounds = fan_in_bounds(self._trunk_shapes)
        self.width = hidden[-1]
        self._outs = list(_OUTPUTS.values())
        self.tasks = tuple(
            TaskSpec(
                name=name,
                kind="regression" if name == "ink" else "classification",
                head_size=out * (self.width + 1),
                num_classes=None if name == "ink" else out,
            )
            for name, out in _OUTPUTS.items()
        )

    # ------------------------------------------------------------------------------ the game
    jacobian = "backward"  # every task sees the same images: one forward, one batched backward

    @property
    def stochastic_gradients(self) -> bool:
        """A batch is drawn without replacement: one of the whole train split is the exact objective."""
        return self.batch_size is not None and self.batch_size < self._n_train

    @property
    def loss_lower_bounds(self) -> tuple[float, ...]:
        """0 for every task: cross-entropies and a squared error, reached only in the limit (or by rounding)."""
        return (0.0,) * self.num_tasks

    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        head_bound = 1.0 / self.width**0.5  # nn.Linear's default for weights and biases alike
        bounds = torch.cat([self._trunk_bounds, torch.full((self.head_offsets[-1],), head_bound, dtype=torch.float64)])
        params = uniform_params(rng, bounds, self.dtype).to(self.device)
        return params[:, self.trunk_size :], params[:, : self.trunk_size]

    def sample_batch(self, rng: GameRNG) -> tuple[Tensor, Tensor, Tensor]:
        if self.batch_size is None:
            return self._train
        # Without replacement: the batch_size smallest of one uniform key per image (a random subset).
        keys = rng.uniform(STREAM_BATCH, len(self._train[1]))
        idx = torch.topk(keys, self.batch_size, dim=1, largest=False, sorted=True).indices.to(self.device)
        x, labels, ink = self._train
        return x[idx], labels[idx], ink[idx]

    supports_label_noise = True

    def perturb_labels(
        self, batch: tuple[Tensor, Tensor, Tensor], rng: GameRNG, levels: Sequence[float]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Each label of classification task m (digit, parity, >= 5) replaced, with probability levels[m], by one of
        its other classes drawn uniformly; the ink target (task 3, a regression) plus levels[3]·N(0, 1)."""
        x, labels, ink = batch
        bsz = rng.seeds.shape[0]
        shape = (bsz, *labels.shape[-2:])  # [B, N, 3]
        count = shape[1] * shape[2]
        classes = torch.tensor([10, 2, 2], device=self.device)
        probs = torch.tensor(levels[:3], dtype=torch.float64, device=self.device)
        flip = rng.uniform(STREAM_LABEL_NOISE, count).to(self.device).view(shape) < probs
        offset = 1 + rng.integers(STREAM_LABEL_CLASS, count, (classes - 1).repeat(shape[1]).to(rng.seeds.device))
        moved = (labels + offset.to(self.device).view(shape)) % classes
        z = rng.normal(STREAM_TARGET_NOISE, shape[1], self.dtype).to(self.device)
        return x, torch.where(flip, moved, labels.expand(shape)), ink + levels[3] * z

    def train_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._train

    def eval_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._test

    def features(self, trunk: Tensor, x: Tensor) -> Tensor:
        """The trunk's output features for inputs ``x [N, 64]`` (one game, ``trunk [n]``) or ``x [B, N, 64]``
        / shared ``[N, 64]`` with ``trunk [B, n]``."""
        if trunk.dim() == 1:
            return self.features(trunk.unsqueeze(0), x)[0]
        params = unpack(trunk, self._trunk_shapes)
        h = x if x.dim() == 3 else x.expand(trunk.shape[0], *x.shape)
        for i in range(0, len(params), 2):
            h = torch.relu(torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].transpose(1, 2)))
        return h

    def outputs(self, heads: Tensor, trunk: Tensor, x: Tensor) -> tuple[Tensor, ...]:
        """Each task's raw output (logits, or the regression prediction) for inputs ``x``, batched as
        :meth:`features` (``[B, N, out_m]``, or ``[N, out_m]`` for one game)."""
        if trunk.dim() == 1:
            return tuple(o[0] for o in self.outputs(heads.unsqueeze(0), trunk.unsqueeze(0), x))
        h = self.features(trunk, x)
        w = heads.view(heads.shape[0], -1, self.width + 1)  # all heads stacked: rows [weights, bias]
        return torch.baddbmm(w[:, :, -1].unsqueeze(1), h, w[:, :, :-1].transpose(1, 2)).split(self._outs, dim=2)

    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        x, labels, ink = batch
        digit, parity, ge5, reg = self.outputs(heads, trunk, x)
        bsz, n = digit.shape[:2]
        labels = labels.expand(bsz, n, 3)

        def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
            per_image = F.cross_entropy(logits.reshape(bsz * n, -1), target.reshape(-1), reduction="none")
            return per_image.view(bsz, n).mean(1)

        return torch.stack(
            [
                cross_entropy(digit, labels[..., 0]),
                cross_entropy(parity, labels[..., 1]),
                cross_entropy(ge5, labels[..., 2]),
                (reg.squeeze(2) - ink).square().mean(1),
            ],
            dim=1,
        )

    @torch.no_grad()
    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        x, labels, ink = self._test
        outs = self.outputs(heads, trunk, x)
        result: dict[str, dict[str, float]] = {}
        for i, (task, out) in enumerate(zip(self.tasks, outs, strict=True)):
            if task.kind == "classification":
                acc = (out.argmax(1) == labels[:, i]).to(torch.float64).mean().item()
                result[task.name] = {"test_accuracy": acc}
            else:
                result[task.name] = {"test_mse": F.mse_loss(out.squeeze(1), ink).item()}
        return result

    # ---------------------------------------------------------------------- best responses
    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Each head's best response on frozen trunk features of the whole train split.

        ``split``: ``"train"`` (the training objective) or ``"eval"`` (the held-out images).
        Classification heads: multinomial logistic regression solved by L-BFGS (strong Wolfe line
        search) warm-started at the current head, in float64; it only ever lowers the loss, so the
        resulting gap is ≥ 0. When a task's features are linearly separable the infimum (0) is not
        attained and the gap is a lower bound. The regression head: exact least squares.
        """
        return self._solve_heads(heads, trunk, split)[0].to(heads.dtype)

    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Head Nash gap per task on the ``split`` images, in float64 (see :meth:`best_response`)."""
        return self._solve_heads(heads, trunk, split)[1]

    def _solve_heads(
        self, heads: Tensor, trunk: Tensor, split: Split = "train", max_iter: int = 200
    ) -> tuple[Tensor, Tensor]:
        # 200 L-BFGS iterations: at a fresh initialisation they give the 2000-iteration gaps to 1e-8 in 0.6 s
        # instead of 4.9 s here (one thread); later in training the solve converges sooner.
        x, labels, ink = self.batch_for(split)
        with torch.no_grad():
            feats = self.features(trunk.detach(), x).to(torch.float64)
        design = torch.cat([feats, torch.ones_like(feats[:, :1])], dim=1)
        best, gaps = [], []
        for i, (task, head) in enumerate(zip(self.tasks, self.split_heads(heads.detach()), strict=True)):
            w0 = head.to(torch.float64).view(-1, self.width + 1)
            if task.kind == "regression":
                target = ink.to(torch.float64)
                sol = least_squares(design, target.unsqueeze(1)).T
                gap = F.mse_loss(design @ w0.T[:, 0], target) - F.mse_loss(design @ sol[0], target)
                best.append(sol.reshape(-1))
                gaps.append(gap.clamp_min(0.0))  # exact up to round-off
                continue
            # Solve in standardised coordinates (an affine reparametrisation of the same head, so the
            # same minimum): trunk features are badly scaled, which slows L-BFGS down by 10x or more.
            mu, sd = feats.mean(0), feats.std(0)
            sd = torch.where(sd > 0, sd, torch.ones_like(sd))
            std_design = torch.cat([(feats - mu) / sd, design[:, -1:]], dim=1)
            w_std = torch.cat([w0[:, :-1] * sd, w0[:, -1:] + w0[:, :-1] @ mu[:, None]], dim=1)
            w = w_std.clone().requires_grad_(True)
            target = labels[:, i]

            def closure(w: Tensor = w, target: Tensor = target, design: Tensor = std_design) -> Tensor:
                w.grad = None
                loss = F.cross_entropy(design @ w.T, target)
                loss.backward()
                return loss

            # torch.optim.LBFGS's algorithm without torch.optim, whose first use imports torch._dynamo (2.4 s).
            lbfgs_strong_wolfe(
                w, closure, lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14, history_size=20
            )
            w_std = w.detach()
            w_raw = w_std[:, :-1] / sd
            w = torch.cat([w_raw, w_std[:, -1:] - w_raw @ mu[:, None]], dim=1)
            start = F.cross_entropy(design @ w0.T, target)
            end = F.cross_entropy(std_design @ w_std.T, target)
            best.append(w.reshape(-1))
            gaps.append((start - end).clamp_min(0.0))
        return torch.cat(best), torch.stack(gaps)

    def describe(self) -> dict[str, Any]:
        return dict(self._config)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (``pixels [1797, 64]`` in 0..16, ``digits [1797]``), read straight from
    the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``, as ``load_digits`` reads it) without
    importing scikit-learn, whose import costs about 2.7 s of the main job's 12 s here; through
    ``sklearn.datasets.load_digits`` where that file is not found."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    locations = [] if spec is None or spec.submodule_search_locations is None else spec.submodule_search_locations
    for folder in locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # pragma: no cover - another layout of scikit-learn

    data = load_digits()  # pragma: no cover
    return data.data, data.target  # pragma: no cover
