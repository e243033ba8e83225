"""``mtg_env._lbfgs``: torch.optim.LBFGS's strong-Wolfe step without torch.optim, the same numbers bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtg_env._lbfgs import lbfgs_strong_wolfe


def _problem(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    design = torch.randn(300, 9, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 4, (300,), generator=gen)
    w0 = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    return design, target, w0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_iter", [1, 7, 200])
def test_the_port_gives_torch_optim_lbfgs_numbers_bit_for_bit(seed: int, max_iter: int) -> None:
    design, target, w0 = _problem(seed)
    kwargs = {"lr": 1.0, "max_iter": max_iter, "tolerance_grad": 1e-10, "tolerance_change": 1e-14, "history_size": 5}
    ours = w0.clone().requires_grad_(True)

    def closure() -> torch.Tensor:
        ours.grad = None
        loss = F.cross_entropy(design @ ours.T, target)
        loss.backward()
        return loss

    lbfgs_strong_wolfe(ours, closure, **kwargs)
    theirs = w0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theirs], line_search_fn="strong_wolfe", **kwargs)

    def torch_closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(design @ theirs.T, target)
        loss.backward()
        return loss

    opt.step(torch_closure)
    assert torch.equal(ours.detach(), theirs.detach())
    assert not torch.equal(ours.detach(), w0)  # it moved
