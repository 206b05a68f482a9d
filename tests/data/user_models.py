"""Callables for tests of `python:` sources: one good model and the mistakes users make."""

import torch
from torch import nn

LAYER_WIDTH = 3


class TwoLayer(nn.Module):
    """A small MLP on flattened 8x8 digits."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x.flatten(1))))


class NeedsArguments(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layer = nn.Linear(64, hidden)


def wider() -> TwoLayer:
    return TwoLayer(hidden=16)


def not_a_module() -> dict:
    return {"hidden": 8}


def fails_inside() -> nn.Module:
    raise ValueError("no layer of width 0")


class _Pair(TwoLayer):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = super().forward(x)
        return logits, logits.softmax(1)


class _Total(TwoLayer):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).sum()


def pair_output() -> nn.Module:
    """Returns logits and probabilities: two outputs where the study takes one."""
    return _Pair()


def total_output() -> nn.Module:
    """Sums over the batch: no batch axis left in the output."""
    return _Total()
