"""Deep copies of user objects (stateful consensus callables) that never go through ``torch.Generator``'s pickle path.

``copy.deepcopy`` of a ``torch.Generator`` calls its ``__reduce_ex__``, which in torch 2.13 drops one reference to
``None`` each time (a refcount bug in torch's C code; measured: ``sys.getrefcount(None)`` falls by 1 a copy). The engine
copies a stateful callable at every step, so a long game (the toy replays: 100 000 steps) ran ``None``'s count to zero
and Python aborted ("none_dealloc"). Here every generator reachable from the object is cloned through its state first
and handed to ``deepcopy`` in its memo. A leaf module: it imports only torch.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def _generators(obj: Any) -> list[torch.Generator]:
    """Every ``torch.Generator`` reachable from ``obj`` through attributes, lists, tuples, sets and dict values."""
    found: list[torch.Generator] = []
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None), torch.Tensor)):
            continue
        seen.add(id(item))
        if isinstance(item, torch.Generator):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack.extend(vars(item).values())
    return found


def deepcopy(obj: Any) -> Any:
    """``copy.deepcopy(obj)``, its generators cloned by state (the same draws follow) rather than pickled."""
    memo: dict[int, Any] = {}
    for generator in _generators(obj):
        clone = torch.Generator(device=generator.device)
        clone.set_state(generator.get_state())
        memo[id(generator)] = clone
    return copy.deepcopy(obj, memo)
