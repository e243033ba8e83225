"""A :class:`~mtg_env.suites.module.ModuleSuite`'s modules as flat vectors: each module's trainable parameters
laid out as one vector, the module called on views of it, and how ``init="seeded"`` draws each coordinate."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

_KEEP, _UNIFORM, _NORMAL = 0, 1, 2


@dataclass(frozen=True)
class _Layout:
    """The trainable parameters of one module as one flat vector: names, shapes and sizes in order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def views(self, flat: Tensor) -> list[Tensor]:
        """Views of the flat vector ``flat [size]`` shaped as the parameters (no copy; gradients flow to ``flat``)."""
        return [p.view(s) for p, s in zip(flat.split(self.sizes), self.shapes, strict=True)]


class _Bound:
    """A module called with its trainable parameters replaced by views of a flat vector, as
    :func:`torch.func.functional_call` calls it (tied parameters included), without that function's per-call
    bookkeeping (0.08 ms a call here, a sixth of a MultiDigits game-step's overhead): the slots each parameter
    occupies are found once, filled for the call and given their parameters back after it."""

    def __init__(self, module: nn.Module, layout: _Layout):
        self.module, self.layout = module, layout
        params = dict(module.named_parameters())
        position = {id(params[n]): i for i, n in enumerate(layout.names)}
        self.slots: list[tuple[nn.Module, str, int]] = []
        for sub in module.modules():
            for attr, p in sub._parameters.items():
                if p is not None and id(p) in position:
                    self.slots.append((sub, attr, position[id(p)]))

    def __call__(self, flat: Tensor, *args: Any) -> Any:
        views = self.layout.views(flat)
        saved = [sub._parameters[attr] for sub, attr, _ in self.slots]
        try:
            for sub, attr, i in self.slots:
                sub._parameters[attr] = views[i]  # type: ignore[assignment]  # a tensor where a Parameter was
            return self.module(*args)
        finally:
            for (sub, attr, _), p in zip(self.slots, saved, strict=True):
                sub._parameters[attr] = p


# ------------------------------------------------------------------------------------- flattening
def _own_copy(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The suite's copy of ``module``: on ``device``, floating tensors in ``dtype``, in eval mode."""
    own = copy.deepcopy(module).to(device=device, dtype=dtype)
    own.eval()
    return own


def _layout(module: nn.Module) -> _Layout:
    items = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    return _Layout(
        tuple(n for n, _ in items), tuple(p.shape for _, p in items), tuple(int(p.numel()) for _, p in items)
    )


def _flat_values(module: nn.Module, layout: _Layout, device: torch.device) -> Tensor:
    """The module's current trainable parameters as one flat float64 vector on ``device``, in ``layout``'s order."""
    params = dict(module.named_parameters())
    parts = [params[n].detach().reshape(-1).to(torch.float64) for n in layout.names]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def _init_table(module: nn.Module, layout: _Layout) -> tuple[Tensor, Tensor]:
    """Per coordinate of ``layout``: how ``init="seeded"`` draws it (keep, uniform or normal) and its scale (the
    uniform's bound, the normal's standard deviation), as PyTorch's ``reset_parameters`` of each layer would."""
    rules: dict[str, tuple[int, float]] = {}
    for prefix, sub in module.named_modules():
        own = dict(sub.named_parameters(recurse=False))
        found: dict[str, tuple[int, float]] = {}
        if isinstance(sub, (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)) and "weight" in own:
            w = own["weight"]
            fan_in = w.shape[1] * math.prod(w.shape[2:]) if isinstance(sub, nn.modules.conv._ConvNd) else w.shape[1]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            found = {k: (_UNIFORM, bound) for k in own if k in ("weight", "bias")}
        elif isinstance(sub, nn.RNNBase):
            bound = 1.0 / math.sqrt(sub.hidden_size) if sub.hidden_size > 0 else 0.0
            found = {k: (_UNIFORM, bound) for k in own}
        elif isinstance(sub, nn.Embedding) and "weight" in own:
            found = {"weight": (_NORMAL, 1.0)}
        for k, rule in found.items():
            rules[f"{prefix}.{k}" if prefix else k] = rule
    kinds: list[Tensor] = []
    scales: list[Tensor] = []
    params = dict(module.named_parameters())
    for name, size in zip(layout.names, layout.sizes, strict=True):
        kind, scale = rules.get(name, (_KEEP, 0.0))
        kind_t = torch.full((size,), kind, dtype=torch.int8)
        owner = _owner(module, name)
        if kind == _NORMAL and isinstance(owner, nn.Embedding) and owner.padding_idx is not None:
            row = torch.zeros(params[name].shape, dtype=torch.bool)
            row[owner.padding_idx] = True
            kind_t[row.view(-1)] = _KEEP  # the padding row stays as the module has it (zeros by default)
        kinds.append(kind_t)
        scales.append(torch.full((size,), scale, dtype=torch.float64))
    if not kinds:
        return torch.zeros(0, dtype=torch.int8), torch.zeros(0, dtype=torch.float64)
    return torch.cat(kinds), torch.cat(scales)


def _owner(module: nn.Module, name: str) -> nn.Module:
    path = name.rpartition(".")[0]
    return module.get_submodule(path) if path else module
