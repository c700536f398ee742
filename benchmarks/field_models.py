"""The field's models, rebuilt for their cost only (random weights, no download), at their published input sizes.

Each is a pair of branches, images -> descriptor, as its repository builds it:

- SAFA (Shi et al., NeurIPS 2019; github.com/shiyujiao/cross_view_localization_SAFA, script/spatial_net.py): two
  VGG-16 convolutional parts (conv1_1 .. conv5_3), a 2x2 max-pool, and a spatial-aware embedding of 8 maps over
  the positions; both views are 128 x 512, the aerial one polar-transformed (a resampling, not counted).
- TransGeo (Zhu et al., CVPR 2022; github.com/Jeff-Zilence/TransGeo2022, model/TransGeo.py): two DeiT-S distilled
  transformers with 1000-d heads; CVUSA sizes, ground 112 x 616 and aerial 256 x 256 (the second stage's 320 x 320
  aerial input keeps 64 % of its 400 patches, 256, as many as 256 x 256 gives).
- Sample4Geo (Deuser et al., ICCV 2023; github.com/Skyy93/Sample4Geo, train_cvusa.py): one ConvNeXt-B shared by
  both views, pooled 1024-d descriptor; CVUSA sizes, aerial 384 x 384 and ground 140 x 768 (VIGOR: 384 x 768).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import convnext_base, vgg16


class SafaSpatialAware(nn.Module):
    """SAFA's embedding: the channel mean of the map, two linear maps per attention map, a weighted sum."""

    def __init__(self, positions: int, maps: int = 8) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(positions, positions // 2, maps) * 0.005)
        self.b1 = nn.Parameter(torch.full((1, positions // 2, maps), 0.1))
        self.w2 = nn.Parameter(torch.randn(positions // 2, positions, maps) * 0.005)
        self.b2 = nn.Parameter(torch.full((1, positions, maps), 0.1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        local = features.flatten(2)  # (B, C, P)
        hidden = torch.einsum("bi,ijd->bjd", local.mean(1), self.w1) + self.b1
        weights = torch.einsum("bjd,jid->bid", hidden, self.w2) + self.b2
        return nn.functional.normalize(torch.bmm(local, weights).flatten(1), dim=1)


class SafaBranch(nn.Module):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.features = nn.Sequential(*vgg16().features[:30], nn.MaxPool2d(2))  # conv5_3 + ReLU, then SAFA's pool
        self.embed = SafaSpatialAware((size[0] // 32) * (size[1] // 32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(images))


class ConvNeXtDescriptor(nn.Module):
    """ConvNeXt-B without its classifier's last linear layer: features, average pool, layer norm (timm's
    num_classes=0, which Sample4Geo uses)."""

    def __init__(self) -> None:
        super().__init__()
        net = convnext_base()
        self.features, self.pool, self.norm = net.features, net.avgpool, net.classifier[:2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pool(self.features(images)))


def deit_small_distilled(size: tuple[int, int]) -> nn.Module:
    """TransGeo's branch: timm's DeiT-S distilled at `size` with a 1000-d head (a benchmark dependency only)."""
    import timm

    return timm.create_model("deit_small_distilled_patch16_224", pretrained=False, img_size=size, num_classes=1000)


def _safa() -> tuple[nn.Module, tuple[int, int], nn.Module, tuple[int, int]]:
    size = (128, 512)
    return SafaBranch(size), size, SafaBranch(size), size


def _transgeo() -> tuple[nn.Module, tuple[int, int], nn.Module, tuple[int, int]]:
    return deit_small_distilled((256, 256)), (256, 256), deit_small_distilled((112, 616)), (112, 616)


def _sample4geo() -> tuple[nn.Module, tuple[int, int], nn.Module, tuple[int, int]]:
    shared = ConvNeXtDescriptor()
    return shared, (384, 384), shared, (140, 768)


# name -> a builder of (aerial branch, aerial size, ground branch, ground size); a shared branch is one module
FIELD_MODELS = {"SAFA": _safa, "TransGeo": _transgeo, "Sample4Geo": _sample4geo}
