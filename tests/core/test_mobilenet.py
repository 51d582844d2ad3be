"""lablib.core.mobilenet (MobileNetV2 for CIFAR-10) and its MACs counted by lablib.core.model.count_macs."""

import pytest
import torch
from torch import nn

from lablib.core.mobilenet import InvertedResidual, make_divisible, mobilenet_v2
from lablib.core.model import count_macs, count_modules, count_parameters, resnet18


def test_mobilenet_shapes_and_blocks():
    model = mobilenet_v2().eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_modules(model, InvertedResidual) == 17
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert all(m.kernel_size == (3, 3) for m in depthwise)
    assert model.head[0].out_channels == 1280 and model.fc.in_features == 1280


def test_linear_bottleneck_and_residual():
    block = InvertedResidual(24, 24, 6, 1)
    assert block.use_residual and not InvertedResidual(24, 32, 6, 1).use_residual
    assert not InvertedResidual(24, 24, 6, 2).use_residual
    assert isinstance(block.block[-1], nn.BatchNorm2d)  # no activation after the projection
    assert block.block[0].out_channels == 24 * 6  # expansion


def test_width_multiplier_scales_channels():
    assert make_divisible(32 * 0.5) == 16 and make_divisible(24 * 0.35) == 8 and make_divisible(100) == 104
    small, full, wide = (count_parameters(mobilenet_v2(width=w)) for w in (0.5, 1.0, 1.4))
    assert small < full < wide
    assert mobilenet_v2(width=0.5).stem[0].out_channels == 16
    assert mobilenet_v2(width=1.4).head[0].out_channels == make_divisible(1280 * 1.4)
    with pytest.raises(ValueError, match="width"):
        mobilenet_v2(width=0)


def test_count_macs_matches_the_formula_per_layer():
    dense = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(dense, (1, 3, 8, 8)) == 8 * 8 * 8 * 3 * 9  # H x W x Cout x Cin x k x k
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert count_macs(depthwise, (1, 8, 8, 8)) == 8 * 8 * 8 * 9  # one 3x3 filter per channel
    assert count_macs(nn.Linear(10, 5), (4, 10)) == 4 * 10 * 5


def test_count_macs_of_the_models():
    assert count_macs(resnet18()) / 1e9 == pytest.approx(0.56, abs=0.01)  # LAB_SPEC: about 0.56 GMACs
    # E2's default widths span about 20 M to 300 M MACs at 32 x 32
    macs = [count_macs(mobilenet_v2(width=w)) / 1e6 for w in (0.4, 0.5, 0.75, 1.0, 1.4, 1.75)]
    assert macs == sorted(macs) and 20 < macs[0] < 25 and 250 < macs[-1] < 300
    assert macs[1] == pytest.approx(28.0, abs=0.1)  # the width near 30 M MACs
    model = resnet18().train()
    count_macs(model)
    assert model.training  # the mode is restored
