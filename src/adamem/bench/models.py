"""The classifiers: an MLP and a ResNet for ``digits``, a CNN and a ResNet for MNIST-1D (1-D)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def mlp(inputs: int, hidden: int, classes: int) -> nn.Module:
    """Flatten, one hidden ReLU layer, linear read-out."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes)
    )


class ConvBase1d(nn.Module):
    """The CNN of the MNIST-1D paper (``ConvBase``): three stride-2 convolutions with ReLU and a
    linear read-out; 40 inputs shrink to 19, 10 and 5 positions."""

    def __init__(self, channels: int = 25, length: int = 40, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        for kernel in (5, 3, 3):
            length = (length + 2 - kernel) // 2 + 1
        self.linear = nn.Linear(channels * length, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x[:, None]))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.linear(x.flatten(1))


# The convolution and batch norm of a ResNet on signals (1) or on images (2 dimensions).
LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d), 2: (nn.Conv2d, nn.BatchNorm2d)}


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` with convolutions of width 3 in each of
    ``dims`` dimensions."""

    def __init__(self, channels: int, dims: int = 2):
        super().__init__()
        conv, norm = LAYERS[dims]
        self.conv1 = conv(channels, channels, 3, padding=1, bias=False)
        self.bn1 = norm(channels)
        self.conv2 = conv(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """A width-3 stem, ``blocks`` residual blocks at full resolution, global average pooling
    and a linear read-out; for single-channel images (``dims=2``) or signals (``dims=1``).

    >>> import torch
    >>> ResNet(channels=4, blocks=1, dims=1)(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: int, blocks: int, classes: int = 10, dims: int = 2):
        super().__init__()
        conv, norm = LAYERS[dims]
        self.stem = nn.Sequential(
            conv(1, channels, 3, padding=1, bias=False), norm(channels), nn.ReLU()
        )
        self.blocks = nn.Sequential(*(ResidualBlock(channels, dims) for _ in range(blocks)))
        self.head = nn.Linear(channels, classes)
        self.pooled = tuple(range(2, 2 + dims))  # the signal's or image's positions

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x[:, None])).mean(self.pooled))
