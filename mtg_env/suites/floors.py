"""L*: the minimum of a game's training objective L = Σ_m ℓ_m (whole training sets), which normalised losses are
gaps from, (L_T − L*) / (L_0 − L*).

How it is known depends on the suite, and every value says how (:attr:`Floor.kind`):

* ``closed form``: the quadratic game, convex: L_MT at its closed-form equilibrium (its minimum).
* ``least squares``: regression with a linear trunk, when the trunk's width k is no bottleneck (k ≥ min(M, d)):
  task m predicts v_mᵀ(Wx + c) + a_m, an affine map of x whose slopes W ᵀv_m are free, so the minimum is each
  task's own weighted least-squares fit with an intercept (exact).
* ``rank-constrained (ALS)``: a linear trunk narrower than min(M, d) makes the slopes share a rank-k space
  (reduced-rank regression with a design per task, no closed form): the best of alternating least squares from the
  truncated least-squares solution. The unconstrained least squares is a lower bound (``lower``).
* ``best run, polished``: non-convex suites (regression's MLP trunk, digits): the lowest L of long full-batch Adam
  runs (several step sizes and starts, float64), the lowest run then polished by L-BFGS (strong Wolfe line search,
  :data:`BEST_RUN_POLISH` iterations). The Adam runs alone (kind ``best run``, ``polish=0``; every floor before the
  polish) stopped far above the minimum on digits, whose MLPs fit their training split almost exactly: 0.003–0.13
  where the polish reaches 2e-5–8e-3, below 1e-4 but on hidden-16 trunks (``docs/results/learned.md``, twenty-eighth
  session); a player's 500-step final loss was below them in 2–6 of 24 validation games, where a gap measured the
  distance to the game's best player. A caller lowers it to any loss a played game reached
  (:meth:`Floor.lowered`), so a gap is never negative; the kind then says ``best known``.

The best run trains where the suite lives (its device); the least-squares solves run on the CPU in float64 (the
rank-revealing ``gelsd`` driver is CPU-only; the designs are a few hundred rows), so a floor is the same number on
every device up to the suite's own data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from mtg_env._lbfgs import lbfgs_strong_wolfe
from mtg_env.suites.base import TaskSuite

#: How long and at which step sizes the ``best run`` floor trains (full batch, Adam, float64).
BEST_RUN_STEPS = 600
BEST_RUN_LRS = (1e-2, 3e-2)
BEST_RUN_SEEDS = (0,)
#: L-BFGS iterations that polish the best Adam run (0: the Adam runs alone, the ``best run`` of earlier floors).
BEST_RUN_POLISH = 500
_ALS_ITERATIONS = 300


@dataclass(frozen=True)
class Floor:
    """L* of one game and how it is known."""

    value: float
    """The minimum of L = Σ_m ℓ_m on the training sets (or the best known value)."""
    kind: str
    """``closed form``, ``least squares``, ``rank-constrained (ALS)``, ``best run, polished``, ``best run`` (the Adam
    runs unpolished), ``best known`` or ``lower bound``
    (the suite's own bound on its losses, :meth:`~mtg_env.suites.base.TaskSuite.loss_lower_bounds`)."""
    lower: float | None = None
    """A proven lower bound, where one is known and differs (the unconstrained least squares)."""

    @property
    def exact(self) -> bool:
        """Whether ``value`` is the true minimum (not the best of runs)."""
        return self.kind in ("closed form", "least squares")

    def lowered(self, reached: float) -> Floor:
        """This floor, lowered to ``reached`` (a final loss a played game reached) if that is below it."""
        if self.exact or not math.isfinite(reached) or reached >= self.value:
            return self
        return replace(self, value=reached, kind="best known")


def true_floor(suite: TaskSuite, polish: int = BEST_RUN_POLISH) -> Floor:
    """L* of ``suite``'s training objective (see the module docstring). ``polish``: the L-BFGS iterations after a
    non-convex suite's Adam runs (0: the unpolished ``best run`` that floors before it used)."""
    if isinstance(polish, bool) or not isinstance(polish, int) or polish < 0:
        raise ValueError(f"polish must be an int >= 0 (L-BFGS iterations; 0: none), got {polish!r}")
    exact = exact_floor(suite)
    if exact is not None:
        return exact
    return Floor(_best_run(suite, polish), "best run, polished" if polish else "best run")


def exact_floor(suite: TaskSuite) -> Floor | None:
    """L* where no training run is needed to know it (milliseconds): the quadratic game's closed form, a linear-trunk
    regression's least squares (or, under a bottleneck, the best of ALS); ``None`` for the non-convex suites, whose
    floor only a best run gives (seconds per game)."""
    if suite.name == "quadratic":
        equilibrium = suite.equilibrium()
        assert equilibrium is not None  # the quadratic game has a closed-form one
        heads, trunk = equilibrium
        with torch.no_grad():
            value = float(suite.losses(heads.to(torch.float64), trunk.to(torch.float64)).sum())
        return Floor(value, "closed form")
    if suite.name == "regression" and getattr(suite, "kind", None) == "linear":
        return _linear_regression_floor(suite)
    return None


def _weighted(suite: TaskSuite) -> tuple[Tensor, Tensor, Tensor]:
    """Per task ``[M, N, d + 1]`` the √w-weighted design [x, 1] and ``[M, N]`` the √w-weighted targets, float64."""
    x, y, w = (t.detach().to("cpu", torch.float64) for t in suite.train_batch())
    sw = w.sqrt()
    design = torch.cat([x, torch.ones_like(x[..., :1])], -1) * sw.unsqueeze(-1)
    return design, y * sw, sw


def least_squares_floor(suite: TaskSuite) -> float:
    """Σ_m min over affine maps of task m's weighted MSE: the minimum of a linear-trunk regression game without a
    bottleneck, a lower bound of every regression game with a linear trunk."""
    design, target, _ = _weighted(suite)
    sol = torch.linalg.lstsq(design, target.unsqueeze(-1), driver="gelsd").solution
    residual = (design @ sol).squeeze(-1) - target
    return float(residual.square().sum())


def _linear_regression_floor(suite: TaskSuite) -> Floor:
    design, target, sw = _weighted(suite)
    m, _, d1 = design.shape
    d, k = d1 - 1, int(suite.trunk_width)  # type: ignore[attr-defined]
    lower = least_squares_floor(suite)
    if k >= min(m, d):
        return Floor(lower, "least squares")
    # Reduced-rank: slopes B = V W (V [M, k], W [k, d]); alternate exact solves for (V, a) and for (W, a).
    sol = torch.linalg.lstsq(design, target.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)  # [M, d + 1]
    _, _, vh = torch.linalg.svd(sol[:, :d], full_matrices=False)
    w_mat = vh[:k]  # [k, d]
    x = design[..., :d]  # √w-weighted inputs
    best = math.inf
    for _ in range(_ALS_ITERATIONS):
        feats = torch.cat([x @ w_mat.T, sw.unsqueeze(-1)], -1)  # [M, N, k + 1]
        heads = torch.linalg.lstsq(feats, target.unsqueeze(-1), driver="gelsd").solution.squeeze(-1)  # [M, k + 1]
        v = heads[:, :k]
        # pred_m = v_mᵀ W x + a_m: linear in (vec W, a); solve all tasks' rows at once.
        rows = torch.einsum("mk,mnd->mnkd", v, x).reshape(m, -1, k * d)
        intercepts = torch.zeros(m, x.shape[1], m, dtype=x.dtype)
        intercepts[torch.arange(m), :, torch.arange(m)] = sw
        big = torch.cat([rows, intercepts], -1).reshape(-1, k * d + m)
        theta = torch.linalg.lstsq(big, target.reshape(-1, 1), driver="gelsd").solution.squeeze(-1)
        w_mat = theta[: k * d].reshape(k, d)
        value = float((big @ theta - target.reshape(-1)).square().sum())
        if value > best - 1e-13 * max(1.0, abs(best)):
            best = min(best, value)
            break
        best = value
    return Floor(best, "rank-constrained (ALS)", lower=lower)


def _best_run(suite: TaskSuite, polish: int = 0) -> float:
    """The lowest L of full-batch Adam runs from :data:`BEST_RUN_SEEDS` at :data:`BEST_RUN_LRS` (one batch), and of
    ``polish`` L-BFGS iterations from the run that ended lowest."""
    starts = [suite.params_for_seed(s) for s in BEST_RUN_SEEDS]
    heads = torch.stack([h for h, _ in starts for _ in BEST_RUN_LRS]).to(torch.float64)
    trunk = torch.stack([t for _, t in starts for _ in BEST_RUN_LRS]).to(torch.float64)
    params = torch.cat([heads, trunk], 1).requires_grad_(True)
    lrs = torch.tensor(list(BEST_RUN_LRS) * len(starts), dtype=torch.float64, device=params.device)[:, None]
    h = heads.shape[1]
    batch = tuple(t.to(torch.float64) if t.is_floating_point() else t for t in suite.train_batch())
    m1, m2 = torch.zeros_like(params), torch.zeros_like(params)
    best = torch.full((params.shape[0],), math.inf, dtype=torch.float64, device=params.device)
    for t in range(1, BEST_RUN_STEPS + 1):
        total = suite.batched_losses(params[:, :h], params[:, h:], batch).sum(-1)
        (grad,) = torch.autograd.grad(total.sum(), params)
        with torch.no_grad():
            best = torch.minimum(best, torch.nan_to_num(total.detach(), nan=math.inf))
            grad = torch.nan_to_num(grad)
            m1.mul_(0.9).add_(0.1 * grad)
            m2.mul_(0.999).add_(0.001 * grad.square())
            params.sub_(lrs * (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-8))
    with torch.no_grad():
        final = suite.batched_losses(params[:, :h], params[:, h:], batch).sum(-1)
        best = torch.minimum(best, torch.nan_to_num(final, nan=math.inf))
    lowest = float(best.min())
    if polish and bool(torch.isfinite(final).any()):
        w = params[int(torch.nan_to_num(final, nan=math.inf).argmin())].detach().clone().requires_grad_(True)

        def closure() -> Tensor:
            w.grad = None
            loss = suite.batched_losses(w[None, :h], w[None, h:], batch).sum()
            loss.backward()
            return loss

        lbfgs_strong_wolfe(w, closure, max_iter=polish, tolerance_grad=1e-12, tolerance_change=1e-15)
        with torch.no_grad():
            polished = float(suite.batched_losses(w[None, :h], w[None, h:], batch).sum())
        if math.isfinite(polished):
            lowest = min(lowest, polished)
    return lowest
