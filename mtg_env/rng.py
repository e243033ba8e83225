"""Counter-based randomness: every random number of game b is a hash of (seed_b, episode_b, step, stream, index).

A shared ``torch.Generator`` would make game b's draws depend on how many games come before it in a batch
and on what they drew. Here each number is a pure function of its coordinates, so game b's whole trajectory
depends only on its own seed, never on the batch size or its position, and the same on every device (the
hash is integer arithmetic; only the final conversion to normals uses floating-point functions).

The hash is a 32-bit integer mixer found by Chris Wellons' hash-prospector, chained over the coordinates.
It is a statistical hash, not a cryptographic one: plenty for simulation and initialisation. Values are
kept below 2**32 inside int64 tensors and the multipliers below 2**31, so nothing overflows on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MAX_SEED = 2**63 - 1
#: Up to this many games on the CPU, :meth:`GameRNG.key` hashes Python ints instead of tensors.
_FEW_GAMES = 16

#: Stream numbers: each kind of draw has its own, so adding draws of one kind never shifts another.
STREAM_INIT = 1
STREAM_BATCH = 2
STREAM_CONSENSUS = 3
#: The noise models' streams (:mod:`mtg_env.engine.noise`): gradient noise, label flips, the classes flipped
#: labels move to, the Byzantine task's random proposals, and the noise on regression targets.
STREAM_GRAD_NOISE = 4
STREAM_LABEL_NOISE = 5
STREAM_LABEL_CLASS = 6
STREAM_BYZANTINE = 7
STREAM_TARGET_NOISE = 8


def mix32_(x: Tensor) -> Tensor:
    """A 32-bit integer mixer, in place on an int64 tensor of values in [0, 2**32): a bijection of [0, 2**32)
    with good avalanche (hash-prospector's [16 21f0aaad 15 735a2d97 15], bias 0.108). Both multipliers are
    below 2**31, so every product stays below 2**63: exact int64 arithmetic on every device, no overflow."""
    x ^= x >> 16
    x *= 0x21F0AAAD
    x &= _MASK32
    x ^= x >> 15
    x *= 0x735A2D97
    x &= _MASK32
    x ^= x >> 15
    return x


def mix32(x: Tensor) -> Tensor:
    """:func:`mix32_` on a copy."""
    return mix32_(x.clone())


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63), or a ``ValueError``/``TypeError`` that names it (no coercion)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        import numpy as np

        if isinstance(seed, np.integer) and not isinstance(seed, np.bool_):
            seed = int(seed)
        else:
            raise TypeError(f"{name} must be an int in [0, 2**63), got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**63), got {seed}")
    return seed


def _mix_int(x: int) -> int:
    """:func:`mix32` on a Python int (for constants: no tensor work)."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & _MASK32
    x ^= x >> 15
    x = (x * 0x735A2D97) & _MASK32
    return x ^ (x >> 15)


def episode_keys(seeds: Tensor, episodes: Tensor) -> Tensor:
    """``[B]`` int64: the hash of (seed, episode) of every game, fixed for an episode (so a step hashes less)."""
    h = mix32((episodes & _MASK32) ^ 0x9E3779B9)
    h = mix32_(h ^ ((seeds >> 32) & _MASK32))
    return mix32_(h ^ (seeds & _MASK32))


@lru_cache(maxsize=64)
def _index_keys(count: int, device: torch.device) -> Tensor:
    """``[count]`` hashes of the indices 0..count−1 (the same for every game and step: cached)."""
    return mix32_(torch.arange(count, dtype=torch.int64, device=device) + 0x632BE5AB)


@dataclass(frozen=True)
class GameRNG:
    """The random numbers of B games at one point of their play.

    Args:
        seeds: ``[B]`` int64 seeds, one per game.
        episodes: ``[B]`` int64 episode counters (a reset without a new seed starts the next episode).
        steps: ``[B]`` int64 step counters.
        base: ``[B]`` :func:`episode_keys` of ``seeds`` and ``episodes``, if already known (the engine keeps
            them in its state); computed when ``None``.
    """

    seeds: Tensor
    episodes: Tensor
    steps: Tensor
    base: Tensor | None = None

    @classmethod
    def from_seeds(cls, seeds: list[int] | Tensor, device: str | torch.device = "cpu") -> GameRNG:
        """Episode 0, step 0 of games with these seeds."""
        s = torch.as_tensor(seeds, dtype=torch.int64, device=device).reshape(-1)
        zeros = torch.zeros_like(s)
        return cls(s, zeros, zeros)

    def key(self, stream: int) -> Tensor:
        """``[B, 1]`` int64: the hash of (seed, episode, step, stream) of every game."""
        base = episode_keys(self.seeds, self.episodes) if self.base is None else self.base
        salt = _mix_int(stream + 0x5BD1E995)
        steps = self.steps
        if steps.device.type == "cpu" and steps.dim() == 1 and steps.shape == base.shape and len(steps) <= _FEW_GAMES:
            # A few games on the CPU: the same hashes as Python ints (exact integer arithmetic either way), as
            # the ~20 tensor ops below cost more than the hashing itself.
            pairs = zip(steps.tolist(), base.tolist(), strict=True)
            return torch.tensor([_mix_int(_mix_int((s & _MASK32) ^ salt) ^ b) for s, b in pairs]).unsqueeze(1)
        h = mix32_((self.steps & _MASK32) ^ salt)
        return mix32_(h ^ base).unsqueeze(1)

    def bits(self, stream: int, count: int) -> Tensor:
        """``[B, count]`` int64 hashes in [0, 2**32): number i of game b depends only on game b and i."""
        return mix32_(self.key(stream) ^ _index_keys(count, self.seeds.device))

    def uniform(self, stream: int, count: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[B, count]`` uniform in [0, 1) with the dtype's full precision (53 or 24 bits)."""
        if dtype == torch.float64:
            b = self.bits(stream, 2 * count)
            hi, lo = b[:, 0::2] >> 5, b[:, 1::2] >> 6  # 27 + 26 bits, as numpy's random_double
            return (hi * 67108864 + lo).to(torch.float64) * (1.0 / 9007199254740992.0)
        return (self.bits(stream, count) >> 8).to(dtype) * (1.0 / 16777216.0)

    def integers(self, stream: int, count: int, high: Tensor) -> Tensor:
        """``[B, count]`` int64 uniform in [0, high) (``high`` broadcasts against ``[B, count]``; each < 2**31),
        by the multiply-shift map (bits · high) >> 32: one 32-bit draw per number, exact integer arithmetic."""
        return (self.bits(stream, count) * high) >> 32

    def normal(self, stream: int, count: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[B, count]`` standard normals (Box–Muller on float64 uniforms, then cast to ``dtype``)."""
        u = self.uniform(stream, 2 * count)
        radius = torch.sqrt(-2.0 * torch.log1p(-u[:, :count]))  # 1 − u in (0, 1]: log never sees 0
        return (radius * torch.cos(2.0 * math.pi * u[:, count:])).to(dtype)

    def integer_seed(self, stream: int) -> list[int]:
        """One 62-bit seed per game (for a ``torch.Generator`` a third-party rule draws from)."""
        b = self.bits(stream, 2).tolist()
        return [((hi & 0x3FFFFFFF) << 32) | lo for hi, lo in b]
