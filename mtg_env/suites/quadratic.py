"""The convex quadratic game: the setting of the paper's Theorem 3, with a closed-form equilibrium.

Task m's loss is ℓ_m(Θ_m, Ψ) = ½ z_mᵀ A_m z_m − b_mᵀ z_m with z_m = [Θ_m; Ψ] (head block first) and
A_m symmetric positive definite, so every loss is convex with Lipschitz gradient (Assumptions 3-4).

The fixed point of the `sum` (Eq. 24) and `mean` (Eq. 21) dynamics solves ∇_{Θ_m} ℓ_m = 0 for every m
and Σ_m ∇_Ψ ℓ_m = 0: it is the unique minimiser of L_MT = Σ_m ℓ_m (Eq. 16), which is strictly convex.
Head m's best response to a trunk Ψ is Θ_m* = A_ΘΘ⁻¹ (b_Θ − A_ΘΨ Ψ), and its Nash gap is ½ gᵀ A_ΘΘ⁻¹ g
with g = ∇_{Θ_m} ℓ_m.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtg_env._args import int_arg, real_arg
from mtg_env.rng import STREAM_INIT, GameRNG, check_seed
from mtg_env.suites.base import Split, TaskSpec, TaskSuite

#: Most matrix entries a random quadratic game may hold (num_tasks · (head_dim + trunk_dim)²): 0.8 GB in float64.
_MAX_ENTRIES = 10**8


class QuadraticSuite(TaskSuite):
    """A convex quadratic game, user-given or random.

    Args:
        A: Per-task matrices A_m, each square of size ``head_m + trunk_dim``, symmetric positive
            definite. Give ``A``, ``b`` and ``trunk_dim`` together for a user-defined game.
        b: Per-task vectors b_m, each of length ``head_m + trunk_dim``.
        trunk_dim: Size of the shared trunk Ψ.
        num_tasks: Number of tasks of a random game.
        head_dim: Head size of every task of a random game.
        condition: Condition number of each random A_m (eigenvalues log-spaced in [1, condition]).
        game_seed: Seed of the random game's matrices (the game is fixed; the env's seed only draws
            the initial parameters).
        init_scale: Initial parameters are drawn from N(0, init_scale²) with the env's generator.
        device: Where tensors live.
        dtype: ``"float32"`` or ``"float64"`` (use float64 for theory work).
    """

    name = "quadratic"
    exact_best_response = True
    batched_best_response = True
    cheap_nash_gap = True

    def __init__(
        self,
        A: Sequence[Any] | None = None,
        b: Sequence[Any] | None = None,
        trunk_dim: int | None = None,
        *,
        num_tasks: int = 3,
        head_dim: int = 2,
        condition: float = 10.0,
        game_seed: int = 0,
        init_scale: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
    ):
        super().__init__(device=device, dtype=dtype)
        self.init_scale = real_arg("init_scale", init_scale, low=0.0, hint="the spread of the random start")
        if A is not None or b is not None:
            mats, vecs, n = _validate_user_game(A, b, trunk_dim)
            # The digest tells one user game from another of the same sizes (checkpoints compare it).
            self._config: dict[str, Any] = {"A": "user", "trunk_dim": n, "digest": _digest(mats, vecs)}
        else:
            n = 2 if trunk_dim is None else int_arg("trunk_dim", trunk_dim, low=1)
            num_tasks = int_arg("num_tasks", num_tasks, low=1)
            head_dim = int_arg("head_dim", head_dim, low=0)
            condition = real_arg("condition", condition, 1.0, 1e12, hint="largest / smallest curvature")
            entries = num_tasks * (head_dim + n) ** 2
            if entries > _MAX_ENTRIES:
                raise ValueError(
                    f"num_tasks={num_tasks}, head_dim={head_dim}, trunk_dim={n}: the game's matrices would hold "
                    f"{entries:.3g} entries, more than {_MAX_ENTRIES:.0e}; choose smaller sizes"
                )
            game_seed = check_seed(game_seed, "game_seed")
            mats, vecs = _random_game(num_tasks, head_dim, n, condition, game_seed)
            self._config = {
                "num_tasks": num_tasks,
                "head_dim": head_dim,
                "trunk_dim": n,
                "condition": condition,
                "game_seed": game_seed,
            }
        self._config["init_scale"] = self.init_scale
        self.trunk_size = n
        self.tasks = tuple(
            TaskSpec(name=f"quadratic_{m}", kind="quadratic", head_size=a.shape[0] - n) for m, a in enumerate(mats)
        )
        # float64 copies for closed forms; the game's own copies in the game's dtype.
        self._A64 = [a.to(self.device) for a in mats]
        self._b64 = [v.to(self.device) for v in vecs]
        self._A = [a.to(self.device, self.dtype) for a in mats]
        self._b = [v.to(self.device, self.dtype) for v in vecs]
        self._uniform = len(set(self.head_sizes)) == 1
        if self._uniform:  # one batched contraction instead of a loop over tasks
            self._A_stack = torch.stack(self._A)
            self._b_stack = torch.stack(self._b)
            self._head = self.head_sizes[0]
            # ½ as a 0-dim tensor of the game's dtype: the same exact halving as the Python 0.5, at half the cost.
            self._half = torch.tensor(0.5, dtype=self.dtype, device=self.device)
        h = self.head_sizes
        # A_ΘΘ⁻¹ and A_ΘΨ per task, for best responses and gaps.
        self._inv_hh = [torch.linalg.inv(a[: h[m], : h[m]]) for m, a in enumerate(self._A64)]
        if self._uniform:  # batched float64 blocks: the per-step Nash gap is then a few contractions
            k = h[0]
            self._A_hh = torch.stack([a[:k, :k] for a in self._A64])
            self._A_hp = torch.stack([a[:k, k:] for a in self._A64])
            self._b_h = torch.stack([v[:k] for v in self._b64])
            self._inv_stack = torch.stack(self._inv_hh)

    # ------------------------------------------------------------------------------ the game
    jacobian = "closed_form"

    @property
    def loss_lower_bounds(self) -> tuple[float, ...]:
        """Each task's minimum over (Θ_m, Ψ): −½ b_mᵀ A_m⁻¹ b_m (attained; below 0 unless b_m = 0)."""
        return tuple(float(-0.5 * v @ torch.linalg.solve(a, v)) for a, v in zip(self._A64, self._b64, strict=True))

    def init_params(self, rng: GameRNG) -> tuple[Tensor, Tensor]:
        total = self.head_offsets[-1] + self.trunk_size
        z = (rng.normal(STREAM_INIT, total) * self.init_scale).to(self.device, self.dtype)
        return z[:, : self.head_offsets[-1]], z[:, self.head_offsets[-1] :]

    def sample_batch(self, rng: GameRNG) -> None:
        return None  # a deterministic game: no data

    def train_batch(self) -> None:
        return None

    def batched_losses(self, heads: Tensor, trunk: Tensor, batch: Any = None) -> Tensor:
        return self.closed_form(heads, trunk, batch)[0]

    def closed_form(self, heads: Tensor, trunk: Tensor, batch: Any = None) -> tuple[Tensor, Tensor, Tensor]:
        """ℓ_m = ½ z_mᵀA_m z_m − b_mᵀz_m and its gradient A_m z_m − b_m, split into head and trunk parts."""
        bsz, m, n = heads.shape[0], self.num_tasks, self.trunk_size
        if self._uniform:
            h = self._head
            z = torch.cat([heads.view(bsz, m, h), trunk.unsqueeze(1).expand(bsz, m, n)], dim=2)  # [B, M, d]
            az = _batch_invariant_matvec(self._A_stack, z)
            grad = az - self._b_stack
            return ((self._half * az - self._b_stack) * z).sum(2), grad[..., :h].reshape(bsz, -1), grad[..., h:]
        losses: list[Tensor] = []
        head_grads: list[Tensor] = []
        rows: list[Tensor] = []
        for a, v, theta in zip(self._A, self._b, heads.split(self.head_sizes, dim=1), strict=True):
            h = theta.shape[1]
            z = torch.cat([theta, trunk], dim=1)
            az = _batch_invariant_matvec(a, z)
            losses.append(((0.5 * az - v) * z).sum(1))
            head_grads.append(az[:, :h] - v[:h])
            rows.append(az[:, h:] - v[h:])
        return torch.stack(losses, 1), torch.cat(head_grads, 1), torch.stack(rows, 1)

    def evaluate(self, heads: Tensor, trunk: Tensor) -> dict[str, dict[str, float]]:
        return {t.name: {} for t in self.tasks}  # a game without data: no held-out metric

    # ------------------------------------------------------------------------ closed forms
    def best_response(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        psi = trunk.detach().to(torch.float64)
        parts = []
        for m, (a, v) in enumerate(zip(self._A64, self._b64, strict=True)):
            h = self.head_sizes[m]
            parts.append(self._inv_hh[m] @ (v[:h] - a[:h, h:] @ psi))
        return torch.cat(parts).to(heads.dtype) if parts else heads.detach().clone()

    def best_response_batch(self, trunk: Tensor) -> Tensor:
        """``[B, H]`` Θ̂_m(Ψ) = A_ΘΘ⁻¹ (b_Θ − A_ΘΨ Ψ) for every game's trunk ``[B, n]``, in float64 then the trunk's
        dtype (elementwise products and sums over the last dimension: each game's row is independent of B)."""
        psi = trunk.detach().to(torch.float64)
        parts = []
        for m, (a, v) in enumerate(zip(self._A64, self._b64, strict=True)):
            h = self.head_sizes[m]
            rhs = v[:h] - (psi.unsqueeze(1) * a[:h, h:]).sum(-1)  # [B, h]
            parts.append((rhs.unsqueeze(1) * self._inv_hh[m]).sum(-1))
        if not parts:
            return trunk.new_zeros(trunk.shape[0], 0)
        return torch.cat(parts, 1).to(trunk.dtype)

    def nash_gaps(self, heads: Tensor, trunk: Tensor, split: Split = "train") -> Tensor:
        """Exact head Nash gap per task, ½ gᵀ A_ΘΘ⁻¹ g, computed in float64 (a game without data: the
        split does not matter)."""
        psi = trunk.detach().to(torch.float64)
        if self._uniform:
            theta = heads.detach().to(torch.float64).view(self.num_tasks, self.head_sizes[0])
            g = torch.einsum("mij,mj->mi", self._A_hh, theta) + self._A_hp @ psi - self._b_h
            return 0.5 * torch.einsum("mi,mij,mj->m", g, self._inv_stack, g)
        gaps = []
        for m, (a, v, theta) in enumerate(
            zip(self._A64, self._b64, self.split_heads(heads.detach().to(torch.float64)), strict=True)
        ):
            h = self.head_sizes[m]
            g = a[:h, :h] @ theta + a[:h, h:] @ psi - v[:h]
            gaps.append(0.5 * g @ (self._inv_hh[m] @ g))
        return torch.stack(gaps)

    def equilibrium(self) -> tuple[Tensor, Tensor]:
        """The minimiser of L_MT: the fixed point of the `sum` and `mean` dynamics (float64)."""
        K, c = self._joint_system()
        z = torch.linalg.solve(K, c)
        t = self.head_offsets[-1]
        return z[:t], z[t:]

    def joint_hessian(self) -> Tensor:
        """The Hessian of L_MT = Σ_m ℓ_m in z = [Θ_1; …; Θ_M; Ψ] (float64): the `sum` dynamics are gradient
        descent on L_MT, stable for steps below 2 / λ_max."""
        return self._joint_system()[0]

    def _joint_system(self) -> tuple[Tensor, Tensor]:
        h, off, n = self.head_sizes, self.head_offsets, self.trunk_size
        size = off[-1] + n
        K = torch.zeros(size, size, dtype=torch.float64, device=self.device)
        c = torch.zeros(size, dtype=torch.float64, device=self.device)
        t = off[-1]  # trunk block starts here
        for m, (a, v) in enumerate(zip(self._A64, self._b64, strict=True)):
            s, e = off[m], off[m + 1]
            K[s:e, s:e] = a[: h[m], : h[m]]
            K[s:e, t:] = a[: h[m], h[m] :]
            K[t:, s:e] = a[h[m] :, : h[m]]
            K[t:, t:] += a[h[m] :, h[m] :]
            c[s:e] = v[: h[m]]
            c[t:] += v[h[m] :]
        return K, c

    def describe(self) -> dict[str, Any]:
        return {"suite": self.name, **self._config}


#: Most elements of the [rows, d, d] product that :func:`_batch_invariant_matvec` forms at once (128 MiB in float64).
_MATVEC_CHUNK = 1 << 24


def _batch_invariant_matvec(mats: Tensor, z: Tensor) -> Tensor:
    """``A z`` for symmetric ``A`` (``[M, d, d]`` with ``z [B, M, d]``, or ``[d, d]`` with ``z [B, d]``), each game's
    row computed by the same operations whatever B is and wherever the game sits in the batch.

    A GEMM over the B rows (``bmm``) is not: MKL picks its kernel by instruction set *and* by the matrix shapes, so
    on AVX2/AVX-512 machines game b alone and game b among 511 others differed in the last bit. Here each entry is
    an elementwise product (exact per element) and a sum over the contiguous last dimension of one game's own
    ``d`` products, reduced by the same loop for every row; rows are processed in chunks of at most
    :data:`_MATVEC_CHUNK` products, which does not change any row's reduction.
    """
    per_row = z.shape[-1] ** 2 * (mats.shape[0] if mats.dim() == 3 else 1)
    rows = max(1, _MATVEC_CHUNK // max(1, per_row))
    if z.shape[0] <= rows:  # one chunk (the usual case): no split and no copy
        return (z.unsqueeze(-2) * mats).sum(-1)
    return torch.cat([(chunk.unsqueeze(-2) * mats).sum(-1) for chunk in z.split(rows, dim=0)], dim=0)


def _digest(mats: Sequence[Tensor], vecs: Sequence[Tensor]) -> str:
    """A short SHA-256 of a user game's float64 matrices and vectors."""
    h = hashlib.sha256()
    for t in (*mats, *vecs):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to(torch.float64).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _random_game(
    num_tasks: int, head_dim: int, trunk_dim: int, condition: float, seed: int
) -> tuple[list[Tensor], list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    d = head_dim + trunk_dim
    eigs = torch.logspace(0.0, math.log10(condition), d, dtype=torch.float64)
    mats, vecs = [], []
    for _ in range(num_tasks):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        a = (q * eigs) @ q.T
        mats.append(0.5 * (a + a.T))
        vecs.append(torch.randn(d, generator=g, dtype=torch.float64))
    return mats, vecs


def _validate_user_game(
    A: Sequence[Any] | None, b: Sequence[Any] | None, trunk_dim: int | None
) -> tuple[list[Tensor], list[Tensor], int]:
    if A is None or b is None or trunk_dim is None:
        raise ValueError("a user-given quadratic game needs all of A=[A_1, ...], b=[b_1, ...] and trunk_dim=k")
    if len(A) != len(b) or len(A) == 0:
        raise ValueError(f"A and b must list the same number (>= 1) of tasks, got {len(A)} and {len(b)}")
    n = int_arg("trunk_dim", trunk_dim, low=1)
    mats, vecs = [], []
    for m, (a, v) in enumerate(zip(A, b, strict=True)):
        a = torch.as_tensor(a, dtype=torch.float64).detach().clone()
        v = torch.as_tensor(v, dtype=torch.float64).detach().clone()
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < n:
            raise ValueError(f"A[{m}] must be square of size head_dim + trunk_dim >= {n}, got shape {tuple(a.shape)}")
        if v.shape != (a.shape[0],):
            raise ValueError(f"b[{m}] must have shape ({a.shape[0]},) to match A[{m}], got {tuple(v.shape)}")
        if not torch.isfinite(a).all() or not torch.isfinite(v).all():
            raise ValueError(f"A[{m}] and b[{m}] must be finite")
        if not torch.allclose(a, a.T, rtol=1e-10, atol=1e-12):
            raise ValueError(f"A[{m}] must be symmetric (A = Aᵀ); use (A + A.T) / 2")
        lam_min = torch.linalg.eigvalsh(a)[0].item()
        if lam_min <= 0:
            raise ValueError(
                f"A[{m}] must be positive definite (convex loss, Assumption 3); its smallest "
                f"eigenvalue is {lam_min:.3g}"
            )
        mats.append(a)
        vecs.append(v)
    return mats, vecs, n
