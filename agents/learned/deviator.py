"""A learned selfish deviator: the reference gradient player whose trunk proposal (and optionally head step) is
scaled by exp(s), s a tiny MLP of its own observation features, trained on its own reward only.

Where the bench's selfish deviator (:class:`agents.SelfishAgent`) scales the gradient player's trunk proposal by a
fixed k, this one chooses its factor each step from the 8 features it observes (loss, its change, gradient norms,
the cosine of its trunk gradient with the others' mean, progress, ...): s = s_max · tanh(MLP(features)), so the
factor stays in [exp(−s_max), exp(s_max)]. Two forms play the same rule on the same inputs (tested):

* :class:`LearnedDeviator`, a numpy :class:`~agents.Policy` (the bench plays it through the env), made by the
  factory :func:`learned_deviator` (``agents.learned.deviator:learned_deviator`` in a benchmark file);
* :class:`BatchedDeviator`, B games on the engine's tensors, one weight vector per game (the ES population plays
  as one batch in :mod:`agents.learned.deviator_es`, which trains it and reproduces the shipped weights).

Weights files hold plain tensors and values (``torch.load(weights_only=True)``) and are validated on load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.batched import BatchedBaseline
from agents.gradient import GradientAgent
from agents.learned.checkpoint import WEIGHTS_DIR, non_finite, read_torch_file, torch_bytes
from agents.selfish import SelfishAgent
from mtg_env._args import int_arg, real_arg
from mtg_env._io import write_atomic
from mtg_env.engine import NUM_FEATURES, Game

#: Marks a file written by :func:`save_deviator`.
DEVIATOR_FORMAT = "mtg_env.learned_deviator/1"
#: The shipped weights (``python -m agents.learned.deviator_es --out ...`` reproduces them).
DEVIATOR_WEIGHTS = WEIGHTS_DIR / "learned_deviator.pt"


@dataclass(frozen=True)
class DeviatorConfig:
    """The deviator's network."""

    hidden: int = 8
    """Width of the MLP's one hidden layer (tanh)."""
    max_log_scale: float = math.log(8.0)
    """s_max: the log factor s = s_max · tanh(·) stays in [−s_max, s_max]."""
    head: bool = False
    """Also scale its head step by exp(s_head) (a second output); off: it plays the reference's head step."""

    def __post_init__(self) -> None:
        int_arg("hidden", self.hidden, low=1)
        real_arg("max_log_scale", self.max_log_scale, low=0.0, low_open=True, high=10.0)
        if not isinstance(self.head, bool):
            raise TypeError(f"head must be a bool, got {self.head!r}")

    @property
    def num_params(self) -> int:
        """Length of the flat weight vector θ: W1 [h, 8], b1 [h], W2 [2, h], b2 [2]."""
        h = self.hidden
        return h * NUM_FEATURES + h + 2 * h + 2


def _split(theta: Any, config: DeviatorConfig) -> tuple[Any, Any, Any, Any]:
    """(W1 [..., h, 8], b1 [..., h], W2 [..., 2, h], b2 [..., 2]) views of θ [..., P] (numpy or torch)."""
    h, f = config.hidden, NUM_FEATURES
    lead = tuple(theta.shape[:-1])
    cuts = np.cumsum([0, h * f, h, 2 * h, 2])
    w1 = theta[..., cuts[0] : cuts[1]].reshape(*lead, h, f)
    b1 = theta[..., cuts[1] : cuts[2]]
    w2 = theta[..., cuts[2] : cuts[3]].reshape(*lead, 2, h)
    return w1, b1, w2, theta[..., cuts[3] : cuts[4]]


def log_scales_numpy(theta: np.ndarray, features: np.ndarray, config: DeviatorConfig) -> np.ndarray:
    """``(s_trunk, s_head)`` (float64) of one player from its features ``[8]`` and weights θ ``[P]``; s_head is 0
    unless ``config.head``."""
    w1, b1, w2, b2 = _split(np.asarray(theta, dtype=np.float64), config)
    x = np.asarray(features, dtype=np.float64)
    hidden = np.tanh(w1 @ x + b1)
    s = config.max_log_scale * np.tanh(w2 @ hidden + b2)
    return s if config.head else s * np.array([1.0, 0.0])


