"""The paper's image networks as plain PyTorch modules (REFERENCE §3.1, §3.2), wrapped by :func:`~supsup_core.models.build_model`.

- :class:`GEMResNet18` -- the reduced ResNet-18 of the SplitCIFAR100 experiments: ``nf = 20``
  channels doubling over four stages of two basic blocks, a 3x3 stem at stride 1, average
  pooling, and a 1x1 convolution as the classifier;
- :class:`ResNet` (:func:`resnet18`, :func:`resnet50`) -- the standard ImageNet ResNets (7x7
  stem at stride 2, max-pooling, basic or bottleneck blocks, global average pooling), with a
  1x1 convolution as the classifier as in the reference.

Every convolution is bias-free; every BatchNorm is a plain ``nn.BatchNorm2d`` that the wrap
turns into per-task (or batch-statistics) normalisation.

Examples
--------
>>> import torch
>>> GEMResNet18(output_size=5)(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mnist import check_images

__all__ = ["BasicBlock", "Bottleneck", "GEMResNet18", "ResNet", "resnet18", "resnet50"]


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (a 1x1 projection when the shape changes)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(c_in, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != planes:
            self.shortcut = nn.Sequential(_conv(c_in, planes, 1, stride), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W) -> (B, planes, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, each with BatchNorm, and a residual connection."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv(c_in, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != planes * 4:
            self.shortcut = nn.Sequential(_conv(c_in, planes * 4, 1, stride), nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W) -> (B, 4 planes, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _stage(block: type, c_in: int, planes: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    layers = [block(c_in, planes, stride)] + [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers), planes * block.expansion


class GEMResNet18(nn.Module):
    """The reduced ResNet-18 of GEM and SupSup's SplitCIFAR100 runs (``nf`` channels in the first stage)."""

    def __init__(self, output_size: int = 5, nf: int = 20, image_shape: tuple[int, int, int] = (3, 32, 32)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.conv1 = _conv(self.image_shape[0], nf, 3)
        self.bn1 = nn.BatchNorm2d(nf)
        self.layer1, c = _stage(BasicBlock, nf, nf, 2, 1)
        self.layer2, c = _stage(BasicBlock, c, nf * 2, 2, 2)
        self.layer3, c = _stage(BasicBlock, c, nf * 4, 2, 2)
        self.layer4, c = _stage(BasicBlock, c, nf * 8, 2, 2)
        self.linear = nn.Conv2d(c, output_size, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, output_size)`` of images ``(B, 3, 32, 32)``."""
        out = F.relu(self.bn1(self.conv1(check_images(x, self.image_shape))))  # (B, nf, 32, 32)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))  # (B, 8 nf, 4, 4)
        out = F.adaptive_avg_pool2d(out, 1)  # (B, 8 nf, 1, 1): the reference's 4x4 average pooling at 32x32
        return self.linear(out).flatten(1)  # (B, output_size)


class ResNet(nn.Module):
    """The standard ImageNet ResNet with ``blocks`` per stage (64-128-256-512 planes)."""

    def __init__(self, block: type, blocks: tuple[int, int, int, int], output_size: int = 1000,
                 image_shape: tuple[int, int, int] = (3, 224, 224)):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.conv1 = nn.Conv2d(self.image_shape[0], 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1, c = _stage(block, 64, 64, blocks[0], 1)
        self.layer2, c = _stage(block, c, 128, blocks[1], 2)
        self.layer3, c = _stage(block, c, 256, blocks[2], 2)
        self.layer4, c = _stage(block, c, 512, blocks[3], 2)
        self.fc = nn.Conv2d(c, output_size, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, output_size)``."""
        out = F.relu(self.bn1(self.conv1(check_images(x, self.image_shape))))  # (B, 64, H/2, W/2)
        out = F.max_pool2d(out, 3, stride=2, padding=1)  # (B, 64, H/4, W/4)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))  # (B, 512 expansion, H/32, W/32)
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(out).flatten(1)  # (B, output_size)


def resnet18(output_size: int = 1000, image_shape: tuple[int, int, int] = (3, 224, 224)) -> ResNet:
    """ResNet-18: basic blocks, 2-2-2-2."""
    return ResNet(BasicBlock, (2, 2, 2, 2), output_size, image_shape)


def resnet50(output_size: int = 1000, image_shape: tuple[int, int, int] = (3, 224, 224)) -> ResNet:
    """ResNet-50: bottleneck blocks, 3-4-6-3."""
    return ResNet(Bottleneck, (3, 4, 6, 3), output_size, image_shape)
