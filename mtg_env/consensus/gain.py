"""Measured properties of a consensus rule: its unanimity gain, what it does to proposals every player makes alike
(:func:`unanimity_gain`), whether it is a fixed weighted sum of the proposals (:func:`is_linear`), and whether the
shortest proposal bounds its move (:func:`is_min_bounded`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from mtg_env._args import int_arg
from mtg_env._copy import deepcopy
from mtg_env.consensus.rule import apply_rule, is_batched_rule, rule_name, rule_state_kind, step_rule
from mtg_env.consensus.table import ConsensusRule

#: The two sizes of p at which the gain is measured (a power of two apart: the scaling is exact).
_SCALES = (1.0, 2.0**-10)


def unanimity_gain(
    rule: ConsensusRule,
    num_tasks: int,
    trunk_size: int = 4,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> float:
    """γ with C(P) = γ·p when each of the ``num_tasks`` rows of P is one proposal p, every player proposing the same
    move: M for ``sum`` and ``pcgrad``, 1 for ``mean``, ``mgda``, ``upgrad`` and the other averaging rules.

    Measured on p = (1, −1, 1, …) of ``trunk_size`` coordinates in ``dtype`` on ``device`` (the game's, so a rule
    that only works at its game's shape plays here too) and on p / 2¹⁰, at the rule's fresh state (a stateful rule's
    ``init_state``, a copy of an object rule after ``reset()``), with seed 0 for a randomized rule;
    γ = ⟨C(P), p⟩ / ‖p‖², rounded to 12 significant digits (a solver's round-off: ``upgrad``'s 1 + 2e-16 is 1), exact
    for ``sum`` and ``mean``. Torch's CPU and numpy's global generators are restored after (a rule of your own may draw
    from them).

    M / γ is the scale at which unanimous proposals move the trunk as their sum would (what a rule trained under
    ``sum`` plays with ``sum_scaled``; see :attr:`mtg_env.engine.Game.sum_scale`).

    Raises:
        ValueError: naming the rule, if ``num_tasks`` or ``trunk_size`` is not a positive int, or the rule has no
            constant gain: it weighs the proposals by the losses (``loss_aware``: its weights, so its gain, follow
            the losses during a game), or C(P) is not a positive multiple of p (within 1e-6), or not the same
            multiple at both sizes of p (a rule that is not positively homogeneous, such as one that fixes the
            move's norm).
    """
    m = int_arg("num_tasks", num_tasks, low=1)
    n = int_arg("trunk_size", trunk_size, low=1)
    name = rule_name(rule)
    if getattr(rule, "loss_aware", False) is True:
        raise ValueError(
            f"consensus rule {name!r} weighs the proposals by the losses: its gain follows them during a game, so it "
            "has no constant unanimity gain"
        )
    p = torch.ones(n, dtype=dtype, device=device)
    p[1::2] = -1.0
    gains = []
    with _global_generators_kept():  # a rule of your own may draw from them: measuring must not move them
        for scale in _SCALES:
            move = _move(rule, (scale * p).expand(m, n).clone(), m, n, dtype, device)
            move = torch.as_tensor(move).detach().to(device=p.device, dtype=torch.float64)
            q = scale * p.to(torch.float64)
            gain = float(move @ q) / float(q @ q) if move.shape == (n,) else math.nan
            residual = float((move - gain * q).norm()) if math.isfinite(gain) else math.inf
            if not (gain > 0 and residual <= 1e-6 * gain * float(q.norm())):
                raise ValueError(
                    f"consensus rule {name!r} moves unanimous proposals q [{m}, {n}] to {move.tolist()[:8]}, not to a "
                    f"positive multiple of q = {q.tolist()[:8]}: its unanimity gain is undefined (a rule that follows "
                    "its players when they all agree is needed to scale proposals as under sum)"
                )
            gains.append(float(f"{gain:.12g}"))
    if gains[0] != gains[1]:
        raise ValueError(
            f"consensus rule {name!r} moves unanimous proposals by {gains[0]:.6g} times p and by {gains[1]:.6g} times "
            f"p / 2^10: it is not positively homogeneous, so it has no constant unanimity gain"
        )
    return gains[0]


def is_linear(
    rule: ConsensusRule,
    num_tasks: int,
    trunk_size: int = 4,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> bool:
    """Whether C(P) = Σ_m w_m p_m with weights w that are the same at every step of a game (``sum``: w = 1, ``mean``:
    w = 1/M, a fixed weighting of your own). Then, where every player's trunk step is the same multiple of its
    gradient, the trunk's fixed points are where Σ_m w_m g_m = 0 whatever that step; under a rule that is not linear
    (``mgda``, ``upgrad``, the projection, selection and bargaining rules, the randomized and loss-aware ones) the
    point a game reaches on its Pareto set depends on the path, so on the steps taken.

    A finite probe, in ``dtype`` on ``device``, of ``[num_tasks, trunk_size]`` proposal matrices (each also with its
    rows rolled by one): rows that all agree, with norms from 0.1 to 10 rising and falling; rows that alternate in
    sign and grow, and the same reversed; one row against all the others, for each of the first four rows; Gaussian
    rows of norms 0.01 to 100; and Gaussian matrices of norm about 1e4 and 1e-4. It checks that C(P) is the same with
    the seeds of two steps (a randomized rule draws new weights each step), C(−1.5·P) = −1.5·C(P) for each, and
    C(P + Q) = C(P) + C(Q) for every pair, within 1e4 ulps of the moves plus 64·M ulps of the proposals (the sums'
    round-off). So a rule that projects, selects, clips or re-weights once proposals conflict, or once they agree,
    shows it at the shapes of a game (including M > n, where conflicting rows put 0 in their convex hull); a rule
    that is nonlinear only beyond the probe's scale (a clip at norms above about 1e5) or on proposals none of these
    resemble passes. With one player every rule that moves the trunk along the one proposal is linear. A rule that
    keeps state across steps (other than an empty tensor state) is not linear: its weights may follow its state.
    Torch's CPU and numpy's global generators are restored after; the rule itself is not touched. Stops at the first
    identity that fails.

    Raises:
        ValueError: if ``num_tasks`` or ``trunk_size`` is not a positive int (TypeError if not an int at all), or
            ``dtype`` is not float32 or float64. A rule that fails on the test matrices raises its own error
            (:attr:`mtg_env.engine.Game.linear_consensus` reads any failure as not linear).
    """
    m, n, dtype = _probe_args(num_tasks, trunk_size, dtype)
    if _follows_more_than_proposals(rule, m, n, dtype, device):
        return False
    eps = torch.finfo(dtype).eps
    mats = [x.to(dtype=dtype, device=device) for x in _test_matrices(m, n)]
    with _global_generators_kept():

        def move(x: torch.Tensor, seed: int = 0) -> torch.Tensor | None:
            out = torch.as_tensor(_move(rule, x.clone(), m, n, dtype, device, seed)).detach()
            return out if out.shape == (n,) and bool(torch.isfinite(out).all()) else None

        def close(a: torch.Tensor | None, b: torch.Tensor | None, *inputs: torch.Tensor) -> bool:
            if a is None or b is None:
                return False
            a64, b64 = a.to(torch.float64), b.to(torch.float64)
            size = sum(float(x.to(torch.float64).norm()) for x in inputs)
            tol = 1e4 * eps * max(float(a64.norm()), float(b64.norm())) + 64 * m * eps * size
            return float((a64 - b64).norm()) <= tol

        moves = [move(x) for x in mats]
        if not close(move(mats[0], seed=1), moves[0], mats[0]):  # the same weights at another step
            return False
        for x, cx in zip(mats, moves, strict=True):  # homogeneous, of both signs
            if cx is None or not close(move(-1.5 * x), -1.5 * cx, x):
                return False
        for i, (x, cx) in enumerate(zip(mats, moves, strict=True)):  # additive, on every pair
            for y, cy in zip(mats[i + 1 :], moves[i + 1 :], strict=True):
                assert cx is not None and cy is not None
                if not close(move(x + y), cx + cy, x, y):
                    return False
    return True


def is_min_bounded(
    rule: ConsensusRule,
    num_tasks: int,
    trunk_size: int = 4,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> bool:
    """Whether no move is longer than the shortest proposal, ‖C(P)‖ ≤ min_m ‖p_m‖: every player holds a veto on the size
    of the trunk's move. ``mgda`` is (its move is the min-norm point of the proposals' convex hull, so ⟨C(P), p_m⟩ ≥
    ‖C(P)‖² for every m); ``sum``, ``mean``, ``upgrad`` and every other named rule are not (proposals that agree, of
    norms 1 and 10, move the trunk by more than 1; ``aligned_mtl`` scales its move to the proposals' smallest singular
    value but counts one far below the others as 0). Under such a rule the player whose proposal is shortest (whose
    gradient is smallest, as near its own optimum) holds every player back, and the point a game reaches on its Pareto
    set depends on how the proposals' sizes compare: the tuned baselines that win there normalise each player's proposal
    by its own gradients' RMS (RMSprop, Adam).

    A finite probe, in ``dtype`` on ``device``: rows that agree with norms from 1e-4 to 1e4 (rising and falling: a rule
    that moves by more than about M·1e-8 times their mean fails), and :func:`is_linear`'s proposal matrices, each with
    the seeds of two steps, within 1e3 ulps of the shortest proposal's norm. With one player every rule that moves the
    trunk by at most the proposal is min-bounded (``sum`` too). A rule that keeps state across steps (other than an
    empty tensor state) or weighs the proposals by the losses is not counted as min-bounded (its moves follow what the
    probe cannot set). Torch's CPU and numpy's global generators are restored after; the rule itself is not touched.

    Raises:
        ValueError: if ``num_tasks`` or ``trunk_size`` is not a positive int (TypeError if not an int at all), or
            ``dtype`` is not float32 or float64. A rule that fails on the test matrices raises its own error
            (:attr:`mtg_env.engine.Game.min_bounded_consensus` reads any failure as not min-bounded).
    """
    m, n, dtype = _probe_args(num_tasks, trunk_size, dtype)
    if _follows_more_than_proposals(rule, m, n, dtype, device):
        return False
    slack = 1.0 + 1e3 * torch.finfo(dtype).eps
    gen = torch.Generator().manual_seed(1)
    wide = 10.0 ** torch.linspace(-4.0, 4.0, m, dtype=torch.float64)[:, None]  # rows that agree, norms 1e-4 to 1e4
    agree = wide * (torch.randn(n, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(m, n, generator=gen))
    with _global_generators_kept():
        for x in [agree, agree.flip(0), *_test_matrices(m, n)]:
            x = x.to(dtype=dtype, device=device)
            shortest = float(x.to(torch.float64).norm(dim=1).min())
            for seed in (0, 1):
                out = torch.as_tensor(_move(rule, x.clone(), m, n, dtype, device, seed)).detach()
                if out.shape != (n,) or not bool(torch.isfinite(out).all()):
                    return False
                if float(out.to(torch.float64).norm()) > slack * shortest:
                    return False
    return True


@contextmanager
def _global_generators_kept() -> Iterator[None]:
    """Torch's CPU and numpy's global generators as they were, after the block."""
    cpu_state, np_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu_state)
        np.random.set_state(np_state)  # noqa: NPY002


def _probe_args(num_tasks: int, trunk_size: int, dtype: torch.dtype) -> tuple[int, int, torch.dtype]:
    """The probes' checked arguments (positive ints; float32 or float64)."""
    m = int_arg("num_tasks", num_tasks, low=1)
    n = int_arg("trunk_size", trunk_size, low=1)
    return m, n, _probe_dtype(dtype)


def _follows_more_than_proposals(
    rule: ConsensusRule, m: int, n: int, dtype: torch.dtype, device: torch.device | str
) -> bool:
    """Whether the rule's moves may follow more than the proposals a probe sets: the losses (``loss_aware``), or a
    state it keeps across steps (an object rule's, or a non-empty tensor state)."""
    if getattr(rule, "loss_aware", False) is True:
        return True
    kind = rule_state_kind(rule)
    return kind == "object" or (kind == "tensors" and bool(rule.init_state(m, n, dtype, device)))  # type: ignore[attr-defined]


def _probe_dtype(dtype: torch.dtype) -> torch.dtype:
    """The probes' tolerances are in ulps of float32 or float64; a half dtype's (eps 1e-3, 8e-3) would pass a rule
    that moves twice the bound."""
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"dtype must be torch.float32 or torch.float64 (the probe's tolerance is in its ulps), got {dtype}"
        )
    return dtype


