"""The lab's ResNet-18 for CIFAR-10 (LAB_SPEC "Model"), written out, not imported.

Shapes for a batch of B 32x32 images:
    stem    conv3x3 3->64, BN, ReLU          B x  64 x 32 x 32   (no max-pool)
    layer1  2 BasicBlocks,  64 ch, stride 1   B x  64 x 32 x 32
    layer2  2 BasicBlocks, 128 ch, stride 2   B x 128 x 16 x 16
    layer3  2 BasicBlocks, 256 ch, stride 2   B x 256 x  8 x  8
    layer4  2 BasicBlocks, 512 ch, stride 2   B x 512 x  4 x  4
    pool    global average                    B x 512
    fc      Linear(512, 10)                   B x 10
Trainable parameters: 11,173,962 with BatchNorm, 11,164,362 without (the
9,600 BatchNorm weights and biases). The module uses only constructs that
`torch.jit.script` accepts, so it scripts unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SHAPE = (3, 32, 32)  # C x H x W of one CIFAR-10 image, the input the lab's ResNet-18 is built for


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    # nn.Identity keeps the module tree (and so the scripted graph) the same shape.
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(channels, batch_norm)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(channels, batch_norm)
        self.shortcut = nn.Sequential()  # identity when the shape is unchanged
        if stride != 1 or in_channels != channels:
            # 1x1 projection so the residual sum has matching shape.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                _norm(channels, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self, blocks_per_group: list[int], num_classes: int = 10, batch_norm: bool = True, in_channels: int = 3
    ):
        super().__init__()
        self.in_channels = 64
        self.batch_norm = batch_norm
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = _norm(64, batch_norm)
        self.layer1 = self._make_layer(64, blocks_per_group[0], stride=1)
        self.layer2 = self._make_layer(128, blocks_per_group[1], stride=2)
        self.layer3 = self._make_layer(256, blocks_per_group[2], stride=2)
        self.layer4 = self._make_layer(512, blocks_per_group[3], stride=2)
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_layer(self, channels: int, blocks: int, stride: int) -> nn.Sequential:
        # Only the first block of a group changes stride/channels.
        layers = []
        for block_stride in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_channels, channels, block_stride, self.batch_norm))
            self.in_channels = channels * BasicBlock.expansion
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The B x 512 x 4 x 4 feature map before pooling (for 32x32 inputs)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        return self.layer4(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), 1)  # B x 512 x 1 x 1
        return self.fc(torch.flatten(out, 1))


def resnet18(num_classes: int = 10, batch_norm: bool = True, in_channels: int = 3) -> ResNet:
    return ResNet([2, 2, 2, 2], num_classes, batch_norm, in_channels)


class SmallCNN(nn.Module):
    """A small CNN for 28x28 grayscale digits (MNIST), for the E1 sweeps.

    B x 1 x 28 x 28 -> conv 32 -> pool -> conv 64 -> pool -> B x 64*7*7 -> 128 -> 10.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # B x 32 x 14 x 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # B x 64 x 7 x 7
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, *IMAGE_SHAPE)) -> int:
    """Multiply-accumulates of one forward pass on a zero input of `input_shape`, counted by FlopCounterMode.

    FlopCounterMode counts a multiply-add as 2 FLOPs and counts only convolutions
    and matrix products (not BatchNorm or activations), so MACs = FLOPs / 2.
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    inputs = torch.zeros(input_shape, dtype=parameter.dtype, device=parameter.device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    model.train(was_training)
    return counter.get_total_flops() // 2


def count_gradients(model: nn.Module) -> int:
    """Number of gradient elements that exist after a backward pass."""
    return sum(p.grad.numel() for p in model.parameters() if p.grad is not None)


def count_modules(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())
