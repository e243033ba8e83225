"""The coordinates a learned rule plays, as blocks: every player's head, then every player's trunk proposal.

A rule acts on K coordinates of B games laid out as ``[heads (h) ; P trunk proposals of n each]``: the h head
coordinates first, in blocks of any layout (a player's head is one block), then P trunk proposals of the trunk's n
coordinates each, one block each. Both forms of a learned agent lay their coordinates out so: one player in the env
(``[its h_m head ; its n trunk]``, P = 1) and every player of B games on the engine (``[all heads ; task 0's
proposal ; … ; task M−1's]``, P = M). Knowing it, a rule works on the trunk as a ``[B, P, n]`` view: a block's sum is
a sum over the last dimension and a per-block factor broadcasts, where per-coordinate gathers and scatters over the
K = h + M·n coordinates would copy the trunk (most of K) several times a step.

    blocks = Blocks(is_trunk, groups)               # validated once
    head, trunk = blocks.split(g)                   # [B, h], [B, P, n] views of g [B, K]
    norms = blocks.norms(head, trunk)               # [B, G]: each block's Euclidean norm
    per_head, per_trunk = blocks.spread(v)          # v [B, G] -> [B, h], [B, P, 1] (per_trunk(v): the second)
"""

from __future__ import annotations

import torch
from torch import Tensor


class Blocks:
    """The block layout of a rule's K coordinates (see the module docstring).

    Args:
        is_trunk: ``[K]`` bool: the coordinate is a trunk proposal's. It must be false on the first h coordinates
            and true on the rest.
        groups: ``[K]`` the block of each coordinate (default: ``is_trunk``, one player's head and trunk: blocks 0
            and 1). The trunk coordinates must form P runs of n coordinates each, one block a run, no block holding
            both head and trunk coordinates.
        num_groups: G, the number of blocks (default: the largest block index + 1; at least 2).
    """

    def __init__(self, is_trunk: Tensor, groups: Tensor | None = None, num_groups: int | None = None):
        if is_trunk.dtype != torch.bool or is_trunk.dim() != 1:
            raise ValueError(
                f"is_trunk must be a [K] bool tensor, got dtype {is_trunk.dtype}, shape {tuple(is_trunk.shape)}"
            )
        groups = is_trunk.long() if groups is None else groups
        if groups.shape != is_trunk.shape or groups.dtype != torch.long:
            raise ValueError(
                f"groups must be a [K] int64 tensor like is_trunk ({tuple(is_trunk.shape)}), got dtype {groups.dtype}, "
                f"shape {tuple(groups.shape)}"
            )
        if groups.device != is_trunk.device:
            raise ValueError(f"groups is on {groups.device}, is_trunk on {is_trunk.device}: put both on one device")
        flags, index = is_trunk.cpu(), groups.cpu()
        h = int((~flags).sum())
        if flags[:h].any():
            raise ValueError(
                "is_trunk must mark the last coordinates (the heads first, then the trunk proposals: the layout both "
                "forms of a learned agent play)"
            )
        if index.numel() and int(index.min()) < 0:
            raise ValueError(f"groups must be >= 0, got {int(index.min())}")
        top = int(index.max()) + 1 if index.numel() else 0
        num_groups = max(top, 2) if num_groups is None else num_groups
        if num_groups < top:
            raise ValueError(f"num_groups ({num_groups}) must exceed the largest block index ({top - 1})")
        values, counts = torch.unique_consecutive(index[h:], return_counts=True)
        runs = values.tolist()
        if len(set(runs)) != len(runs) or (counts.numel() and bool((counts != counts[0]).any())):
            raise ValueError(
                "the trunk coordinates must form runs of equal length, one block each (every player's trunk proposal "
                f"of the trunk's n coordinates), got runs of lengths {counts.tolist()} in blocks {runs}"
            )
        shared = set(runs) & set(index[:h].tolist())
        if shared:
            raise ValueError(
                f"blocks {sorted(shared)} hold both head and trunk coordinates; a block is one or the other"
            )
        device = is_trunk.device
        #: h, the number of head coordinates; G, the number of blocks; P trunk proposals of n coordinates each.
        self.num_heads, self.num_groups = h, num_groups
        self.num_trunks, self.trunk_size = len(runs), int(counts[0]) if runs else 0
        #: ``[h]`` the block of each head coordinate; ``[P]`` the block of each trunk proposal.
        self.head_groups = groups[:h]
        self.trunk_groups = values.to(device)
        #: ``[G]`` bool: the block is a trunk proposal; ``[G]`` the coordinates of each block.
        self.trunk_block = torch.zeros(num_groups, dtype=torch.bool, device=device)
        self.trunk_block[self.trunk_groups] = True
        ones = torch.ones(groups.shape, dtype=torch.float32, device=device)
        self.sizes = torch.zeros(num_groups, dtype=torch.float32, device=device).index_add(0, groups, ones)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Views ``[B, h]`` (the heads) and ``[B, P, n]`` (the trunk proposals) of ``x [B, K]``."""
        h = self.num_heads
        return x[:, :h], x[:, h:].view(x.shape[0], self.num_trunks, self.trunk_size)

    def join(self, head: Tensor, trunk: Tensor) -> Tensor:
        """``[B, K]`` from the heads ``[B, h]`` and the trunk proposals ``[B, P, n]`` (the inverse of :meth:`split`)."""
        return torch.cat([head, trunk.flatten(1)], dim=1)

    def sums(self, head: Tensor, trunk: Tensor) -> Tensor:
        """``[B, G]`` each block's sum of ``head [B, h]`` and ``trunk [B, P, n]`` (0 for a block with no coordinate)."""
        zeros = head.new_zeros(head.shape[0], self.num_groups)
        return zeros.index_add(1, self.head_groups, head).index_add(1, self.trunk_groups, trunk.sum(2))

    def norms(self, head: Tensor, trunk: Tensor) -> Tensor:
        """``[B, G]`` each block's Euclidean norm."""
        return self.sums(head.square(), trunk.square()).sqrt()

    def spread(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """A per-block ``v [B, G]`` per coordinate: ``[B, h]`` on the heads, ``[B, P, 1]`` (broadcasting) on the
        trunk."""
        return v[:, self.head_groups], self.per_trunk(v)

    def per_trunk(self, v: Tensor) -> Tensor:
        """The trunk proposals' part of :meth:`spread`: ``[B, P, 1]``."""
        return v[:, self.trunk_groups].unsqueeze(2)

    def __repr__(self) -> str:
        return f"Blocks(heads={self.num_heads}, trunks={self.num_trunks}x{self.trunk_size}, groups={self.num_groups})"
