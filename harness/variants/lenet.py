"""The tutorial's LeNet, with the ablation knobs as constructor arguments.

With no knobs set, for CIFAR-10's 3×32×32 images and 10 classes, it is the tutorial's network
layer for layer, created in the same order, so that the same seed gives the same initial weights as
the tutorial's code. Other image shapes and class counts change only the first convolution's input
channels, the flatten size and the last layer.
"""

from __future__ import annotations

from torch import nn


def flat_size(image_shape: tuple[int, int, int]) -> int:
    """Features after the two 5×5 convolutions and 2×2 poolings: 16 × 5 × 5 for 32×32 images."""
    _, h, w = image_shape
    for _ in range(2):
        h, w = (h - 4) // 2, (w - 4) // 2
    if h < 1 or w < 1:
        raise ValueError(f"LeNet needs images of at least 16×16 pixels, got {image_shape[1]}×{image_shape[2]}")
    return 16 * h * w


class LeNet(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        num_classes: int = 10,
        dropout: float = 0.0,
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        # Attribute order decides the order in which weights are drawn: it mirrors the tutorial.
        self.conv1 = nn.Conv2d(image_shape[0], 6, 5)
        self.bn1 = nn.BatchNorm2d(6) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16) if batchnorm else nn.Identity()
        self.fc1 = nn.Linear(flat_size(image_shape), 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.relu = nn.ReLU()
        # Dropout after the ReLUs of the two hidden linear layers; Identity when off.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = x.flatten(1)
        x = self.drop(self.relu(self.fc1(x)))
        x = self.drop(self.relu(self.fc2(x)))
        return self.fc3(x)
