"""The efficiency card's counts against a count by hand."""

from torch import nn

from benchmarks.cost import gallery_bytes, multiply_adds, parameters
from model.network import CrossViewNet
from utils.checkpoint import ModelConfig


def resnet34_branch_macs_by_hand(height: int, width: int, maps: int) -> int:
    """The paper's aerial branch, layer by layer: ResNet-34 to layer3 without the max-pool, then the head."""
    def conv(scale: int, out_channels: int, in_channels: int, kernel: int) -> int:
        return (height // scale) * (width // scale) * out_channels * in_channels * kernel * kernel

    macs = conv(2, 64, 3, 7)  # conv1, stride 2
    macs += 6 * conv(2, 64, 64, 3)  # layer1: 3 blocks of two 3x3 convolutions
    macs += conv(4, 128, 64, 3) + conv(4, 128, 128, 3) + conv(4, 128, 64, 1)  # layer2, first block and shortcut
    macs += 6 * conv(4, 128, 128, 3)  # layer2: 3 more blocks
    macs += conv(8, 256, 128, 3) + conv(8, 256, 256, 3) + conv(8, 256, 128, 1)  # layer3, first block and shortcut
    macs += 10 * conv(8, 256, 256, 3)  # layer3: 5 more blocks
    positions = (height // 8) * (width // 8)
    macs += 2 * positions * (positions // 2) * maps  # the head's two linear maps per attention map
    macs += 256 * positions * maps  # the weighted sums of the features
    return macs


def test_multiply_adds_of_the_papers_branch_equal_a_count_by_hand():
    net = CrossViewNet.from_config(ModelConfig((64, 96), (32, 128), sa_num=4)).eval()
    assert multiply_adds(net.branch("sat"), (64, 96)) == resnet34_branch_macs_by_hand(64, 96, 4)
    assert multiply_adds(net.branch("grd"), (32, 128)) == resnet34_branch_macs_by_hand(32, 128, 4)


def test_a_shared_branch_counts_once_and_galleries_are_descriptors_times_references():
    shared, other = nn.Linear(10, 4), nn.Linear(10, 4)
    assert parameters(shared, shared) == parameters(shared) == 44
    assert parameters(shared, other) == 88
    assert gallery_bytes(2048, 1_000_000) == 8_192_000_000
    assert multiply_adds(shared, (1, 10)) == 3 * 10 * 4  # a (1, 3, 1, 10) input: 3 rows of 10 -> 4
