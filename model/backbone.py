"""The truncated ResNet-34 both branches use: conv1 .. layer3, no max-pool, 256 channels at stride 8."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import ResNet34_Weights, resnet34

IMAGENET_WEIGHTS = ResNet34_Weights.IMAGENET1K_V1


class PretrainedWeightsUnavailable(RuntimeError):
    """torchvision could not fetch the ImageNet weights (usually: no network)."""


def imagenet_weights_location() -> str:
    """Where torchvision looks for the ImageNet file before it tries to download it."""
    return f"{torch.hub.get_dir()}/checkpoints/{IMAGENET_WEIGHTS.url.rsplit('/', 1)[-1]}"


class ResNet34Backbone(nn.Module):
    """ResNet-34 cut after layer3 with the max-pool dropped, as the authors' code builds it.

    Dropping the max-pool keeps the output at stride 8, which is what gives the spatial-aware head
    (H/8)*(W/8) positions. `layers` keeps the indices 0, 1, 3, 4, 5 of the published checkpoints.
    """

    out_channels = 256
    stride = 8

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        try:
            net = resnet34(weights=IMAGENET_WEIGHTS if pretrained else None)
        except OSError as exc:  # URLError and a refused connection are OSErrors
            raise PretrainedWeightsUnavailable(
                f"could not get the ImageNet weights for ResNet-34 from {IMAGENET_WEIGHTS.url} ({exc}); "
                f"download that file to {imagenet_weights_location()} or pass --no_pretrained to train from scratch"
            ) from exc
        self.layers = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