def log_scales(theta: Tensor, features: Tensor, config: DeviatorConfig) -> Tensor:
    """``[B, 2]`` (s_trunk, s_head) in float64 of B players from their features ``[B, 8]`` and weights θ ``[B, P]``
    (or one ``[P]`` for all): :func:`log_scales_numpy`, batched."""
    theta = theta.to(torch.float64)
    if theta.dim() == 1:
        theta = theta.expand(features.shape[0], -1)
    w1, b1, w2, b2 = _split(theta, config)
    x = features.to(torch.float64)
    hidden = torch.tanh((w1 @ x.unsqueeze(2)).squeeze(2) + b1)
    s = config.max_log_scale * torch.tanh((w2 @ hidden.unsqueeze(2)).squeeze(2) + b2)
    return s if config.head else s * torch.tensor([1.0, 0.0], dtype=torch.float64, device=s.device)


def init_theta(config: DeviatorConfig, seed: int) -> Tensor:
    """θ₀ [P] (float64): W1 ~ N(0, 1/8) from ``seed``, the rest zero, so s = 0: it starts as the reference."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.zeros(config.num_params, dtype=torch.float64)
    n = config.hidden * NUM_FEATURES
    theta[:n] = torch.randn(n, generator=gen, dtype=torch.float64) / math.sqrt(NUM_FEATURES)
    return theta


# ------------------------------------------------------------------------------------------ the two forms
class LearnedDeviator(SelfishAgent):
    """The numpy form: plays :class:`~agents.GradientAgent` at ``lr`` with its trunk proposal × exp(s_trunk) (and
    its head update × exp(s_head) when the config says so), s from the features of its observation.
    ``update`` mode only.

    Args:
        lr: The gradient player's step size (the bench gives it the reference's tuned one: ``[mixed]
            reference_lr``).
        theta: The weights ``[P]``.
        config: The network.
    """

    def __init__(self, lr: float, theta: np.ndarray | Tensor, config: DeviatorConfig | None = None):
        self.config = config or DeviatorConfig()
        theta = np.asarray(theta.detach().cpu() if isinstance(theta, Tensor) else theta, dtype=np.float64)
        if theta.shape != (self.config.num_params,):
            raise ValueError(f"theta must have shape ({self.config.num_params},) for {self.config}, got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta holds NaN or infinite values")
        self.theta = theta
        gradient = GradientAgent(lr=lr)
        super().__init__(gradient)
        self.lr = gradient.lr

    def log_scales(self, observation: np.ndarray) -> np.ndarray:
        """(s_trunk, s_head) for this observation."""
        return log_scales_numpy(self.theta, observation[-NUM_FEATURES:], self.config)

    def scales(self, observation: np.ndarray) -> tuple[float, float]:
        """(exp(s_trunk), exp(s_head)) from this observation's features (the head's is 1 unless the config scales
        it); :class:`~agents.SelfishAgent` plays the gradient player's update so scaled."""
        s_trunk, s_head = np.exp(self.log_scales(observation))
        return s_trunk, s_head

    def __repr__(self) -> str:
        return f"LearnedDeviator(lr={self.lr}, config={self.config})"


