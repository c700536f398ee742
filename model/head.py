"""Spatial-aware attention: K maps over the feature map's positions, one descriptor slice per map."""

from __future__ import annotations

import torch
from torch import nn


class SpatialAwareHead(nn.Module):
    """Channel-wise max pooling, then two linear maps (no activation between them) per attention map.

    Parameters keep the authors' layout and names: `w1 (in, in/2, K)`, `b1 (1, in/2, K)`,
    `w2 (in/2, in, K)`, `b2 (1, in, K)` with `in` the number of feature-map positions, so the
    published checkpoints load unchanged. With `use_fc=False` (the paper's ablation) the max-pooled
    map itself is the single attention map and the head has no parameters.
    """

    def __init__(self, num_positions: int, num_maps: int = 8, use_fc: bool = True) -> None:
        super().__init__()
        self.num_positions = num_positions
        self.num_maps = num_maps if use_fc else 1
        self.use_fc = use_fc
        if use_fc:
            hidden = num_positions // 2
            self.w1 = nn.Parameter(torch.empty(num_positions, hidden, num_maps).normal_(0.0, 0.005))
            self.b1 = nn.Parameter(torch.full((1, hidden, num_maps), 0.1))
            self.w2 = nn.Parameter(torch.empty(hidden, num_positions, num_maps).normal_(0.0, 0.005))
            self.b2 = nn.Parameter(torch.full((1, num_positions, num_maps), 0.1))

    def attention(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, P) features -> (B, P, K) attention maps."""
        pooled = features.amax(dim=1)
        if not self.use_fc:
            return pooled.unsqueeze(-1)
        hidden = torch.einsum("bi,ijk->bjk", pooled, self.w1) + self.b1
        return torch.einsum("bjk,jik->bik", hidden, self.w2) + self.b2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, P) features -> (B, C*K) descriptor, channel-major, L2-normalised."""
        pooled = torch.bmm(features, self.attention(features))
        return nn.functional.normalize(pooled.flatten(1), p=2, dim=1)
