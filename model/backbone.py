"""The feature extractors a branch can use, looked up by name: the paper's truncated ResNet-34 and lighter ones.

A backbone maps images (B, 3, H, W) to a feature map (B, `out_channels`, h, w); the spatial-aware head
attends over its h * w positions, which `feature_grid` computes without running it. Adding one is one
entry here: a subclass with `register_backbone`, its channels, stride and ImageNet weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet18_Weights,
    ResNet34_Weights,
    WeightsEnum,
    mobilenet_v3_large,
    resnet18,
    resnet34,
)

DEFAULT_BACKBONE = "resnet34"


class PretrainedWeightsUnavailable(RuntimeError):
    """torchvision could not fetch the ImageNet weights (usually: no network)."""


class Backbone(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] -> features (B, out_channels, about H/stride, about W/stride)."""

    name: str
    out_channels: int
    stride: int
    imagenet_weights: WeightsEnum

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.layers = self.build(self.imagenet_weights if pretrained else None)

    def build(self, weights: WeightsEnum | None) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


BACKBONES: dict[str, type[Backbone]] = {}


def register_backbone(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    def register(cls: type[Backbone]) -> type[Backbone]:
        cls.name = name
        BACKBONES[name] = cls
        return cls

    return register


def weights_location(weights: WeightsEnum) -> str:
    """Where torchvision looks for an ImageNet file before it tries to download it."""
    return f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    """The backbone registered as `name`, with ImageNet weights when `pretrained` (fetched when not on disk)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    cls = BACKBONES[name]
    try:
        return cls(pretrained)
    except OSError as exc:  # URLError and a refused connection are OSErrors
        raise PretrainedWeightsUnavailable(
            f"could not get the ImageNet weights for {name} from {cls.imagenet_weights.url} ({exc}); download "
            f"that file to {weights_location(cls.imagenet_weights)} or pass --no_pretrained to train from scratch"
        ) from exc


def feature_grid(name: str, size_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the feature map the backbone `name` gives for images of `size_hw`, from shapes alone."""
    with torch.device("meta"):
        return tuple(BACKBONES[name]()(torch.empty(1, 3, *size_hw)).shape[2:])


def backbone_of_state(state: dict[str, torch.Tensor], branch: str = "extract1") -> str | None:
    """The registered backbone whose tensors `state` holds under `branch.`, by names and shapes; None if none."""
    found = {key[len(branch) + 1:]: tuple(value.shape) for key, value in state.items() if key.startswith(f"{branch}.")}
    for name, cls in BACKBONES.items():
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in cls().state_dict().items()}
        if expected == found:
            return name
    return None


def _resnet_to_layer3(net: nn.Module) -> nn.Sequential:
    """conv1 .. layer3 without the max-pool: stride 8. `layers` keeps indices 0, 1, 3, 4, 5 of the published
    checkpoints (2 is the ReLU)."""
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3)


@register_backbone("resnet34")
class ResNet34Backbone(Backbone):
    """The paper's: ResNet-34 cut after layer3 with the max-pool dropped, as the authors' code builds it.

    Dropping the max-pool keeps the output at stride 8, which gives the spatial-aware head (H/8)*(W/8)
    positions.
    """

    out_channels, stride, imagenet_weights = 256, 8, ResNet34_Weights.IMAGENET1K_V1

    def build(self, weights: WeightsEnum | None) -> nn.Module:
        return _resnet_to_layer3(resnet34(weights=weights))


@register_backbone("resnet34_maxpool")
class ResNet34MaxPoolBackbone(Backbone):
    """ResNet-34 cut after layer3 with its max-pool kept: stride 16, so a quarter of the paper's positions and of
    its backbone's multiply-adds past the first convolution. It shows what dropping the max-pool costs."""

    out_channels, stride, imagenet_weights = 256, 16, ResNet34_Weights.IMAGENET1K_V1

    def build(self, weights: WeightsEnum | None) -> nn.Module:
        net = resnet34(weights=weights)
        return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)


@register_backbone("resnet18")
class ResNet18Backbone(Backbone):
    """ResNet-18 truncated as the paper truncates ResNet-34: a third of its parameters, the same output shape."""

    out_channels, stride, imagenet_weights = 256, 8, ResNet18_Weights.IMAGENET1K_V1

    def build(self, weights: WeightsEnum | None) -> nn.Module:
        return _resnet_to_layer3(resnet18(weights=weights))


@register_backbone("mobilenet_v3_large")
class MobileNetV3Backbone(Backbone):
    """MobileNetV3-Large's features up to its last stride-16 block (112 channels): 0.8 M parameters, and a
    sixteenth of ResNet-34's positions for the head."""

    out_channels, stride, imagenet_weights = 112, 16, MobileNet_V3_Large_Weights.IMAGENET1K_V1

    def build(self, weights: WeightsEnum | None) -> nn.Module:
        return mobilenet_v3_large(weights=weights).features[:13]