class BatchedDeviator:
    """The torch form for B games of ``game``: every task plays the reference gradient rule at step size
    ``lrs [B]``, and in game b the task ``tasks[b]`` deviates with the weights ``theta[b]``.

    Args:
        game: The engine's game (``update`` mode).
        lrs: ``[B]`` each game's step size.
        theta: ``[B, P]`` each game's deviator weights, or ``[P]`` for all.
        tasks: ``[B]`` int64, each game's deviating task.
        config: The network.
    """

    def __init__(self, game: Game, lrs: Tensor, theta: Tensor, tasks: Tensor, config: DeviatorConfig):
        self.game, self.config = game, config
        self.reference = BatchedBaseline("gradient", game, lrs)
        bsz = self.reference.lrs.shape[0]
        self.tasks = torch.as_tensor(tasks, dtype=torch.int64, device=game.device).reshape(-1)
        if self.tasks.shape != (bsz,) or not bool(((self.tasks >= 0) & (self.tasks < game.num_tasks)).all()):
            raise ValueError(f"tasks must be [{bsz}] task indices in [0, {game.num_tasks}), got {tasks!r}")
        self.theta = theta.to(device=game.device, dtype=torch.float64)
        if self.theta.shape[-1] != config.num_params or self.theta.dim() not in (1, 2):
            raise ValueError(f"theta must be [{bsz}, {config.num_params}] or [{config.num_params}], got "
                             f"{tuple(theta.shape)}")  # fmt: skip
        self._rows = torch.arange(bsz, device=game.device)
        #: ``[B, H]`` the deviator's head coordinates in each game.
        self._own_head = game.head_index.unsqueeze(0) == self.tasks.unsqueeze(1)

    def log_scales(self, features: Tensor) -> Tensor:
        """``[B, 2]`` the deviators' (s_trunk, s_head) for the engine's features ``[B, M, 8]``."""
        return log_scales(self.theta, features[self._rows, self.tasks], self.config)

    def act(self, head_grads: Tensor, jacobian: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(head_updates [B, H], proposals [B, M, n])`` in the game's dtype."""
        head, proposals = self.reference.act(head_grads, jacobian)
        scale = self.log_scales(features).exp()
        dtype = proposals.dtype
        own = proposals[self._rows, self.tasks].to(torch.float64) * scale[:, :1]
        proposals = proposals.index_put((self._rows, self.tasks), own.to(dtype))
        if self.config.head:
            factor = torch.where(self._own_head, scale[:, 1:], torch.ones_like(scale[:, 1:]))
            head = (head.to(torch.float64) * factor).to(dtype)
        return head, proposals


# ------------------------------------------------------------------------------------------ weights files
def save_deviator(path: str | Path, theta: Tensor, config: DeviatorConfig, meta: dict[str, Any] | None = None) -> Path:
    """Write θ, the config and ``meta`` (how it was trained) to ``path`` atomically; refuses NaN/inf weights."""
    path = Path(path)
    theta = theta.detach().cpu().to(torch.float64).clone()
    if theta.shape != (config.num_params,) or non_finite({"theta": theta}):
        raise ValueError(f"refusing to write {path}: theta must be [{config.num_params}] finite values, got "
                         f"shape {tuple(theta.shape)}")  # fmt: skip
    payload = {"format": DEVIATOR_FORMAT, "config": asdict(config), "theta": theta, "meta": dict(meta or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, torch_bytes(payload))
    return path


def load_deviator(path: str | Path = DEVIATOR_WEIGHTS) -> tuple[Tensor, DeviatorConfig, dict[str, Any]]:
    """``(theta, config, meta)`` from a file of :func:`save_deviator`, read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: naming ``path`` and what is wrong (not a deviator file, another format, a bad config, θ of
            the wrong shape or dtype, NaN/inf).
    """
    path = Path(path)
    payload, _ = read_torch_file(path, "learned deviator weights file")
    if not isinstance(payload, dict) or payload.get("format") != DEVIATOR_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not a learned deviator file (format {found!r}, expected {DEVIATOR_FORMAT!r}); "
                         "write one with agents.learned.deviator.save_deviator")  # fmt: skip
    try:
        config = DeviatorConfig(**payload["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: its config is not a DeviatorConfig ({err})") from None
    theta = payload.get("theta")
    if not isinstance(theta, Tensor) or theta.shape != (config.num_params,) or not theta.is_floating_point():
        shown = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
        raise ValueError(f"{path}: theta must be a float tensor [{config.num_params}] for {config}, got {shown}")
    if non_finite({"theta": theta}):
        raise ValueError(f"{path}: theta holds NaN or infinite values")
    meta = payload.get("meta", {})
    return theta.to(torch.float64), config, meta if isinstance(meta, dict) else {}


def learned_deviator(lr: float, weights: str | None = None) -> LearnedDeviator:
    """The bench factory ``lr -> Policy``: the deviator with the shipped weights (or the file ``weights``)."""
    theta, config, _ = load_deviator(DEVIATOR_WEIGHTS if weights is None else weights)
    return LearnedDeviator(lr, theta, config)
