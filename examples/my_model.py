"""A model of your own, as the study takes it: `source: python:examples/my_model.py:build_model`.

Any file works the same way: it defines an `nn.Module` (here `TinyDigitsNet`) and, if the
module needs arguments, a function without arguments that builds it (here `build_model`).
The input is scikit-learn's 8x8 digits, `[N, 1, 8, 8]` with values in [0, 1]; the output is
10 class logits.
"""

import torch
from torch import nn


class TinyDigitsNet(nn.Module):
    """Two convolutions and a linear classifier for 8x8 grey images.

    Args:
        width: Channels of the first convolution; the second has twice as many.
        classes: Number of output logits.
    """

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        # Flatten by the batch size read from the shape: the exporter keeps it dynamic.
        return self.classifier(features.reshape(x.shape[0], -1))


def build_model() -> TinyDigitsNet:
    """The factory the source names: the network with the sizes this study uses."""
    return TinyDigitsNet(width=16, classes=10)
