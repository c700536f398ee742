"""The two-branch network: separate aerial and ground backbones, each with its spatial-aware head."""

from __future__ import annotations

import torch
from torch import nn

from model.backbone import DEFAULT_BACKBONE, build_backbone, feature_grid
from model.head import SpatialAwareHead
from utils.checkpoint import ModelConfig


def feature_positions(size_hw: tuple[int, int], backbone: str = DEFAULT_BACKBONE) -> int:
    """Number of positions of the feature map the backbone gives for an input of `size_hw`."""
    height, width = feature_grid(backbone, size_hw)
    return height * width


class Branch(nn.Module):
    """One view's half of the network as a module of its own, holding only that half's weights: images in,
    descriptors out, as `CrossViewNet.embed_sat` / `embed_grd` compute them."""

    def __init__(self, backbone: nn.Module, head: SpatialAwareHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images).flatten(2))


class CrossViewNet(nn.Module):
    """Aerial branch (`extract1`, `sa1`) and ground branch (`extract2`, `sa2`), named as in the published weights.

    The heads' sizes follow the configured input sizes and the backbone's feature map, so any image size
    works; the published weights need the sizes they were trained with. `from_config` builds one from a
    `ModelConfig`, which is how every entry point builds it.
    """

    def __init__(
        self,
        sat_size: tuple[int, int] = (256, 256),
        grd_size: tuple[int, int] = (128, 512),
        sa_num: int = 8,
        use_fc: bool = True,
        pretrained: bool = False,
        backbone: str = DEFAULT_BACKBONE,
    ) -> None:
        super().__init__()
        self.sat_size = tuple(sat_size)
        self.grd_size = tuple(grd_size)
        self.extract1 = build_backbone(backbone, pretrained)
        self.extract2 = build_backbone(backbone, pretrained)
        self.sa1 = SpatialAwareHead(feature_positions(self.sat_size, backbone), sa_num, use_fc)
        self.sa2 = SpatialAwareHead(feature_positions(self.grd_size, backbone), sa_num, use_fc)

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained: bool = False) -> CrossViewNet:
        """The network `config` describes; its ground branch sized for the field of view's slice."""
        return cls(config.sat_size, config.net_grd_size, config.sa_num, config.use_fc, pretrained, config.backbone)

    @property
    def descriptor_size(self) -> int:
        return self.extract1.out_channels * self.sa1.num_maps

    def branch(self, view: str) -> Branch:
        """The aerial ("sat") or ground ("grd") branch alone, sharing this network's modules and its mode (training
        or evaluation: an exporter traces the mode of the module it is given)."""
        branch = Branch(self.extract1, self.sa1) if view == "sat" else Branch(self.extract2, self.sa2)
        return branch.train(self.training)

    def embed_sat(self, sat: torch.Tensor) -> torch.Tensor:
        """Aerial images in [-1, 1], (B, 3, H, W) -> L2-normalised descriptors (B, D)."""
        return self.sa1(self.extract1(sat).flatten(2))

    def embed_grd(self, grd: torch.Tensor) -> torch.Tensor:
        """Ground panoramas in [-1, 1], (B, 3, H, W) -> L2-normalised descriptors (B, D)."""
        return self.sa2(self.extract2(grd).flatten(2))

    def forward(self, sat: torch.Tensor, grd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_sat(sat), self.embed_grd(grd)

    @torch.no_grad()
    def attention_maps(self, sat: torch.Tensor, grd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' attention maps shaped like the feature maps: (B, K, h, w) for each branch."""
        maps = []
        for backbone, head, image in ((self.extract1, self.sa1, sat), (self.extract2, self.sa2, grd)):
            features = backbone(image)
            attention = head.attention(features.flatten(2))
            maps.append(attention.transpose(1, 2).reshape(features.shape[0], -1, *features.shape[2:]))
        return maps[0], maps[1]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
