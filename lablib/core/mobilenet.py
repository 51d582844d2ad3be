"""MobileNetV2 for CIFAR-10 (E2): inverted residuals with linear bottlenecks, beside ResNet-18.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018),
adapted to 32x32 inputs the usual way (kuangliu/pytorch-cifar): the stem conv
and the second stage have stride 1 instead of 2, so the feature maps are not
shrunk to 1x1. Shapes for a batch of B images at width 1.0:

    stem    conv3x3 3->32, BN, ReLU6          B x   32 x 32 x 32
    stage1  t1  c16  n1 s1                    B x   16 x 32 x 32
    stage2  t6  c24  n2 s1 (CIFAR: s1)        B x   24 x 32 x 32
    stage3  t6  c32  n3 s2                    B x   32 x 16 x 16
    stage4  t6  c64  n4 s2                    B x   64 x  8 x  8
    stage5  t6  c96  n3 s1                    B x   96 x  8 x  8
    stage6  t6  c160 n3 s2                    B x  160 x  4 x  4
    stage7  t6  c320 n1 s1                    B x  320 x  4 x  4
    head    conv1x1 320->1280, BN, ReLU6      B x 1280 x  4 x  4
    pool, Linear(1280, 10)                    B x 10

Each block: 1x1 expansion (x t) - BN - ReLU6 - depthwise 3x3 (stride s) - BN -
ReLU6 - 1x1 projection - BN, with no activation after the projection (the
linear bottleneck: ReLU on the narrow tensor would destroy information), and
an identity residual when stride is 1 and the channels are unchanged.
The width multiplier scales every channel count (rounded to a multiple of 8);
the head keeps 1280 channels for widths below 1, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (expansion t, output channels c, blocks n, first-block stride s), CIFAR strides.
CIFAR_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
HEAD_CHANNELS = 1280


def make_divisible(channels: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10 % below `channels`."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """expand 1x1 -> depthwise 3x3 -> linear 1x1 projection, plus identity when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:  # t = 1 has nothing to expand
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            # groups=hidden: one 3x3 filter per channel (9 MACs per output element, not 9 x C).
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),  # linear bottleneck: no activation here
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width={width!r} must be > 0 (e.g. 0.5, 1.0, 1.4).")
        self.width = width
        stem = make_divisible(32 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU6(inplace=True),
        )
        blocks, channels = [], stem
        for expansion, out, repeats, stride in CIFAR_STAGES:
            out = make_divisible(out * width)
            for block_stride in [stride] + [1] * (repeats - 1):  # only the first block strides
                blocks.append(InvertedResidual(channels, out, expansion, block_stride))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        head = make_divisible(HEAD_CHANNELS * max(1.0, width))
        self.head = nn.Sequential(
            nn.Conv2d(channels, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True)
        )
        self.fc = nn.Linear(head, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(self.stem(x)))  # B x 1280 x 4 x 4 for 32x32 inputs
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(torch.flatten(out, 1))


def mobilenet_v2(num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, width, in_channels)