def _test_matrices(m: int, n: int) -> list[torch.Tensor]:
    """The float64 ``[m, n]`` proposal matrices of :func:`is_linear`'s probe, from a generator of their own."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    rising = 10.0 ** torch.linspace(-1.0, 1.0, m, dtype=torch.float64)[:, None]
    base, other = randn(n), randn(n)
    mats = [
        rising * (base + 0.1 * randn(m, n)),  # every row agrees, norms rising
        rising.flip(0) * (other + 0.1 * randn(m, n)),  # and falling
    ]
    alternating = torch.tensor([(-1.0) ** i * (i + 1) for i in range(m)], dtype=torch.float64)[:, None]
    conflicting = alternating * (1.0 + 0.1 * randn(m, n))  # every pair of rows conflicts
    mats += [conflicting, conflicting.flip(0)]
    for r in range(min(m, 4)):  # one row against the others
        against = base + 0.1 * randn(m, n)
        against[r] = -(2.0 + r) * (base + 0.1 * randn(n))
        mats.append(against)
    mats += [randn(m, n) * 10.0 ** (4.0 * torch.rand(m, 1, generator=gen, dtype=torch.float64) - 2.0) for _ in range(2)]
    mats += [1e4 * randn(m, n), 1e-4 * randn(m, n)]
    return mats + [x.roll(1, dims=0) for x in mats] if m > 1 else mats


def _move(
    rule: ConsensusRule,
    proposals: torch.Tensor,
    m: int,
    n: int,
    dtype: torch.dtype,
    device: torch.device | str,
    seed: int = 0,
) -> torch.Tensor:
    """C(P) for one game's proposals at the rule's fresh state, its draws from ``seed`` (the rule itself is not
    touched)."""
    kind = rule_state_kind(rule)
    if is_batched_rule(rule):
        target = _copy_rule(rule) if kind == "object" else rule
        return target(proposals.unsqueeze(0))[0]  # type: ignore[no-any-return]
    if kind == "tensors":
        state = rule.init_state(m, n, dtype, device)  # type: ignore[attr-defined]
        return step_rule(rule, state, proposals, seed)[0]
    return apply_rule(_copy_rule(rule) if kind == "object" else rule, proposals, seed)


def _copy_rule(rule: ConsensusRule) -> ConsensusRule:
    """A fresh copy of a rule that keeps state on itself (the original is not touched)."""
    copy = deepcopy(rule)
    copy.reset()  # type: ignore[attr-defined]
    return copy
