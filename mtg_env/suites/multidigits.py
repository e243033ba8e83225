"""MultiDigits: MultiMNIST (Sabour et al. 2017; Sener & Koltun 2018's multi-task benchmark) on the bundled digits.

Each example overlays two of scikit-learn's 8×8 digits of different classes on a ``canvas × canvas`` image
(default 12×12): the *left* digit near the top-left corner and the *right* digit near the bottom-right one,
each shifted by up to ``shift`` pixels, overlapping pixels taking the brighter value (as MultiMNIST's overlay,
on a smaller canvas). Two tasks: classify the left digit and the right digit. The pairs are drawn once from a
fixed generator (``data_seed``): training pairs from the training images, test pairs from the held-out images
(a digit image never appears in both).

The model is Sener & Koltun's LeNet-style shared trunk scaled to the canvas: conv 3×3 (10 channels), ReLU,
2×2 max-pool, conv 3×3 (20 channels), ReLU, a fully connected layer to ``width`` features, ReLU; and one linear
head (``width`` → 10) per task with cross-entropy. It is a :class:`~mtg_env.suites.module.ModuleSuite`, so the
game's seed draws every parameter as PyTorch's default initialisation would, and the heads' best responses are
converged convex solves on the frozen features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mtg_env._args import int_arg, real_arg
from mtg_env.rng import check_seed
from mtg_env.suites.digits import load_digits_arrays
from mtg_env.suites.module import ModuleSuite


class MultiDigits(ModuleSuite):
    """Left and right digit of two overlaid 8×8 digits, with a shared LeNet-style trunk and linear heads.

    Args:
        canvas: Side of the square image (at least 10, and 8 + ``shift``).
        shift: The largest shift of each digit from its corner, in pixels.
        n_train: Training pairs.
        n_test: Held-out pairs.
        width: The trunk's feature width (its last layer).
        batch_size: Pairs per step, drawn uniformly (with replacement) by each game's generator (``None``: all).
        test_fraction: Fraction of the 1797 digit images whose pairs are held out.
        data_seed: Seed of the image split and of the pairs (fixed; the env's seed draws init and batches).
        device: Where tensors live.
        dtype: ``"float32"`` or ``"float64"``.
    """

    name = "multidigits"

    def __init__(
        self,
        *,
        canvas: int = 14,
        shift: int = 2,
        n_train: int = 4000,
        n_test: int = 1000,
        width: int = 50,
        batch_size: int | None = 128,
        test_fraction: float = 0.25,
        data_seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
    ):
        shift = int_arg("shift", shift, low=0, hint="pixels a digit may move from its corner")
        canvas = int_arg("canvas", canvas, low=max(10, 8 + shift), hint="image side: 8 + shift at least, and ≥ 10")
        n_train = int_arg("n_train", n_train, low=1)
        n_test = int_arg("n_test", n_test, low=1)
        width = int_arg("width", width, low=1, hint="the trunk's feature width")
        test_fraction = real_arg("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        data_seed = check_seed(data_seed, "data_seed")
        train, test = multidigits_data(canvas, shift, n_train, n_test, test_fraction, data_seed)
        # Built on the meta device, so that building draws nothing from torch's global generator; the values
        # are then zeros, and every game draws its own (init="seeded" draws every conv and linear parameter).
        with torch.device("meta"):
            side = ((canvas - 2) // 2) - 2
            trunk = nn.Sequential(
                nn.Conv2d(1, 10, 3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(10, 20, 3),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(20 * side * side, width),
                nn.ReLU(),
            )
            heads = {"left": nn.Linear(width, 10), "right": nn.Linear(width, 10)}
        for module in (trunk, *heads.values()):
            module.to_empty(device=device)
            for p in module.parameters():
                nn.init.zeros_(p)
        self._options = {
            "canvas": canvas,
            "shift": shift,
            "n_train": n_train,
            "n_test": n_test,
            "width": width,
            "test_fraction": test_fraction,
            "data_seed": data_seed,
        }
        loss = nn.CrossEntropyLoss()
        super().__init__(
            trunk,
            heads,
            {"left": loss, "right": loss},
            train,
            eval=test,
            batch_size=batch_size,
            init="seeded",
            device=device,
            dtype=dtype,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._options}


def multidigits_data(
    canvas: int, shift: int, n_train: int, n_test: int, test_fraction: float, data_seed: int
) -> tuple[tuple[Tensor, dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]]:
    """``(train, test)``, each ``(images [N, 1, canvas, canvas] in [0, 1] float64, {"left", "right": labels [N]})``."""
    pixels, digits = load_digits_arrays()
    images = torch.as_tensor(pixels, dtype=torch.float64).view(-1, 8, 8) / 16.0
    labels = torch.as_tensor(digits, dtype=torch.long)
    g = torch.Generator().manual_seed(data_seed)
    perm = torch.randperm(len(labels), generator=g)
    n_held = round(test_fraction * len(labels))
    held, kept = perm[:n_held], perm[n_held:]
    train = _pairs(images[kept], labels[kept], n_train, canvas, shift, g)
    test = _pairs(images[held], labels[held], n_test, canvas, shift, g)
    return train, test


def _pairs(
    images: Tensor, labels: Tensor, count: int, canvas: int, shift: int, g: torch.Generator
) -> tuple[Tensor, dict[str, Tensor]]:
    """``count`` overlays of a left digit and a right digit of another class, drawn with ``g``."""
    left = torch.randint(len(labels), (count,), generator=g)
    # The right digit: a class other than the left's (offset 1..9 mod 10), then an image of that class.
    right_class = (labels[left] + torch.randint(1, 10, (count,), generator=g)) % 10
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    pick = (torch.rand(count, generator=g, dtype=torch.float64) * counts[right_class]).long()
    right = order[starts[right_class] + pick]
    far = canvas - 8  # the largest offset that keeps a digit on the canvas
    offsets = torch.randint(0, shift + 1, (count, 4), generator=g)
    rows = torch.cat([offsets[:, :2], far - offsets[:, 2:]], dim=1)  # left: near (0, 0); right: near (far, far)
    out = torch.zeros(count, canvas, canvas, dtype=torch.float64)
    for which, index in enumerate((left, right)):
        layer = torch.zeros(count, canvas, canvas, dtype=torch.float64)
        r, c = rows[:, 2 * which], rows[:, 2 * which + 1]
        ii = (r[:, None] + torch.arange(8)[None, :])[:, :, None].expand(count, 8, 8)
        jj = (c[:, None] + torch.arange(8)[None, :])[:, None, :].expand(count, 8, 8)
        layer[torch.arange(count)[:, None, None].expand(count, 8, 8), ii, jj] = images[index]
        out = torch.maximum(out, layer)
    return out.unsqueeze(1), {"left": labels[left], "right": labels[right]}
