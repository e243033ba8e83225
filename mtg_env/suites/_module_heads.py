"""The heads' best responses of a :class:`~mtg_env.suites.module.ModuleSuite` (the head Nash gap): which
solver a head gets from its layer and loss, the linear heads' least squares or convex solve, and L-BFGS on
any other head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtg_env.suites.base import least_squares

if TYPE_CHECKING:
    from mtg_env.suites.module import ModuleSuite


# -------------------------------------------------------------------------------- loss detection
def _loss_kind(fn: Any) -> str:
    """``"mse"`` or ``"cross_entropy"`` where ``fn`` is exactly that loss with its defaults (mean reduction, no
    weights, no label smoothing), else ``"other"``."""
    if fn is F.mse_loss or (type(fn) is nn.MSELoss and fn.reduction == "mean"):
        return "mse"
    if fn is F.cross_entropy or (
        type(fn) is nn.CrossEntropyLoss
        and fn.reduction == "mean"
        and fn.weight is None
        and fn.label_smoothing == 0.0
        and fn.ignore_index == -100
    ):
        return "cross_entropy"
    return "other"


def _loss_label(fn: Any) -> str:
    """A stable name of a loss (no memory address): ``CrossEntropyLoss()``, ``torch.nn.functional.mse_loss``."""
    if isinstance(fn, nn.Module):
        return repr(fn)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _solver(suite: ModuleSuite, m: int) -> str:
    """How head ``m``'s best response is found: ``least squares`` (exact), ``convex`` (a converged L-BFGS
    solve of a convex problem) or ``approximate`` (L-BFGS on a possibly non-convex one: a lower bound)."""
    head, kind = suite._heads[m], suite._kinds[m]
    with torch.no_grad():
        feats = suite._trunk(suite._train.inputs[:2])
    if type(head) is not nn.Linear or not isinstance(feats, Tensor) or feats.dim() != 2:
        return "approximate"
    target = suite._train.targets[m]
    if kind == "mse" and target.is_floating_point() and tuple(target.shape[1:]) == (head.out_features,):
        return "least squares"
    if kind == "cross_entropy" and not target.is_floating_point() and target.dim() == 1:
        return "convex"
    return "approximate"


def _approximate_head(suite: ModuleSuite, m: int, start: Tensor, feats: Any, target: Tensor) -> tuple[Tensor, Tensor]:
    """L-BFGS on head ``m`` alone with the trunk's features frozen, warm-started at ``start``: it only ever
    lowers the loss, so the gap it finds is ≥ 0 and a lower bound of the true gap."""
    if start.numel() == 0:
        return start, torch.zeros((), dtype=torch.float64, device=start.device)
    w = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=suite.approximate_best_response_steps, line_search_fn="strong_wolfe")

    def loss_at(v: Tensor) -> Tensor:
        return suite._losses[m](suite._head_call(m, v, feats), target).reshape(())

    def closure() -> Tensor:
        opt.zero_grad()
        value = loss_at(w)
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        before, after = loss_at(start), loss_at(w.detach())
        if not after <= before:  # a line search that wandered off (non-finite): keep the start
            return start, torch.zeros((), dtype=torch.float64, device=start.device)
        return w.detach(), (before.to(torch.float64) - after.to(torch.float64))


# ------------------------------------------------------------------------------- linear heads' solves
def _linear_head_solve(
    head: nn.Module, solver: str, start: Tensor, feats: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Best response and gap of an ``nn.Linear`` head on frozen float64 features: least squares (MSE), or
    multinomial logistic regression by L-BFGS in standardised coordinates (cross-entropy), as on ``digits``."""
    assert isinstance(head, nn.Linear)
    out_f, in_f, bias = head.out_features, head.in_features, head.bias is not None
    w0 = start.detach().to(torch.float64)
    weight0 = w0[: out_f * in_f].view(out_f, in_f)
    bias0 = w0[out_f * in_f :] if bias else None
    ones = torch.ones_like(feats[:, :1])
    design = torch.cat([feats, ones], dim=1) if bias else feats
    current = torch.cat([weight0, bias0.unsqueeze(1)], dim=1) if bias0 is not None else weight0  # [out, in(+1)]

    def flat(w: Tensor) -> Tensor:  # [out, in(+1)] back to the head's layout: weight, then bias
        return torch.cat([w[:, :in_f].reshape(-1), w[:, in_f]]) if bias else w.reshape(-1)

    if solver == "least squares":
        y = target.detach().to(torch.float64)
        sol = least_squares(design, y).T  # [out, in(+1)]
        gap = F.mse_loss(design @ current.T, y) - F.mse_loss(design @ sol.T, y)
        return flat(sol), gap
    labels = target.detach()
    mu, sd = feats.mean(0), feats.std(0) if feats.shape[0] > 1 else torch.ones_like(feats[0])
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    if not bias:
        mu = torch.zeros_like(mu)  # without a bias the affine shift is not available: scale only
    std_design = torch.cat([(feats - mu) / sd, ones], dim=1) if bias else feats / sd
    w_std = current.clone()
    w_std[:, :in_f] = current[:, :in_f] * sd
    if bias:
        w_std[:, in_f] = current[:, in_f] + current[:, :in_f] @ mu
    w = w_std.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14, history_size=20,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(std_design @ w.T, labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_std = w.detach()
    raw = w_std.clone()
    raw[:, :in_f] = w_std[:, :in_f] / sd
    if bias:
        raw[:, in_f] = w_std[:, in_f] - raw[:, :in_f] @ mu
    start_loss = F.cross_entropy(design @ current.T, labels)
    end_loss = F.cross_entropy(std_design @ w_std.T, labels)
    if not end_loss <= start_loss:  # never report a worse head than the current one
        return flat(current), torch.zeros((), dtype=torch.float64, device=feats.device)
    return flat(raw), start_loss - end_loss
