"""``torch.optim.LBFGS(..., line_search_fn="strong_wolfe").step`` on one tensor, without ``torch.optim``.

Any ``torch.optim`` optimizer imports ``torch._dynamo`` on its first use (its methods are wrapped by
``torch._disable_dynamo``): about 2.4 s on a busy 2-core machine, a sixth of the main job (``mtg-env run``), which
needs L-BFGS only for the digits suite's head Nash gaps. This is torch's own algorithm, step for step and
operation for operation (its line search, ``torch.optim.lbfgs._strong_wolfe``, is called as is), so it gives
the same numbers bit for bit (``tests/test_lbfgs.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.lbfgs import _strong_wolfe


def lbfgs_strong_wolfe(
    w: Tensor,
    closure: Callable[[], Tensor],
    lr: float = 1.0,
    max_iter: int = 20,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
) -> None:
    """Minimise in place over ``w`` (a leaf that requires grad) as one ``LBFGS([w], ...).step(closure)`` would.

    Args:
        w: The parameter (modified in place).
        closure: Sets ``w.grad = None``, computes the loss, calls ``backward()`` and returns the loss.
        lr, max_iter, tolerance_grad, tolerance_change, history_size: As :class:`torch.optim.LBFGS`'s
            (``max_eval`` is its default, ``max_iter * 5 // 4``).
    """
    max_eval = max_iter * 5 // 4
    with torch.no_grad():
        _run(w, torch.enable_grad()(closure), lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size)


def _flat_grad(w: Tensor) -> Tensor:
    return w.new(w.numel()).zero_() if w.grad is None else torch.cat([w.grad.view(-1)], 0)


def _run(
    w: Tensor,
    closure: Callable[[], Tensor],
    lr: float,
    max_iter: int,
    max_eval: int,
    tolerance_grad: float,
    tolerance_change: float,
    history_size: int,
) -> None:
    def directional_evaluate(x: list[Tensor], t: float, d: Tensor) -> tuple[float, Tensor]:
        w.add_(d.view_as(w), alpha=t)
        loss = float(closure())
        flat = _flat_grad(w)
        w.copy_(x[0])
        return loss, flat

    loss = float(closure())
    current_evals = 1
    flat_grad = _flat_grad(w)
    if flat_grad.abs().max() <= tolerance_grad:
        return
    d: Tensor = flat_grad.neg()
    # Step sizes, curvature pairs and scalars are 0-d tensors or floats, as in torch: typed loosely.
    t: Any = 0.0
    old_dirs: list[Tensor] = []
    old_stps: list[Tensor] = []
    ro: list[Any] = []
    h_diag: Any = 1
    al: list[Any] = [None] * history_size
    prev_flat_grad: Tensor | None = None
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        if n_iter == 1:
            d = flat_grad.neg()
        else:
            assert prev_flat_grad is not None
            y = flat_grad.sub(prev_flat_grad)
            s = d.mul(t)
            ys = y.dot(s)
            if ys > 1e-10:
                if len(old_dirs) == history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / y.dot(y)
            q = flat_grad.neg()
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = old_stps[i].dot(q) * ro[i]
                q.add_(old_dirs[i], alpha=-al[i])
            d = r = torch.mul(q, h_diag)
            for i in range(len(old_dirs)):
                be_i = old_dirs[i].dot(r) * ro[i]
                r.add_(old_stps[i], alpha=al[i] - be_i)
        if prev_flat_grad is None:
            prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
        else:
            prev_flat_grad.copy_(flat_grad)
        prev_loss = loss
        first: Any = min(1.0, 1.0 / flat_grad.abs().sum())  # type: ignore[call-overload]
        t = first * lr if n_iter == 1 else lr
        gtd = flat_grad.dot(d)
        if gtd > -tolerance_change:
            break
        x_init = [w.clone(memory_format=torch.contiguous_format)]
        loss, flat_grad, t, ls_func_evals = _strong_wolfe(
            directional_evaluate, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals
        )
        w.add_(d.view_as(w), alpha=t)
        opt_cond = flat_grad.abs().max() <= tolerance_grad
        current_evals += ls_func_evals
        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if d.mul(t).abs().max() <= tolerance_change:
            break
        if abs(loss - prev_loss) < tolerance_change:
            break
